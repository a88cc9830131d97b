"""What the customer asked for (expected outcome, expected by) and the customer's time
zone, on every channel's input: carried into the feedback, normalised (UTC, any case),
and refused with the field named when wrong (docs/channels.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.intake.channels import app_review, chat, phone, sms, social, web
from services.intake.channels.email import parse_email
from services.intake.domain import (
    OUTCOMES,
    FeedbackIn,
    Invalid,
    Source,
    expected_outcome_of,
    normalise,
    normalise_from,
)
from services.intake.problems import validation_errors
from shared.contracts import NAIVE_TIMESTAMP, ExpectedOutcome, Feedback

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "intake"
NOW = datetime(2026, 3, 12, tzinfo=UTC)
CHINA = Source(now=NOW, region="CN", timezone=ZoneInfo("Asia/Shanghai"))
NO_ZONE = Source(now=NOW, region="CN")
ALL_OUTCOMES = "refund, replacement, repair, apology, explanation, compensation, other"
UNKNOWN_ZONE = "Value error, unknown time zone 'Mars/Olympus' (an IANA name such as Europe/Berlin)"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def post(**fields: Any) -> FeedbackIn:
    """A generic post as intake parses it: from its JSON bytes."""
    body = {"channel": "web", "customer": {"id": "C-1"}, "text": "My order never arrived", **fields}
    return FeedbackIn.model_validate_json(json.dumps(body))


def parse_errors(model: type[BaseModel], body: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate_json(json.dumps(body))
    return validation_errors(refused.value)


# --- the outcome ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_value", "outcome"),
    [
        ("refund", ExpectedOutcome.REFUND),
        (" Refund ", ExpectedOutcome.REFUND),
        ("REPLACEMENT", ExpectedOutcome.REPLACEMENT),
        ("\tRepair\n", ExpectedOutcome.REPAIR),
        ("Other", ExpectedOutcome.OTHER),
    ],
)
def test_an_outcome_is_read_trimmed_and_in_any_case(
    given_value: str, outcome: ExpectedOutcome
) -> None:
    assert expected_outcome_of(given_value) is outcome
    assert normalise(post(expected_outcome=given_value), now=NOW).expected_outcome is outcome


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_a_blank_outcome_is_no_outcome(blank: str | None) -> None:
    assert expected_outcome_of(blank) is None
    assert normalise(post(expected_outcome=blank), now=NOW).expected_outcome is None


def test_every_outcome_of_the_contract_is_named_in_the_refusal() -> None:
    assert OUTCOMES == ALL_OUTCOMES
    assert {outcome.value for outcome in ExpectedOutcome} == set(ALL_OUTCOMES.split(", "))


@pytest.mark.parametrize("unknown", ["refunds", "money back", "退款"])
def test_an_unknown_outcome_is_refused_naming_the_outcomes_there_are(unknown: str) -> None:
    with pytest.raises(ValueError, match="unknown expected outcome") as refused:
        expected_outcome_of(f" {unknown} ")
    assert str(refused.value) == f"unknown expected outcome {unknown!r}: one of {ALL_OUTCOMES}"
    errors = parse_errors(
        FeedbackIn,
        {"channel": "web", "customer": {"id": "C-1"}, "text": "x", "expected_outcome": unknown},
    )
    assert errors == [
        {
            "field": "expected_outcome",
            "message": f"unknown expected outcome {unknown!r}: one of {ALL_OUTCOMES}",
        }
    ]


def test_an_outcome_that_is_not_a_string_is_refused_naming_the_outcomes_too() -> None:
    errors = parse_errors(
        FeedbackIn,
        {"channel": "web", "customer": {"id": "C-1"}, "text": "x", "expected_outcome": 1},
    )
    assert [error["field"] for error in errors] == ["expected_outcome"]
    assert all(f"'{outcome.value}'" in errors[0]["message"] for outcome in ExpectedOutcome)


# --- the generic post --------------------------------------------------------------------


def test_a_generic_post_carries_all_three_with_the_time_in_utc() -> None:
    feedback = normalise(
        post(
            customer={"id": "C-1", "time_zone": "Asia/Shanghai"},
            received_at="2026-03-11T09:30:00+08:00",
            expected_outcome="refund",
            expected_by="2026-03-13T18:00:00+08:00",
        ),
        now=NOW,
    )
    assert feedback.expected_outcome is ExpectedOutcome.REFUND
    assert feedback.expected_by == datetime(2026, 3, 13, 10, 0, tzinfo=UTC)
    assert feedback.expected_by is not None and feedback.expected_by.utcoffset() == timedelta(0)
    assert feedback.customer.time_zone == "Asia/Shanghai"


def test_without_them_the_feedback_has_none_of_them() -> None:
    feedback = normalise(post(), now=NOW)
    assert (feedback.expected_outcome, feedback.expected_by, feedback.customer.time_zone) == (
        None,
        None,
        None,
    )


def test_the_time_zone_stays_when_the_customer_is_normalised_again() -> None:
    """A phone number puts the customer through build_customer: the zone goes with it."""
    feedback = normalise(
        post(customer={"phone": "138 0013 8000", "time_zone": "Asia/Shanghai"}),
        now=NOW,
        region="CN",
    )
    assert feedback.customer.phone == "+8613800138000"
    assert feedback.customer.time_zone == "Asia/Shanghai"


def test_an_unknown_time_zone_is_refused_naming_the_customer_field() -> None:
    errors = parse_errors(
        FeedbackIn,
        {"channel": "web", "customer": {"id": "C-1", "time_zone": "Mars/Olympus"}, "text": "x"},
    )
    assert errors == [{"field": "customer.time_zone", "message": UNKNOWN_ZONE}]


def test_an_expected_by_without_a_time_zone_is_refused_as_received_at_is() -> None:
    errors = parse_errors(
        FeedbackIn,
        {
            "channel": "web",
            "customer": {"id": "C-1"},
            "text": "x",
            "expected_by": "2026-03-13T18:00:00",
        },
    )
    assert errors == [{"field": "expected_by", "message": NAIVE_TIMESTAMP}]


def test_an_expected_by_before_received_at_is_refused_naming_it() -> None:
    with pytest.raises(Invalid) as refused:
        normalise(
            post(received_at="2026-03-11T10:00:00Z", expected_by="2026-03-11T17:59:59+08:00"),
            now=NOW,
        )
    assert (refused.value.field, refused.value.message) == (
        "expected_by",
        "is before the feedback was received (2026-03-11T10:00:00Z)",
    )


def test_an_expected_by_before_now_is_refused_when_the_feedback_is_received_now() -> None:
    with pytest.raises(Invalid) as refused:
        normalise(post(expected_by="2026-03-11T23:00:00Z"), now=NOW)
    assert refused.value.field == "expected_by"


def test_an_expected_by_at_received_at_or_far_ahead_is_accepted() -> None:
    """Unlike received_at, it is not limited to a day ahead: it is a wish, not a clock."""
    at = "2026-03-11T10:00:00Z"
    same = normalise(post(received_at=at, expected_by=at), now=NOW)
    assert same.expected_by == same.received_at
    later = normalise(post(expected_by="2027-01-01T00:00:00+01:00"), now=NOW)
    assert later.expected_by == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


def test_an_expected_by_beyond_what_utc_can_hold_is_refused_not_a_crash() -> None:
    with pytest.raises(Invalid) as refused:
        normalise(post(expected_by="9999-12-31T23:59:59-14:00"), now=NOW)
    assert (refused.value.field, refused.value.message) == ("expected_by", "is out of range")


@given(
    ahead=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_any_expected_by_from_received_at_on_is_kept_as_the_same_instant_in_utc(
    ahead: timedelta, offset_minutes: int
) -> None:
    received = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
    zone = timezone(timedelta(minutes=offset_minutes))
    expected_by = (received + ahead).astimezone(zone)
    item = post(received_at=received.isoformat(), expected_by=expected_by.isoformat())
    feedback = normalise_from(item, Source(now=NOW))
    assert feedback.expected_by == expected_by
    assert feedback.expected_by is not None and feedback.expected_by.tzinfo == UTC


# --- web forms ---------------------------------------------------------------------------


def test_a_json_web_form_carries_all_three() -> None:
    form = web.WebForm.model_validate(
        {
            **load("web_form.json"),
            "time_zone": "Asia/Shanghai",
            "expected_outcome": "Repair",
            "expected_by": "2026-03-14T12:00:00+08:00",
        }
    )
    feedback = web.to_feedback(form, CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.REPAIR
    assert feedback.expected_by == datetime(2026, 3, 14, 4, 0, tzinfo=UTC)
    assert feedback.customer.time_zone == "Asia/Shanghai"
    assert "expected_outcome" not in feedback.metadata.get("fields", {})


def test_form_encoded_fields_of_these_names_are_read_not_kept_as_other_fields() -> None:
    values = web.form_values(
        [
            ("message", "The dryer burns my clothes"),
            ("email", "li.wei@example.com"),
            ("expected_outcome", " REPLACEMENT "),
            ("expected_by", "2026-03-14T18:00"),  # what a datetime-local input sends
            ("time_zone", "Europe/Berlin"),
            ("order_number", "1187"),
        ]
    )
    feedback = web.to_feedback(web.WebForm.model_validate(values), CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.REPLACEMENT
    # Without an offset: in the integration's zone, as submitted_at is.
    assert feedback.expected_by == datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
    assert feedback.customer.time_zone == "Europe/Berlin"
    assert feedback.metadata["fields"] == {"order_number": "1187"}


def test_a_date_alone_is_the_end_of_that_day() -> None:
    """A form's date input sends only the day: "by the 14th" is before the 14th is over,
    so the day the form is sent is not refused as already past."""
    values = {"message": "漏水", "email": "a@b.cn", "expected_by": "2026-03-14"}
    feedback = web.to_feedback(web.WebForm.model_validate(values), CHINA)
    assert feedback.expected_by == datetime(2026, 3, 14, 15, 59, 59, tzinfo=UTC)
    today = {**values, "expected_by": "2026-03-12", "submitted_at": "2026-03-12T07:00:00+08:00"}
    assert web.to_feedback(web.WebForm.model_validate(today), CHINA).expected_by == datetime(
        2026, 3, 12, 15, 59, 59, tzinfo=UTC
    )


def test_a_date_that_does_not_exist_is_refused_by_the_form() -> None:
    errors = parse_errors(
        web.WebForm, {"message": "x", "email": "a@b.cn", "expected_by": "2026-02-30"}
    )
    assert [error["field"] for error in errors] == ["expected_by"]


def test_a_web_expected_by_without_offset_and_no_configured_zone_is_refused() -> None:
    form = web.WebForm.model_validate(
        {"message": "x", "email": "a@b.cn", "expected_by": "2026-03-14T18:00:00"}
    )
    with pytest.raises(Invalid) as refused:
        web.to_feedback(form, NO_ZONE)
    assert (refused.value.field, refused.value.message) == (
        "expected_by",
        "has no time zone offset and the integration configures no timezone",
    )


def test_a_web_expected_by_before_the_form_was_submitted_is_refused() -> None:
    form = web.WebForm.model_validate(
        {**load("web_form.json"), "expected_by": "2026-03-11T09:29:59+08:00"}
    )
    with pytest.raises(Invalid) as refused:
        web.to_feedback(form, CHINA)
    assert (refused.value.field, refused.value.message) == (
        "expected_by",
        "is before the feedback was received (2026-03-11T01:30:00Z)",
    )


def test_web_form_errors_name_the_form_fields() -> None:
    errors = parse_errors(web.WebForm, {"message": "x", "email": "a@b.cn", "expected_outcome": "?"})
    assert errors == [
        {"field": "expected_outcome", "message": f"unknown expected outcome '?': one of {OUTCOMES}"}
    ]
    form = web.WebForm.model_validate(
        {"message": "x", "email": "a@b.cn", "time_zone": "Mars/Olympus"}
    )
    with pytest.raises(Invalid) as refused:
        web.to_feedback(form, CHINA)
    assert (refused.value.field, refused.value.message) == ("time_zone", UNKNOWN_ZONE)


def test_a_blank_time_zone_on_a_form_is_no_time_zone() -> None:
    form = web.WebForm.model_validate({"message": "x", "email": "a@b.cn", "time_zone": "  "})
    assert web.to_feedback(form, CHINA).customer.time_zone is None


# --- phone, chat, social, SMS, app review --------------------------------------------------


def test_a_call_carries_what_the_agent_recorded() -> None:
    data = load("phone_call.json")
    data["customer"] = {**data["customer"], "time_zone": "Asia/Shanghai"}
    call = phone.CallRecord.model_validate(
        {**data, "expected_outcome": "repair", "expected_by": "2026-03-12T18:00:00"}
    )
    feedback = phone.to_feedback(call, CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.REPAIR
    assert feedback.expected_by == datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    assert feedback.customer.time_zone == "Asia/Shanghai"


def test_call_errors_name_the_call_record_fields() -> None:
    data = load("phone_call.json")
    bad_zone = {**data, "customer": {"id": "C-2087", "time_zone": "Mars/Olympus"}}
    with pytest.raises(Invalid) as refused:
        phone.to_feedback(phone.CallRecord.model_validate(bad_zone), CHINA)
    assert (refused.value.field, refused.value.message) == ("customer.time_zone", UNKNOWN_ZONE)
    before = phone.CallRecord.model_validate({**data, "expected_by": "2026-03-11T14:00:00+08:00"})
    with pytest.raises(Invalid) as early:
        phone.to_feedback(before, CHINA)
    assert early.value.field == "expected_by"
    assert parse_errors(phone.CallRecord, {**data, "expected_outcome": "callback"}) == [
        {
            "field": "expected_outcome",
            "message": f"unknown expected outcome 'callback': one of {OUTCOMES}",
        }
    ]


def test_a_chat_carries_them_and_measures_expected_by_from_the_first_customer_message() -> None:
    data = load("chat_conversation.json")  # the customer's first message: 14:05:20Z
    data["customer"] = {**data["customer"], "time_zone": "America/New_York"}
    conversation = chat.ChatConversation.model_validate(
        {**data, "expected_outcome": "Explanation", "expected_by": "2026-03-05T14:05:20Z"}
    )
    feedback = chat.to_feedback(conversation, CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.EXPLANATION
    assert feedback.expected_by == feedback.received_at
    assert feedback.customer.time_zone == "America/New_York"
    early = chat.ChatConversation.model_validate({**data, "expected_by": "2026-03-05T14:05:19Z"})
    with pytest.raises(Invalid) as refused:
        chat.to_feedback(early, CHINA)
    assert (refused.value.field, refused.value.message) == (
        "expected_by",
        "is before the feedback was received (2026-03-05T14:05:20Z)",
    )


def test_a_chat_with_an_unknown_time_zone_names_the_customer_field() -> None:
    data = load("chat_conversation.json")
    data["customer"] = {**data["customer"], "time_zone": "Mars/Olympus"}
    with pytest.raises(Invalid) as refused:
        chat.to_feedback(chat.ChatConversation.model_validate(data), CHINA)
    assert refused.value.field == "customer.time_zone"


def test_a_social_post_carries_them_with_the_authors_time_zone() -> None:
    data = load("social_mention.json")
    data["author"] = {**data["author"], "time_zone": "Asia/Shanghai"}
    post_in = social.SocialPost.model_validate(
        {**data, "expected_outcome": "APOLOGY", "expected_by": "2026-03-13"}
    )
    feedback = social.to_feedback(post_in, CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.APOLOGY
    assert feedback.expected_by == datetime(2026, 3, 13, 15, 59, 59, tzinfo=UTC)
    assert feedback.customer.time_zone == "Asia/Shanghai"
    data["author"]["time_zone"] = "Mars/Olympus"
    with pytest.raises(Invalid) as refused:
        social.to_feedback(social.SocialPost.model_validate(data), CHINA)
    assert refused.value.field == "author.time_zone"


def test_an_sms_carries_them_and_names_its_own_fields() -> None:
    data = load("sms_three_segments.json")  # received 2026-03-11T08:12:40 in Shanghai
    message = sms.SmsMessage.model_validate(
        {
            **data,
            "time_zone": "Asia/Shanghai",
            "expected_outcome": "refund",
            "expected_by": "2026-03-11T08:12:40",
        }
    )
    feedback = sms.to_feedback(message, CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.REFUND
    assert (
        feedback.expected_by == feedback.received_at == datetime(2026, 3, 11, 0, 12, 40, tzinfo=UTC)
    )
    assert feedback.customer.time_zone == "Asia/Shanghai"
    with pytest.raises(Invalid) as bad_zone:
        sms.to_feedback(sms.SmsMessage.model_validate({**data, "time_zone": "Mars/Olympus"}), CHINA)
    assert (bad_zone.value.field, bad_zone.value.message) == ("time_zone", UNKNOWN_ZONE)
    with pytest.raises(Invalid) as naive:
        sms.to_feedback(
            sms.SmsMessage.model_validate(
                {**data, "received_at": None, "expected_by": "2026-03-20T09:00"}
            ),
            NO_ZONE,
        )
    assert naive.value.field == "expected_by"


def test_an_app_review_carries_them_and_names_its_own_fields() -> None:
    data = load("app_review.json")  # created 2026-03-11T06:41Z
    review = app_review.AppReview.model_validate(
        {
            **data,
            "time_zone": "America/Los_Angeles",
            "expected_outcome": "compensation",
            "expected_by": "2026-03-20T12:00:00-07:00",
        }
    )
    feedback = app_review.to_feedback(review, CHINA)
    assert feedback.expected_outcome is ExpectedOutcome.COMPENSATION
    assert feedback.expected_by == datetime(2026, 3, 20, 19, 0, tzinfo=UTC)
    assert feedback.customer.time_zone == "America/Los_Angeles"
    with pytest.raises(Invalid) as bad_zone:
        app_review.to_feedback(
            app_review.AppReview.model_validate({**data, "time_zone": "Mars/Olympus"}), CHINA
        )
    assert bad_zone.value.field == "time_zone"
    early = app_review.AppReview.model_validate({**data, "expected_by": "2026-03-10"})
    with pytest.raises(Invalid) as refused:
        app_review.to_feedback(early, CHINA)
    assert refused.value.field == "expected_by"


@pytest.mark.parametrize(
    ("model", "fixture"),
    [
        (web.WebForm, "web_form.json"),
        (phone.CallRecord, "phone_call.json"),
        (chat.ChatConversation, "chat_conversation.json"),
        (social.SocialPost, "social_mention.json"),
        (sms.SmsMessage, "sms_three_segments.json"),
        (app_review.AppReview, "app_review.json"),
    ],
)
def test_every_json_channel_refuses_an_unknown_outcome_naming_the_outcomes(
    model: type[BaseModel], fixture: str
) -> None:
    errors = parse_errors(model, {**load(fixture), "expected_outcome": "a new phone"})
    assert errors == [
        {
            "field": "expected_outcome",
            "message": f"unknown expected outcome 'a new phone': one of {OUTCOMES}",
        }
    ]


def example_of(model: type[BaseModel]) -> Any:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict) and isinstance(extra["examples"], list)
    (example,) = extra["examples"]
    return model.model_validate(example)


def test_the_documented_examples_carry_them() -> None:
    """The OpenAPI examples of the generic post, the web form, a call and a chat show all
    three."""
    feedbacks = [
        normalise_from(example_of(FeedbackIn), CHINA),
        web.to_feedback(example_of(web.WebForm), CHINA),
        phone.to_feedback(example_of(phone.CallRecord), CHINA),
        chat.to_feedback(example_of(chat.ChatConversation), CHINA),
    ]
    for feedback in feedbacks:
        assert feedback.expected_outcome is not None, feedback.channel
        assert feedback.expected_by is not None, feedback.channel
        assert feedback.customer.time_zone == "Asia/Shanghai", feedback.channel


# --- e-mail --------------------------------------------------------------------------------


def mail_with(*headers: str, date: str = "Wed, 11 Mar 2026 09:30:00 +0800") -> bytes:
    lines = [
        "From: Li Wei <li.wei@example.com>",
        "To: support@example.com",
        "Subject: refund",
        f"Date: {date}",
        "Message-ID: <expectations-1@example.com>",
        *headers,
        "",
        "Where is my refund?",
    ]
    return "\r\n".join(lines).encode()


def parsed_mail(*headers: str, source: Source = CHINA) -> Feedback:
    return parse_email(mail_with(*headers), source)


def mail_refusal(*headers: str, source: Source = CHINA) -> Invalid:
    with pytest.raises(Invalid) as refused:
        parsed_mail(*headers, source=source)
    return refused.value


def test_a_mail_carries_them_in_its_headers() -> None:
    feedback = parsed_mail(
        "X-Closeloop-Expected-Outcome: Refund",
        "X-Closeloop-Expected-By: 2026-03-13T18:00:00+08:00",
        "X-Closeloop-Customer-Time-Zone: Asia/Shanghai",
    )
    assert feedback.expected_outcome is ExpectedOutcome.REFUND
    assert feedback.expected_by == datetime(2026, 3, 13, 10, 0, tzinfo=UTC)
    assert feedback.customer.time_zone == "Asia/Shanghai"
    assert feedback.customer.email == "li.wei@example.com"


def test_a_mail_without_them_has_none_of_them() -> None:
    feedback = parsed_mail()
    assert (feedback.expected_outcome, feedback.expected_by, feedback.customer.time_zone) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("value", "source", "expected"),
    [
        ("Fri, 13 Mar 2026 18:00:00 +0800", CHINA, datetime(2026, 3, 13, 10, 0, tzinfo=UTC)),
        ("Fri, 13 Mar 2026 18:00:00 -0000", CHINA, datetime(2026, 3, 13, 18, 0, tzinfo=UTC)),
        ("2026-03-13T18:00:00", CHINA, datetime(2026, 3, 13, 10, 0, tzinfo=UTC)),
        ("2026-03-13", CHINA, datetime(2026, 3, 13, 15, 59, 59, tzinfo=UTC)),
        ("2026-03-13T18:00:00Z", NO_ZONE, datetime(2026, 3, 13, 18, 0, tzinfo=UTC)),
    ],
)
def test_a_mails_expected_by_is_iso_8601_or_as_in_a_date_header(
    value: str, source: Source, expected: datetime
) -> None:
    assert parsed_mail(f"X-Closeloop-Expected-By: {value}", source=source).expected_by == expected


def test_a_mails_header_may_be_an_encoded_word() -> None:
    feedback = parsed_mail("X-Closeloop-Expected-Outcome: =?UTF-8?B?UmVwbGFjZW1lbnQ=?=")
    assert feedback.expected_outcome is ExpectedOutcome.REPLACEMENT


@pytest.mark.parametrize(
    ("header", "field", "message"),
    [
        (
            "X-Closeloop-Expected-Outcome: money back",
            "X-Closeloop-Expected-Outcome",
            f"unknown expected outcome 'money back': one of {OUTCOMES}",
        ),
        (
            "X-Closeloop-Customer-Time-Zone: Mars/Olympus",
            "X-Closeloop-Customer-Time-Zone",
            UNKNOWN_ZONE,
        ),
        (
            "X-Closeloop-Expected-By: next Friday",
            "X-Closeloop-Expected-By",
            "is not a date and time: ISO 8601 (2026-03-20T18:00:00+08:00) or as in a Date header",
        ),
        (
            "X-Closeloop-Expected-By: 2026-03-11T09:00:00+08:00",
            "X-Closeloop-Expected-By",
            "is before the feedback was received (2026-03-11T01:30:00Z)",
        ),
    ],
)
def test_a_mails_bad_header_is_refused_naming_the_header(
    header: str, field: str, message: str
) -> None:
    refused = mail_refusal(header)
    assert (refused.field, refused.message) == (field, message)


def test_a_mails_expected_by_without_offset_and_no_configured_zone_is_refused() -> None:
    refused = mail_refusal("X-Closeloop-Expected-By: 2026-03-13T18:00:00", source=NO_ZONE)
    assert (refused.field, refused.message) == (
        "X-Closeloop-Expected-By",
        "has no time zone offset and the integration configures no timezone",
    )


def test_a_mail_received_now_refuses_an_expected_by_before_now() -> None:
    """An unreadable Date means the mail counts as received now: the check is against now."""
    raw = mail_with("X-Closeloop-Expected-By: 2026-03-11T23:00:00Z", date="not a date")
    with pytest.raises(Invalid) as refused:
        parse_email(raw, CHINA)
    assert refused.value.message == "is before the feedback was received (2026-03-12T00:00:00Z)"
