"""What intake's HTTP API answers, and the batch it reads: the models the OpenAPI
document shows. The channels' own request formats are in ``channels/``; the generic
item, ``FeedbackIn``, is in ``domain``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain import FeedbackIn


class Accepted(BaseModel):
    feedback_id: str
    status: Literal["accepted"] = "accepted"


class FieldError(BaseModel):
    field: str
    message: str


class ItemResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    feedback_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    items: list[ItemResult]


class BatchIn(BaseModel):
    """Up to 500 generic feedback items; each is answered on its own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "channel": "web",
                            "external_id": "form-20260311-0042",
                            "customer": {"id": "C-1001"},
                            "text": "The washing machine leaks water everywhere.",
                            "received_at": "2026-03-11T09:30:00+08:00",
                        },
                        {
                            "channel": "sms",
                            "external_id": "SM-20260311-88213",
                            "customer": {"phone": "+8613800138000"},
                            "text": "退款还没到账",
                        },
                    ]
                }
            ]
        },
    )

    items: list[FeedbackIn] = Field(min_length=1, max_length=500)
