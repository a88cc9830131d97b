import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.core.exceptions import CloudEventValidationError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.contracts import (
    EVENT_MODELS,
    NAIVE_TIMESTAMP,
    Channel,
    EventData,
    Feedback,
    FeedbackClassified,
    FeedbackReceived,
    Topic,
    error_message,
    event_type,
    parse_event_type,
)
from shared.envelope import (
    ID_NAMESPACE,
    PoisonMessage,
    derive_id,
    from_record,
    new_event,
    to_record,
    to_records,
)
from tests.support import a_classification, a_customer, a_feedback

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def a_feedback_event() -> FeedbackReceived:
    return FeedbackReceived(feedback=a_feedback("没收到货", feedback_id="f-1", at=NOW))


def test_event_round_trips_through_the_kafka_binding() -> None:
    event = new_event(a_feedback_event(), source="/test", cause="c1", time=NOW)
    record = to_record(event)
    headers = dict(record.headers)
    assert record.topic == Topic.FEEDBACK_RECEIVED
    assert record.key == event.data.feedback.customer_key.encode()
    assert headers["ce_type"] == b"closeloop.feedback.received.v1"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == b"f-1"
    assert headers["content-type"] == b"application/json"
    parsed = from_record(record.key, record.value, record.headers)
    assert parsed.id == event.id and parsed.time == NOW
    assert parsed.data == event.data


def test_event_ids_are_derived_from_their_cause() -> None:
    data = a_feedback_event()
    assert new_event(data, source="/a", cause="x").id == new_event(data, source="/b", cause="x").id
    assert new_event(data, source="/a", cause="x").id != new_event(data, source="/a", cause="y").id
    assert derive_id("feedback", "web", "1") == derive_id("feedback", "web", "1")
    assert derive_id("feedback", "web", "1") != derive_id("feedback", "sms", "1")


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8")), max_size=4))
def test_derived_ids_are_uuid5_of_the_parts_in_the_closeloop_namespace(parts: list[str]) -> None:
    assert derive_id(*parts) == str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)))


def test_the_partition_key_is_the_message_key_and_not_a_header() -> None:
    data = a_feedback_event()
    record = to_record(new_event(data, source="/t", cause="c"))
    assert record.key == data.feedback.customer_key.encode()
    assert [name for name, _ in record.headers] == [
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "content-type",
        "ce_specversion",
    ]


def test_a_batch_of_events_gives_the_records_each_event_gives_alone() -> None:
    published_at = datetime(2026, 3, 1, 9, 0, 0, 123000, tzinfo=UTC)
    events = [
        new_event(
            FeedbackReceived(feedback=a_feedback(f"text {n}", feedback_id=f"f-{n}")),
            source="/closeloop/intake",
            cause=f"f-{n}",
            time=published_at,
        )
        for n in range(5)
    ]
    records = to_records(events)
    assert records == [to_record(event) for event in events]
    assert [dict(record.headers)["ce_subject"] for record in records] == [
        f"f-{n}".encode() for n in range(5)
    ]
    assert len({dict(record.headers)["ce_id"] for record in records}) == 5


def _data(kind: str, n: int) -> EventData:
    feedback = a_feedback(f"text {n}", feedback_id=f"f-{n}")
    if kind == "received":
        return FeedbackReceived(feedback=feedback)
    return FeedbackClassified(feedback=feedback, classification=a_classification())


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["received", "classified"]),
            st.sampled_from(["/a", "/b"]),
            st.integers(min_value=0, max_value=2),
        ),
        max_size=12,
    )
)
def test_records_of_mixed_events_are_the_same_in_a_batch_and_alone(
    shapes: list[tuple[str, str, int]],
) -> None:
    events = [
        new_event(_data(kind, n), source=source, cause=str(n), time=NOW + timedelta(seconds=at))
        for n, (kind, source, at) in enumerate(shapes)
    ]
    assert to_records(events) == [to_record(event) for event in events]


def test_an_event_time_without_time_zone_is_refused_in_a_batch_too() -> None:
    naive = datetime(2026, 3, 1, 9, 0)
    events = [
        new_event(a_feedback_event(), source="/t", cause=str(n), time=naive) for n in range(3)
    ]
    with pytest.raises(CloudEventValidationError):
        to_record(events[0])
    with pytest.raises(CloudEventValidationError):
        to_records(events)


def test_unknown_fields_in_event_data_are_ignored() -> None:
    record = to_record(new_event(a_feedback_event(), source="/t", cause="c"))
    value = record.value.replace(b'{"feedback"', b'{"added_later": 1, "feedback"', 1)
    parsed = from_record(record.key, value, record.headers)
    assert isinstance(parsed.data, FeedbackReceived)
    assert parsed.data.feedback.feedback_id == "f-1"


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([], b"{}", "not a CloudEvent"),
        (
            [
                ("ce_id", b"1"),
                ("ce_type", b"other.thing"),
                ("ce_source", b"/x"),
                ("ce_specversion", b"1.0"),
            ],
            b"{}",
            "not a closeloop event",
        ),
        (
            [
                ("ce_id", b"1"),
                ("ce_type", b"closeloop.nope.v1"),
                ("ce_source", b"/x"),
                ("ce_specversion", b"1.0"),
            ],
            b"{}",
            "unknown event type",
        ),
        (
            [
                ("ce_id", b"1"),
                ("ce_type", b"closeloop.feedback.received.v9"),
                ("ce_source", b"/x"),
                ("ce_specversion", b"1.0"),
            ],
            b"{}",
            "unsupported version",
        ),
        (
            [
                ("ce_id", b"1"),
                ("ce_type", b"closeloop.feedback.received.v1"),
                ("ce_source", b"/x"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
            b"{not json",
            "is not a JSON object",
        ),
        (
            [
                ("ce_id", b"1"),
                ("ce_type", b"closeloop.feedback.received.v1"),
                ("ce_source", b"/x"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
            b'{"feedback": {}}',
            "invalid feedback.received: feedback.feedback_id: Field required",
        ),
    ],
)
def test_unprocessable_messages_are_poison_with_a_reason(
    headers: list[tuple[str, bytes]], value: bytes, reason: str
) -> None:
    with pytest.raises(PoisonMessage) as caught:
        from_record(b"k", value, headers)
    assert reason in caught.value.reason


def test_every_event_type_has_a_versioned_type_and_a_topic() -> None:
    for name, model in EVENT_MODELS.items():
        assert parse_event_type(event_type(name)) == (name, "v1")
        assert model.topic in Topic


def test_customer_key_is_pseudonymous_and_stable() -> None:
    first = a_customer(id=None, email="Li.Wei@Example.com")
    second = a_customer(id=None, email="li.wei@example.com ")
    assert first.key == second.key
    assert "li.wei" not in first.key


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone") as refused:
        Feedback(
            feedback_id="f",
            channel=Channel.WEB,
            customer=a_customer(),
            customer_key="k",
            text="x",
            received_at=datetime(2026, 1, 1),
            ingested_at=NOW,
        )
    (error,) = refused.value.errors()
    assert error_message(error) == NAIVE_TIMESTAMP
