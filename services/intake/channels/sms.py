"""SMS: the sender's number and the text, possibly in several concatenated segments
that the gateway received separately (GSM 03.40 concatenation)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.intake.domain import (
    OUTCOMES,
    ExpectedByIn,
    OutcomeIn,
    Source,
    assemble,
    build_customer,
    expected_by_in_utc,
    to_utc,
)
from shared.contracts import Channel, Feedback


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part: int = Field(ge=1, le=255, description="1-based position in the message")
    total: int = Field(ge=1, le=255)
    text: str = Field(max_length=1_000)


class SmsMessage(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "message_id": "SM-20260311-88213",
                    "sender": "13800138000",
                    "recipient": "106900001234",
                    "received_at": "2026-03-11T08:12:40+08:00",
                    "segments": [
                        {"part": 2, "total": 3, "text": "已经半个月了，客服一直说在处理，"},
                        {"part": 1, "total": 3, "text": "你好，我3月1日申请的退款到现在还没到账，"},
                        {"part": 3, "total": 3, "text": "再不处理我就去12315投诉。"},
                    ],
                }
            ]
        },
    )

    message_id: str = Field(min_length=1, max_length=200)
    sender: str = Field(min_length=1, max_length=40, description="The customer's number")
    recipient: str | None = Field(default=None, max_length=40, description="Our service number")
    received_at: datetime | None = None
    text: str | None = Field(default=None, max_length=20_000, description="A single-part message")
    segments: list[Segment] = Field(default_factory=list, max_length=255)
    time_zone: str | None = Field(
        default=None, max_length=64, description="The sender's IANA time zone, e.g. Asia/Shanghai"
    )
    expected_outcome: OutcomeIn = Field(
        default=None, description=f"What the sender asks for, if the gateway tells: {OUTCOMES}"
    )
    expected_by: ExpectedByIn = Field(
        default=None,
        description="By when the sender expects it: like received_at, or a date alone (the "
        "end of that day); not before the message was received",
    )

    @model_validator(mode="after")
    def _text_or_segments(self) -> SmsMessage:
        if (self.text is None) == (not self.segments):
            raise ValueError("give either text or segments")
        return self


def concatenate(segments: list[Segment]) -> tuple[str, list[int]]:
    """The segments in order (duplicates dropped) and the part numbers still missing."""
    by_part: dict[int, str] = {}
    for segment in segments:
        by_part.setdefault(segment.part, segment.text)
    total = max(max(segment.total for segment in segments), max(by_part))
    missing = [part for part in range(1, total + 1) if part not in by_part]
    return "".join(by_part[part] for part in sorted(by_part)), missing


def to_feedback(sms: SmsMessage, source: Source) -> Feedback:
    customer = build_customer(
        source,
        phone=sms.sender,
        time_zone=sms.time_zone,
        names={"phone": "sender", "time_zone": "time_zone"},
    )
    metadata: dict[str, object] = {}
    if sms.segments:
        text, missing = concatenate(sms.segments)
        metadata["segments"] = len({segment.part for segment in sms.segments})
        if missing:
            # Accepted anyway: a partial complaint is better than a lost one.
            metadata["segments_missing"] = missing
    else:
        text = sms.text or ""
    if sms.recipient:
        metadata["recipient"] = sms.recipient
    received_at = to_utc(sms.received_at, source, "received_at") if sms.received_at else None
    return assemble(
        source,
        channel=Channel.SMS,
        customer=customer,
        text=text,
        received_at=received_at,
        external_id=sms.message_id,
        metadata=metadata,
        text_field="segments" if sms.segments else "text",
        expected_outcome=sms.expected_outcome,
        expected_by=expected_by_in_utc(sms.expected_by, source, "expected_by"),
    )
