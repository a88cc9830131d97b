"""What intake accepts at its edge, and how it normalises it (docs/channels.md, "Accepted
values"): every key and value of an accepted post can be stored and routed; what cannot
is refused with the field named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import bson
import pytest
from pydantic import ValidationError

from services.intake.channels import chat, phone, social, web
from services.intake.channels.email import parse_email
from services.intake.domain import FeedbackIn, Invalid, Source, assemble, normalise
from shared.contracts import Channel, Customer

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SOURCE = Source(now=NOW, region="CN", timezone=ZoneInfo("Asia/Shanghai"))
ZERO_WIDTH = "\u200b\u200c\u200d\ufeff\u2060"


def post(**fields: Any) -> FeedbackIn:
    """A generic post as intake parses it: from its JSON bytes."""
    body = {"channel": "web", "customer": {"id": "C-1"}, "text": "My order never arrived", **fields}
    return FeedbackIn.model_validate_json(json.dumps(body))


def refusal(**fields: Any) -> Invalid:
    with pytest.raises(Invalid) as refused:
        normalise(post(**fields), now=NOW)
    return refused.value


def storable(metadata: dict[str, Any]) -> None:
    bson.encode({"metadata": metadata})


# --- metadata keys and values ------------------------------------------------------------


def test_integers_beyond_64_bits_are_accepted_and_kept_as_strings() -> None:
    feedback = normalise(
        post(metadata={"wechat_transaction_id": 4200001234202603111234567890}), now=NOW
    )
    assert feedback.metadata == {"wechat_transaction_id": "4200001234202603111234567890"}
    storable(feedback.metadata)


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"\x00": 1}, "metadata.\x00"),
        ({"order": {"a\x00b": 1}}, "metadata.order.a\x00b"),
        ({"items": [{"ok": 1}, {"\x00": 2}]}, "metadata.items.1.\x00"),
    ],
)
def test_a_nul_in_a_metadata_key_is_refused_naming_the_key(
    metadata: dict[str, Any], field: str
) -> None:
    refused = refusal(metadata=metadata)
    assert (refused.field, refused.message) == (field, "a key may not contain NUL characters")


@pytest.mark.parametrize("key", ["$where", "$ref", "$"])
def test_a_metadata_key_starting_with_a_dollar_is_refused(key: str) -> None:
    refused = refusal(metadata={"order": {key: "x"}})
    assert refused.field == f"metadata.order.{key}"
    assert refused.message == "a key may not start with $ (MongoDB reserves such names)"


def test_dotted_keys_and_dollars_inside_keys_are_kept() -> None:
    feedback = normalise(post(metadata={"price.usd": 12, "us$": 1}), now=NOW)
    assert feedback.metadata == {"price.usd": 12, "us$": 1}


def test_a_key_longer_than_200_characters_is_refused() -> None:
    assert normalise(post(metadata={"k" * 200: 1}), now=NOW).metadata == {"k" * 200: 1}
    refused = refusal(metadata={"a": {"k" * 201: 1}})
    assert (refused.field, refused.message) == (
        "metadata.a." + "k" * 201,
        "a key is at most 200 characters",
    )


def test_metadata_nested_deeper_than_32_levels_is_refused_where_it_goes_too_deep() -> None:
    def nested(levels: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(levels - 1):
            value = {"n": value}
        return value

    assert normalise(post(metadata=nested(32)), now=NOW).metadata == nested(32)
    refused = refusal(metadata=nested(33))
    assert refused.field == "metadata" + ".n" * 32
    assert refused.message == "metadata nests at most 32 levels of objects and arrays"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_number_that_is_not_finite_is_refused(number: str) -> None:
    body = '{"channel": "web", "customer": {"id": "C-1"}, "text": "hi", "metadata": {"r": [%s]}}'
    item = FeedbackIn.model_validate_json(body % number)
    with pytest.raises(Invalid) as refused:
        normalise(item, now=NOW)
    assert (refused.value.field, refused.value.message) == (
        "metadata.r.0",
        "is not a finite number",
    )


def test_metadata_larger_than_64_kib_as_json_is_refused() -> None:
    fits = {"note": "x" * (64 * 1024 - 20)}
    assert normalise(post(metadata=fits), now=NOW).metadata == fits
    refused = refusal(metadata={"note": "x" * (64 * 1024)})
    assert (refused.field, refused.message) == ("metadata", "is at most 65536 bytes as JSON")


def test_an_attachment_size_beyond_64_bits_is_recorded_as_the_largest() -> None:
    item = post(attachments=[{"name": "a.pdf", "size": 10**30}])
    assert normalise(item, now=NOW).attachments[0].size == 2**63 - 1


def test_a_social_followers_count_beyond_64_bits_is_kept_as_a_string() -> None:
    message = social.SocialPost.model_validate(
        {
            "platform": "weibo",
            "post_id": "1",
            "author": {"handle": "@a", "followers": 10**30},
            "text": "千万别买",
            "created_at": "2026-03-01T08:00:00Z",
        }
    )
    feedback = social.to_feedback(message, SOURCE)
    assert feedback.metadata["followers"] == str(10**30)
    storable(feedback.metadata)


# --- web form field names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("order\x00no", "a key may not contain NUL characters"),
        ("$where", "a key may not start with $ (MongoDB reserves such names)"),
        ("f" * 201, "a key is at most 200 characters"),
    ],
)
def test_a_web_form_field_name_that_cannot_be_stored_is_refused_naming_it(
    name: str, message: str
) -> None:
    form = web.WebForm.model_validate(
        web.form_values(
            [("message", "The dryer burns my clothes"), ("email", "a@b.cn"), (name, "1")]
        )
    )
    with pytest.raises(Invalid) as refused:
        web.to_feedback(form, SOURCE)
    assert (refused.value.field, refused.value.message) == (f"fields.{name}", message)


def test_ordinary_web_form_field_names_are_kept_with_dots_and_unicode() -> None:
    form = web.WebForm.model_validate(
        {"message": "漏水", "email": "a@b.cn", "fields": {"order.number": "1187", "订单号": "2"}}
    )
    feedback = web.to_feedback(form, SOURCE)
    assert feedback.metadata["fields"] == {"order.number": "1187", "订单号": "2"}


# --- text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", [ZERO_WIDTH, f" {ZERO_WIDTH}\n\t", "\x00", "\u00ad\u034f\u180e", "\u202e\u202c"]
)
def test_a_text_without_a_visible_character_is_refused(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        post(text=text)
    (error,) = refused.value.errors()
    assert error["loc"] == ("text",)
    assert "visible" in error["msg"]
    with pytest.raises(Invalid) as invisible:
        assemble(SOURCE, channel=Channel.SMS, customer=Customer(id="C-1"), text=text)
    assert invisible.value.field == "text"


@pytest.mark.parametrize("text", [f"{ZERO_WIDTH}退款", "\u200b!", "e\u0301", "🔥", "\ue000"])
def test_a_text_with_any_visible_character_is_kept_as_it_is(text: str) -> None:
    assert normalise(post(text=text), now=NOW).text == text


def test_a_call_whose_customer_turns_are_invisible_is_refused_naming_the_transcript() -> None:
    call = phone.CallRecord.model_validate(
        {
            "call_id": "c1",
            "caller_number": "+8613800138000",
            "started_at": "2026-03-01T08:00:00Z",
            "duration_s": 10,
            "transcript": [{"speaker": "customer", "text": ZERO_WIDTH}],
        }
    )
    with pytest.raises(Invalid) as refused:
        phone.to_feedback(call, SOURCE)
    assert refused.value.field == "transcript"


# --- timestamps in the future ------------------------------------------------------------


def test_received_at_up_to_a_day_ahead_of_now_is_accepted_as_clock_skew() -> None:
    ahead = NOW + timedelta(hours=23, minutes=59)
    assert normalise(post(received_at=ahead.isoformat()), now=NOW).received_at == ahead


@pytest.mark.parametrize("at", ["2999-03-11T09:30:00+08:00", "2026-03-02T09:00:01Z"])
def test_received_at_more_than_a_day_in_the_future_is_refused(at: str) -> None:
    refused = refusal(received_at=at)
    assert refused.field == "received_at"
    assert refused.message == "is more than a day in the future"


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
def test_received_at_before_1970_is_refused(at: str) -> None:
    refused = refusal(received_at=at)
    assert (refused.field, refused.message) == ("received_at", "is before 1970-01-01")


def test_a_chat_message_from_the_future_is_refused_naming_the_message() -> None:
    conversation = chat.ChatConversation.model_validate(
        {
            "conversation_id": "chat-1",
            "customer": {"handle": "wx"},
            "messages": [
                {"sender": "customer", "text": "hi", "sent_at": "2026-03-01T08:00:00Z"},
                {"sender": "customer", "text": "??", "sent_at": "2999-01-01T00:00:00Z"},
            ],
        }
    )
    with pytest.raises(Invalid) as refused:
        chat.to_feedback(conversation, SOURCE)
    assert refused.value.field == "messages.1.sent_at"


def test_a_mail_dated_in_the_future_counts_as_received_now() -> None:
    mail = (
        b"From: Li Wei <li.wei@example.com>\r\nTo: support@example.com\r\n"
        b"Subject: refund\r\nDate: Fri, 01 Jan 2999 00:00:00 +0000\r\n\r\n"
        b"Where is my refund?\r\n"
    )
    assert parse_email(mail, SOURCE).received_at == NOW
