"""Chat: a conversation of several messages with timestamps, posted when it ends."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain import (
    OUTCOMES,
    ExpectedByIn,
    Invalid,
    OutcomeIn,
    Source,
    assemble,
    build_customer,
    expected_by_in_utc,
    join_texts,
    to_utc,
)
from shared.contracts import Channel, CustomerTier, Feedback


class ChatCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=200)
    handle: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    tier: CustomerTier | None = None
    time_zone: str | None = Field(
        default=None, max_length=64, description="The customer's IANA time zone, e.g. Asia/Shanghai"
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(default=None, max_length=200)
    sender: Literal["customer", "agent", "bot"]
    text: str = Field(max_length=20_000)
    sent_at: datetime


class ChatConversation(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "conversation_id": "chat-7f3a9c",
                    "platform": "wechat",
                    "customer": {
                        "handle": "wx_liwei88",
                        "name": "Li Wei",
                        "time_zone": "Asia/Shanghai",
                    },
                    "messages": [
                        {
                            "sender": "bot",
                            "text": "您好，请问有什么可以帮您？",
                            "sent_at": "2026-03-11T10:00:00+08:00",
                        },
                        {
                            "sender": "customer",
                            "text": "快递显示已签收，但我根本没收到！",
                            "sent_at": "2026-03-11T10:00:12+08:00",
                        },
                        {
                            "sender": "agent",
                            "text": "抱歉，我马上帮您查一下。",
                            "sent_at": "2026-03-11T10:01:02+08:00",
                        },
                        {
                            "sender": "customer",
                            "text": "订单号 20260304-1187，已经等了一周了。",
                            "sent_at": "2026-03-11T10:01:40+08:00",
                        },
                    ],
                    "expected_outcome": "explanation",
                    "expected_by": "2026-03-11T18:00:00+08:00",
                }
            ]
        },
    )

    conversation_id: str = Field(min_length=1, max_length=200)
    platform: str | None = Field(
        default=None, max_length=100, description="web widget, wechat, whatsapp, ..."
    )
    customer: ChatCustomer
    language: str | None = Field(default=None, max_length=35)
    messages: list[ChatMessage] = Field(min_length=1, max_length=2_000)
    expected_outcome: OutcomeIn = Field(
        default=None,
        description=f"What the customer asked for (a pre-chat form, the bot): {OUTCOMES}",
    )
    expected_by: ExpectedByIn = Field(
        default=None,
        description="By when the customer expects it: like sent_at, or a date alone (the end "
        "of that day); not before the customer's first message",
    )


def to_feedback(chat: ChatConversation, source: Source) -> Feedback:
    given = chat.customer
    customer = build_customer(
        source,
        id=given.id,
        handle=given.handle,
        name=given.name,
        email=given.email,
        phone=given.phone,
        tier=given.tier,
        time_zone=given.time_zone,
    )
    timed = sorted(
        (
            (to_utc(message.sent_at, source, f"messages.{index}.sent_at"), index, message)
            for index, message in enumerate(chat.messages)
        ),
        key=lambda entry: (entry[0], entry[1]),
    )
    from_customer = [(at, message) for at, _, message in timed if message.sender == "customer"]
    if not from_customer:
        raise Invalid("messages", "the conversation has no message from the customer")
    metadata: dict[str, object] = {
        "message_count": len(chat.messages),
        "customer_messages": len(from_customer),
        "started_at": timed[0][0].isoformat(),
        "ended_at": timed[-1][0].isoformat(),
    }
    if chat.platform:
        metadata["platform"] = chat.platform
    return assemble(
        source,
        channel=Channel.CHAT,
        customer=customer,
        text=join_texts(message.text for _, message in from_customer),
        # The feedback arrived when the customer first raised it.
        received_at=from_customer[0][0],
        external_id=chat.conversation_id,
        language=chat.language,
        metadata=metadata,
        text_field="messages",
        expected_outcome=chat.expected_outcome,
        expected_by=expected_by_in_utc(chat.expected_by, source, "expected_by"),
    )
