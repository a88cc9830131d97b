from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.intake.domain import FeedbackIn, detect_language, normalise
from shared.contracts import Channel

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def post(**fields: object) -> FeedbackIn:
    body = {"channel": "web", "customer": {"id": "C-1"}, "text": "My order never arrived", **fields}
    return FeedbackIn.model_validate(body)


def test_same_channel_message_id_gives_the_same_feedback_id() -> None:
    first = normalise(post(external_id="m-1"), now=NOW)
    again = normalise(post(external_id="m-1", text="edited"), now=NOW + timedelta(hours=1))
    assert first.feedback_id == again.feedback_id


def test_message_ids_are_scoped_by_channel() -> None:
    web = normalise(post(external_id="m-1"), now=NOW)
    sms = normalise(post(external_id="m-1", channel="sms"), now=NOW)
    assert web.feedback_id != sms.feedback_id


def test_idempotency_key_dedupes_posts_without_a_message_id() -> None:
    first = normalise(post(), now=NOW, idempotency_key="k-9")
    again = normalise(post(), now=NOW + timedelta(seconds=5), idempotency_key="k-9")
    other = normalise(post(), now=NOW, idempotency_key="k-10")
    assert first.feedback_id == again.feedback_id != other.feedback_id


def test_identical_content_with_the_same_received_at_is_one_feedback() -> None:
    at = "2026-03-01T17:00:00+08:00"
    first = normalise(post(received_at=at), now=NOW)
    again = normalise(post(received_at=at), now=NOW + timedelta(minutes=1))
    assert first.feedback_id == again.feedback_id


def test_received_at_is_converted_to_utc() -> None:
    feedback = normalise(post(received_at="2026-03-01T17:00:00+08:00"), now=NOW)
    assert feedback.received_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert feedback.received_at.utcoffset() == timedelta(0)
    assert feedback.ingested_at.tzinfo is not None


def test_missing_received_at_defaults_to_now() -> None:
    assert normalise(post(), now=NOW).received_at == NOW


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("我买的洗衣机漏水了", "zh"),
        ("快递还没到 order 12345", "zh"),
        ("The parcel never arrived", "en"),
        ("Доставка задерживается", "other"),
        ("12345 !!!", "other"),
    ],
)
def test_language_detection(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_explicit_language_wins() -> None:
    assert normalise(post(language="en", text="你好 hello"), now=NOW).language == "en"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"customer": {}}, "customer"),
        ({"text": "   "}, "text"),
        ({"received_at": "2026-03-01T09:00:00"}, "received_at"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        post(**fields)
    assert field in {str(err["loc"][0]) for err in caught.value.errors()}


def test_text_is_trimmed_and_customer_key_set() -> None:
    feedback = normalise(post(text="  late delivery \n"), now=NOW)
    assert feedback.text == "late delivery"
    assert feedback.customer_key.startswith("c-")
    assert feedback.channel is Channel.WEB
