"""Normalising what a channel posted into one Feedback: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contracts import Attachment, Channel, Customer, Feedback, UtcDatetime
from shared.envelope import derive_id


class FeedbackIn(BaseModel):
    """The generic feedback a channel integration posts to ``POST /v1/feedback``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "web",
                    "external_id": "form-20260311-0042",
                    "customer": {"id": "C-1001", "email": "li.wei@example.com", "tier": "vip"},
                    "text": "The washing machine I bought last week leaks water everywhere.",
                    "received_at": "2026-03-11T09:30:00+08:00",
                }
            ]
        },
    )

    channel: Channel
    customer: Customer
    text: str = Field(min_length=1, max_length=20_000, description="What the customer said")
    subject: str | None = Field(default=None, max_length=500)
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The channel's own message id; re-posting it yields the same feedback id",
    )
    received_at: UtcDatetime | None = Field(
        default=None, description="When the channel received it; with a time zone. Default: now"
    )
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("text must contain more than white space")
        return stripped


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2A6DF
    )


def detect_language(text: str) -> str:
    """zh, en or other, from the share of Han characters and Latin letters."""
    han = latin = other = 0
    for char in text:
        if _is_cjk(char):
            han += 1
        elif char.isascii() and char.isalpha():
            latin += 1
        elif char.isalpha():
            other += 1
    letters = han + latin + other
    if letters == 0:
        return "other"
    # One Han character carries about as much as a short English word.
    if han * 4 >= latin and han >= other:
        return "zh"
    if latin > other:
        return "en"
    return "other"


def feedback_id(
    channel: Channel, external_id: str | None, idempotency_key: str | None, fingerprint: str
) -> str:
    """Deterministic id: the same channel message always maps to the same feedback.

    The channel's message id wins, then an Idempotency-Key header, then a fingerprint
    of the content (customer, text, received_at) for posts that carry neither.
    """
    if external_id:
        return derive_id("feedback", channel.value, "external", external_id)
    if idempotency_key:
        return derive_id("feedback", channel.value, "idempotency-key", idempotency_key)
    return derive_id("feedback", channel.value, "content", fingerprint)


def content_fingerprint(item: FeedbackIn, received_at: datetime) -> str:
    text = unicodedata.normalize("NFKC", item.text)
    raw = "\x1f".join((item.customer.key, text, received_at.isoformat()))
    return hashlib.sha256(raw.encode()).hexdigest()


def normalise(item: FeedbackIn, *, now: datetime, idempotency_key: str | None = None) -> Feedback:
    """One Feedback from a generic post, timestamps in UTC."""
    received_at = (item.received_at or now).astimezone(UTC)
    fid = feedback_id(
        item.channel, item.external_id, idempotency_key, content_fingerprint(item, received_at)
    )
    return Feedback(
        feedback_id=fid,
        channel=item.channel,
        external_id=item.external_id,
        customer=item.customer,
        customer_key=item.customer.key,
        text=item.text,
        subject=item.subject,
        language=item.language or detect_language(item.text),
        received_at=received_at,
        ingested_at=now.astimezone(UTC),
        attachments=item.attachments,
        metadata=item.metadata,
    )
