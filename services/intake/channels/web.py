"""Web forms: a contact or complaint form, posted as JSON or form-encoded fields."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain import (
    MAX_SUBJECT_CHARS,
    MAX_TEXT_CHARS,
    OUTCOMES,
    ExpectedByIn,
    Invalid,
    OutcomeIn,
    Source,
    assemble,
    build_customer,
    expected_by_in_utc,
    key_problem,
    to_utc,
)
from shared.contracts import Attachment, Channel, CustomerTier, Feedback

FieldValue = Annotated[str, Field(max_length=2_000)]


class WebForm(BaseModel):
    """A submitted web form. Form-encoded posts use the same field names; any other
    form field is kept in ``fields``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "submission_id": "contact-20260311-0042",
                    "form": "complaint",
                    "customer_id": "C-1001",
                    "name": "Li Wei",
                    "email": "li.wei@example.com",
                    "phone": "138 0013 8000",
                    "time_zone": "Asia/Shanghai",
                    "subject": "Washing machine leaks",
                    "message": "The washing machine I bought last week leaks water everywhere.",
                    "page_url": "https://shop.example.com/orders/20260304-1187",
                    "submitted_at": "2026-03-11T09:30:00+08:00",
                    "expected_outcome": "repair",
                    "expected_by": "2026-03-14",
                    "fields": {"order_number": "20260304-1187"},
                }
            ]
        },
    )

    submission_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="The form system's id"
    )
    form: str | None = Field(default=None, max_length=200, description="Which form it was")
    customer_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    tier: CustomerTier | None = None
    time_zone: str | None = Field(
        default=None, max_length=64, description="The customer's IANA time zone, e.g. Asia/Shanghai"
    )
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)
    message: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="What was typed")
    page_url: str | None = Field(default=None, max_length=2_000)
    submitted_at: datetime | None = Field(
        default=None, description="With an offset, or in the integration's timezone"
    )
    language: str | None = Field(default=None, max_length=35)
    expected_outcome: OutcomeIn = Field(
        default=None, description=f"What the customer asks for: {OUTCOMES} (any case)"
    )
    expected_by: ExpectedByIn = Field(
        default=None,
        description="By when the customer expects it: like submitted_at, or a date alone "
        "(the end of that day); not before the form was submitted",
    )
    fields: dict[str, FieldValue] = Field(
        default_factory=dict, max_length=100, description="Other form fields, kept as metadata"
    )


class WebFormUpload(WebForm):
    """A multipart/form-data post: the form's fields plus uploaded files, of which only
    the name, type and size are kept."""

    attachments: list[bytes] = Field(default_factory=list, max_length=20)


_MODEL_FIELDS = frozenset(WebForm.model_fields) - {"fields"}


def form_values(pairs: Iterable[tuple[str, str]]) -> dict[str, object]:
    """Form-encoded pairs as the WebForm body: known names become fields of the form,
    every other name lands in ``fields`` (repeated names joined with commas)."""
    known: dict[str, str] = {}
    others: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in _MODEL_FIELDS and name not in known:
            known[name] = value
        else:
            others.setdefault(name, []).append(value)
    body: dict[str, object] = {name: value for name, value in known.items() if value.strip()}
    if others:
        body["fields"] = {name: ", ".join(values) for name, values in others.items()}
    return body


def to_feedback(form: WebForm, source: Source, attachments: Sequence[Attachment] = ()) -> Feedback:
    # Other fields' names become keys of the metadata: refused here, by the form's name.
    for name in form.fields:
        reason = key_problem(name)
        if reason is not None:
            raise Invalid(f"fields.{name}", reason)
    customer = build_customer(
        source,
        id=form.customer_id,
        email=form.email,
        phone=form.phone,
        name=form.name,
        tier=form.tier,
        time_zone=form.time_zone,
        field="",
        names={"id": "customer_id"},
    )
    metadata: dict[str, object] = {}
    if form.form:
        metadata["form"] = form.form
    if form.page_url:
        metadata["page_url"] = form.page_url
    if form.fields:
        metadata["fields"] = dict(form.fields)
    received_at = to_utc(form.submitted_at, source, "submitted_at") if form.submitted_at else None
    return assemble(
        source,
        channel=Channel.WEB,
        customer=customer,
        text=form.message,
        received_at=received_at,
        external_id=form.submission_id,
        subject=form.subject,
        language=form.language,
        attachments=attachments,
        metadata=metadata,
        text_field="message",
        expected_outcome=form.expected_outcome,
        expected_by=expected_by_in_utc(form.expected_by, source, "expected_by"),
    )


def upload_metadata(uploads: Iterable[tuple[str, str | None, int]]) -> list[Attachment]:
    """Uploaded files as (filename, content type, size): only this metadata is kept,
    never the content."""
    return [
        Attachment(name=name, content_type=content_type or "application/octet-stream", size=size)
        for name, content_type, size in uploads
    ]
