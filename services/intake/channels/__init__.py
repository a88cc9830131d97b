"""One adapter per channel; each turns the channel's own format into one Feedback.

``JSON_CHANNELS`` lists the channels whose integrations post JSON; e-mail (a raw
RFC 5322 message) and web forms (JSON or form fields) have their own routes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from services.intake.channels import app_review, chat, phone, sms, social
from services.intake.domain import Source
from shared.contracts import Channel, Feedback

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class JsonChannel(Generic[M]):
    channel: Channel
    path: str
    model: type[M]
    to_feedback: Callable[[M, Source], Feedback]
    summary: str
    description: str


JSON_CHANNELS: tuple[JsonChannel[Any], ...] = (
    JsonChannel(
        Channel.PHONE,
        "phone",
        phone.CallRecord,
        phone.to_feedback,
        "A call record from the call centre",
        "The customer's turns of the transcript become the text; the caller number, in "
        "E.164, identifies the customer. `call_id` is the message id.",
    ),
    JsonChannel(
        Channel.CHAT,
        "chat",
        chat.ChatConversation,
        chat.to_feedback,
        "A finished chat conversation",
        "The customer's messages, in time order, become the text; `received_at` is the "
        "customer's first message. `conversation_id` is the message id: post a "
        "conversation once, when it has ended.",
    ),
    JsonChannel(
        Channel.SOCIAL,
        "social",
        social.SocialPost,
        social.to_feedback,
        "A social-media post, mention, comment or direct message",
        "Reach (`author.followers`) and public exposure are kept in metadata for the "
        "classifier. `platform` plus `post_id` is the message id.",
    ),
    JsonChannel(
        Channel.SMS,
        "sms",
        sms.SmsMessage,
        sms.to_feedback,
        "A text message, whole or in concatenated segments",
        "Segments are put in order by `part` and joined; missing parts are listed in "
        "`metadata.segments_missing`. `message_id` is the message id.",
    ),
    JsonChannel(
        Channel.APP_REVIEW,
        "app-review",
        app_review.AppReview,
        app_review.to_feedback,
        "An app-store review",
        "The body is the text and the title the subject; rating and app version go to "
        "metadata. `store` plus `review_id` is the message id.",
    ),
)
