"""Phone and call centre: a call record with a transcript of speaker turns. The
customer's turns are the feedback; the agent's words are not the customer's."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain import (
    OUTCOMES,
    ExpectedByIn,
    OutcomeIn,
    Source,
    assemble,
    build_customer,
    expected_by_in_utc,
    join_texts,
    to_utc,
)
from shared.contracts import Channel, CustomerTier, Feedback


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: Literal["customer", "agent", "ivr"]
    text: str = Field(max_length=20_000)
    start_s: float | None = Field(default=None, ge=0, description="Offset into the call")


class KnownCaller(BaseModel):
    """What the call-centre system already knows about the caller (from its CRM)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    tier: CustomerTier | None = None
    time_zone: str | None = Field(
        default=None, max_length=64, description="The customer's IANA time zone, e.g. Asia/Shanghai"
    )


class CallRecord(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "call_id": "CALL-20260311-000731",
                    "caller_number": "+86 138 0013 8000",
                    "called_number": "400-820-8820",
                    "direction": "inbound",
                    "agent": "agent-zhang-wei",
                    "queue": "after-sales",
                    "started_at": "2026-03-11T14:02:11+08:00",
                    "duration_s": 312,
                    "customer": {"id": "C-1001", "tier": "vip", "time_zone": "Asia/Shanghai"},
                    "transcript": [
                        {"speaker": "agent", "text": "您好，这里是客服中心。", "start_s": 0},
                        {
                            "speaker": "customer",
                            "text": "我上周买的洗衣机漏水，已经打了三次电话了。",
                            "start_s": 4.2,
                        },
                        {"speaker": "agent", "text": "非常抱歉，我帮您登记。", "start_s": 11.0},
                        {"speaker": "customer", "text": "今天必须给我解决！", "start_s": 14.5},
                    ],
                    "expected_outcome": "repair",
                    "expected_by": "2026-03-12T18:00:00+08:00",
                }
            ]
        },
    )

    call_id: str = Field(min_length=1, max_length=200)
    caller_number: str | None = Field(
        default=None, max_length=40, description="Absent or empty when the number was withheld"
    )
    called_number: str | None = Field(default=None, max_length=40)
    direction: Literal["inbound", "outbound"] = "inbound"
    agent: str | None = Field(default=None, max_length=200)
    queue: str | None = Field(default=None, max_length=200)
    started_at: datetime
    duration_s: float = Field(ge=0, le=86_400)
    customer: KnownCaller | None = None
    language: str | None = Field(default=None, max_length=35)
    transcript: list[Turn] = Field(min_length=1, max_length=5_000)
    expected_outcome: OutcomeIn = Field(
        default=None,
        description=f"What the customer asked for, as the agent recorded it: {OUTCOMES}",
    )
    expected_by: ExpectedByIn = Field(
        default=None,
        description="By when the customer expects it: like started_at, or a date alone "
        "(the end of that day); not before the call started",
    )


def to_feedback(call: CallRecord, source: Source) -> Feedback:
    known = call.customer or KnownCaller()
    customer = build_customer(
        source,
        id=known.id,
        name=known.name,
        email=known.email,
        tier=known.tier,
        time_zone=known.time_zone,
        phone=call.caller_number,
        names={"phone": "caller_number", "id": "customer.id", "email": "customer.email"},
    )
    customer_turns = [turn.text for turn in call.transcript if turn.speaker == "customer"]
    metadata: dict[str, object] = {
        "direction": call.direction,
        "duration_s": call.duration_s,
        "turns": {
            speaker: sum(1 for turn in call.transcript if turn.speaker == speaker)
            for speaker in ("customer", "agent", "ivr")
        },
    }
    if call.agent:
        metadata["agent"] = call.agent
    if call.queue:
        metadata["queue"] = call.queue
    return assemble(
        source,
        channel=Channel.PHONE,
        customer=customer,
        text=join_texts(customer_turns),
        received_at=to_utc(call.started_at, source, "started_at"),
        external_id=call.call_id,
        language=call.language,
        metadata=metadata,
        text_field="transcript",
        expected_outcome=call.expected_outcome,
        expected_by=expected_by_in_utc(call.expected_by, source, "expected_by"),
    )
