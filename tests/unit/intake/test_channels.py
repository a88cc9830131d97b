"""Channel adapters (web, phone, chat, social, SMS, app review) on realistic fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.intake.channels import JSON_CHANNELS, app_review, chat, phone, sms, social, web
from services.intake.domain import Invalid, Source
from shared.contracts import Channel, CustomerTier
from shared.envelope import derive_id

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "intake"
NOW = datetime(2026, 3, 12, tzinfo=UTC)
CHINA = Source(now=NOW, region="CN", timezone=ZoneInfo("Asia/Shanghai"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


# --- SMS ----------------------------------------------------------------------------


def test_three_sms_segments_are_joined_in_part_order_without_duplicates() -> None:
    feedback = sms.to_feedback(
        sms.SmsMessage.model_validate(load("sms_three_segments.json")), CHINA
    )
    assert feedback.text == (
        "你好，我3月1日申请的退款到现在还没到账，已经半个月了，客服一直说在处理，"
        "再不处理我就去12315投诉。"
    )
    assert feedback.metadata == {"segments": 3, "recipient": "106900001234"}
    assert feedback.customer.phone == "+8613800138000"
    assert feedback.channel is Channel.SMS


def test_an_sms_local_time_is_read_in_the_integration_zone() -> None:
    feedback = sms.to_feedback(
        sms.SmsMessage.model_validate(load("sms_three_segments.json")), CHINA
    )
    assert feedback.received_at == datetime(2026, 3, 11, 0, 12, 40, tzinfo=UTC)


def test_missing_sms_segments_are_accepted_and_listed() -> None:
    message = sms.SmsMessage.model_validate(
        {
            "message_id": "m",
            "sender": "+8613800138000",
            "segments": [
                {"part": 1, "total": 3, "text": "退款"},
                {"part": 3, "total": 3, "text": "!"},
            ],
        }
    )
    feedback = sms.to_feedback(message, CHINA)
    assert feedback.text == "退款!"
    assert feedback.metadata["segments_missing"] == [2]


def test_an_sms_needs_exactly_one_of_text_or_segments() -> None:
    with pytest.raises(ValidationError):
        sms.SmsMessage.model_validate({"message_id": "m", "sender": "+8613800138000"})
    with pytest.raises(ValidationError):
        sms.SmsMessage.model_validate(
            {
                "message_id": "m",
                "sender": "+8613800138000",
                "text": "x",
                "segments": [{"part": 1, "total": 1, "text": "x"}],
            }
        )


def test_an_alphanumeric_sender_is_refused_naming_the_sender() -> None:
    message = sms.SmsMessage.model_validate({"message_id": "m", "sender": "ALIPAY", "text": "hi"})
    with pytest.raises(Invalid) as caught:
        sms.to_feedback(message, CHINA)
    assert caught.value.field == "sender"


# --- phone --------------------------------------------------------------------------


def test_a_call_transcript_keeps_only_the_customers_turns() -> None:
    call = phone.CallRecord.model_validate(load("phone_call.json"))
    feedback = phone.to_feedback(call, CHINA)
    assert feedback.text == (
        "我上周买的冰箱，冷藏室一直不制冷，里面的菜都坏了。\n"
        "订单号是20260303-7781。\n"
        "上次也说登记，结果没人来！这次明天之前必须有人上门，不然我要退货。"
    )
    assert "工号" not in feedback.text and "欢迎致电" not in feedback.text


def test_a_call_identifies_the_caller_and_keeps_call_facts_as_metadata() -> None:
    feedback = phone.to_feedback(phone.CallRecord.model_validate(load("phone_call.json")), CHINA)
    assert feedback.customer.phone == "+8613910987654"
    assert (feedback.customer.id, feedback.customer.tier) == ("C-2087", CustomerTier.PREMIUM)
    assert feedback.external_id == "CALL-20260311-000731"
    assert feedback.received_at == datetime(2026, 3, 11, 6, 2, 11, tzinfo=UTC)
    assert feedback.language == "zh"
    assert feedback.metadata == {
        "direction": "inbound",
        "duration_s": 312.4,
        "turns": {"customer": 3, "agent": 4, "ivr": 1},
        "agent": "agent-zhang-wei",
        "queue": "after-sales",
    }


def test_a_call_without_customer_turns_is_refused() -> None:
    data = load("phone_call.json")
    data["transcript"] = [turn for turn in data["transcript"] if turn["speaker"] != "customer"]
    with pytest.raises(Invalid) as caught:
        phone.to_feedback(phone.CallRecord.model_validate(data), CHINA)
    assert caught.value.field == "transcript"


def test_a_withheld_number_with_a_known_customer_id_is_fine() -> None:
    data = {**load("phone_call.json"), "caller_number": ""}
    feedback = phone.to_feedback(phone.CallRecord.model_validate(data), CHINA)
    assert feedback.customer.phone is None and feedback.customer.id == "C-2087"


# --- chat ---------------------------------------------------------------------------


def test_a_chat_keeps_customer_messages_in_time_order_from_any_time_zone() -> None:
    conversation = chat.ChatConversation.model_validate(load("chat_conversation.json"))
    feedback = chat.to_feedback(conversation, CHINA)
    assert feedback.text == (
        "My parcel says delivered but I never got it.\n"
        "It is the third time this happens with your courier."
    )
    # 09:05:20-05:00 is the customer's first message.
    assert feedback.received_at == datetime(2026, 3, 5, 14, 5, 20, tzinfo=UTC)
    assert feedback.metadata["message_count"] == 4
    assert feedback.metadata["ended_at"] == "2026-03-05T14:07:30+00:00"
    assert feedback.customer.handle == "emily_c"


def test_a_chat_without_customer_messages_is_refused() -> None:
    data = load("chat_conversation.json")
    data["messages"] = [m for m in data["messages"] if m["sender"] != "customer"]
    with pytest.raises(Invalid) as caught:
        chat.to_feedback(chat.ChatConversation.model_validate(data), CHINA)
    assert caught.value.field == "messages"


def test_a_naive_chat_time_without_a_configured_zone_names_the_message() -> None:
    data = load("chat_conversation.json")
    data["messages"][2]["sent_at"] = "2026-03-05T09:05:20"
    with pytest.raises(Invalid) as caught:
        chat.to_feedback(chat.ChatConversation.model_validate(data), Source(now=NOW))
    assert caught.value.field == "messages.2.sent_at"


# --- social -------------------------------------------------------------------------


def test_a_social_post_keeps_its_reach_and_public_exposure_for_the_classifier() -> None:
    feedback = social.to_feedback(
        social.SocialPost.model_validate(load("social_mention.json")), CHINA
    )
    assert feedback.metadata["followers"] == 182_000
    assert isinstance(feedback.metadata["followers"], int)
    assert feedback.metadata["public"] is True
    assert feedback.metadata["url"] == "https://weibo.com/1234567890/4983021771"
    assert feedback.metadata["reply_to"]["post_id"] == "4982990012"
    assert feedback.customer.handle == "@数码老王"
    assert feedback.external_id == "weibo:4983021771"


def test_a_direct_message_is_not_public_unless_said_so() -> None:
    data = {**load("social_mention.json"), "kind": "direct_message"}
    assert (
        social.to_feedback(social.SocialPost.model_validate(data), CHINA).metadata["public"]
        is False
    )


def test_the_same_post_id_on_two_platforms_is_two_feedbacks() -> None:
    weibo = social.SocialPost.model_validate(load("social_mention.json"))
    douyin = weibo.model_copy(update={"platform": "douyin"})
    assert (
        social.to_feedback(weibo, CHINA).feedback_id
        != social.to_feedback(douyin, CHINA).feedback_id
    )


# --- app review ---------------------------------------------------------------------


def test_an_app_review_keeps_title_as_subject_and_rating_and_version_as_metadata() -> None:
    review = app_review.AppReview.model_validate(load("app_review.json"))
    feedback = app_review.to_feedback(review, CHINA)
    assert feedback.subject == "Update broke payments"
    assert feedback.text.startswith("Since version 5.2.0 every payment fails")
    assert feedback.metadata["rating"] == 1
    assert feedback.metadata["app_version"] == "5.2.0"
    assert feedback.metadata["store"] == "google_play"
    assert feedback.language == "en"
    assert feedback.received_at == datetime(2026, 3, 11, 6, 41, tzinfo=UTC)
    assert feedback.feedback_id == derive_id(
        "feedback", "app_review", "external", "google_play:gp:AOqpTOF3x-20260310"
    )


def test_a_title_only_review_uses_the_title_as_text() -> None:
    data = {**load("app_review.json"), "body": None}
    feedback = app_review.to_feedback(app_review.AppReview.model_validate(data), CHINA)
    assert feedback.text == "Update broke payments"


@pytest.mark.parametrize("rating", [0, 6])
def test_a_rating_outside_one_to_five_stars_is_refused(rating: int) -> None:
    with pytest.raises(ValidationError):
        app_review.AppReview.model_validate({**load("app_review.json"), "rating": rating})


# --- web ----------------------------------------------------------------------------


def test_a_json_web_form_maps_every_field() -> None:
    feedback = web.to_feedback(web.WebForm.model_validate(load("web_form.json")), CHINA)
    assert feedback.customer.phone == "+862161234567"
    assert (feedback.customer.id, feedback.customer.tier) == ("C-1001", CustomerTier.VIP)
    assert feedback.subject == "洗衣机漏水"
    assert feedback.metadata == {
        "form": "complaint",
        "page_url": "https://shop.example.com/orders/20260304-1187",
        "fields": {"order_number": "20260304-1187", "preferred_contact": "phone"},
    }


def test_form_encoded_pairs_map_known_names_and_keep_the_rest_as_fields() -> None:
    values = web.form_values(
        [
            ("message", "Leaking washer"),
            ("email", "li.wei@example.com"),
            ("phone", ""),
            ("topic", "repair"),
            ("topic", "refund"),
            ("fields", "a form field that happens to be called fields"),
        ]
    )
    form = web.WebForm.model_validate(values)
    feedback = web.to_feedback(form, CHINA, web.upload_metadata([("a.png", "image/png", 12)]))
    assert feedback.metadata["fields"] == {
        "topic": "repair, refund",
        "fields": "a form field that happens to be called fields",
    }
    assert feedback.customer.phone is None
    assert [(a.name, a.size) for a in feedback.attachments] == [("a.png", 12)]


def test_a_web_form_without_any_customer_identity_is_refused() -> None:
    with pytest.raises(Invalid) as caught:
        web.to_feedback(web.WebForm.model_validate({"message": "hi", "name": "Anon"}), CHINA)
    assert "at least one of" in caught.value.message


def test_a_bad_web_email_names_the_form_field() -> None:
    with pytest.raises(Invalid) as caught:
        web.to_feedback(web.WebForm.model_validate({"message": "hi", "email": "li.wei"}), CHINA)
    assert caught.value.field == "email"


# --- all ----------------------------------------------------------------------------


def test_every_channel_has_an_adapter_and_an_example_it_accepts() -> None:
    routed = {spec.channel for spec in JSON_CHANNELS} | {Channel.WEB, Channel.EMAIL}
    assert routed == set(Channel)
    for spec in JSON_CHANNELS:
        examples = spec.model.model_config["json_schema_extra"]["examples"]
        for example in examples:
            feedback = spec.to_feedback(spec.model.model_validate(example), CHINA)
            assert feedback.channel is spec.channel
