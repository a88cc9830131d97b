"""The shared consumer loop against the real broker: commit, retry, dead-letter, stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.errors import AutoReconnect

from shared.contracts import (
    Classification,
    FeedbackClassified,
    FeedbackReceived,
    Topic,
    Urgency,
)
from shared.envelope import Event, from_record, new_event, to_record
from shared.kafka import BatchHandler, ConsumerLoop, EventProducer, Handler
from shared.settings import ServiceSettings
from shared.tools import devstack
from tests.conftest import Infra
from tests.support import (
    TopicReader,
    a_customer,
    a_feedback,
    eventually,
    produce_raw,
    with_id,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def topic(infra: Infra) -> str:
    name = f"test.loop.{uuid.uuid4().hex[:8]}"
    await devstack.create_topics(infra.bootstrap, 1, names=[name, f"{name}.dlq"])
    return name


def settings(infra: Infra) -> ServiceSettings:
    return ServiceSettings(
        kafka_bootstrap=infra.bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=400,
        kafka_fetch_max_wait_ms=devstack.LOCAL_FETCH_MAX_WAIT_MS,
        retry_initial_s=0.05,
        retry_max_s=0.2,
        handler_max_attempts=3,
    )


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[EventProducer]:
    producer = EventProducer(settings(infra), "test")
    assert await producer.connect()
    yield producer
    await producer.stop()


def received(text: str = "parcel lost") -> Event[FeedbackReceived]:
    feedback = a_feedback(text)
    return new_event(
        FeedbackReceived(feedback=feedback), source="/test", cause=feedback.feedback_id
    )


async def put(infra: Infra, topic: str, event: Event[Any]) -> None:
    record = to_record(event)
    await produce_raw(infra.bootstrap, topic, record.value, record.key, record.headers)


def classified_of(event: Event[Any]) -> Event[FeedbackClassified]:
    classification = Classification(
        root_cause="delivery",
        urgency=Urgency.LOW,
        sentiment=0,
        confidence=1,
        model_version="test",
    )
    data = FeedbackClassified(feedback=event.data.feedback, classification=classification)
    return new_event(data, source="/test", cause=event.id)


class Running:
    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.loop.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.loop.request_stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)


def consumer_loop(
    infra: Infra, topic: str, group: str, handler: Handler, producer: EventProducer
) -> ConsumerLoop:
    return ConsumerLoop(
        settings=settings(infra),
        topics=[topic],
        group_id=group,
        client_id="test",
        handlers={"feedback.received": handler},
        producer=producer,
    )


async def committed(infra: Infra, topic: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))  # type: ignore[no-any-return]
    finally:
        await consumer.stop()


async def test_output_is_produced_and_the_offset_committed_after_handling(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    seen: list[str] = []

    async def handler(event: Event[Any]) -> Sequence[Event[Any]]:
        seen.append(event.id)
        return [classified_of(event)]

    events = [received(), received()]
    for event in events:
        await put(infra, topic, event)
    async with (
        TopicReader(infra.bootstrap, Topic.FEEDBACK_CLASSIFIED) as reader,
        Running(consumer_loop(infra, topic, group, handler, producer)),
    ):
        for event in events:
            out = await reader.wait_for(with_id(classified_of(event).id))
            assert out.data.feedback.feedback_id == event.data.feedback.feedback_id
    assert seen == [e.id for e in events]
    assert await committed(infra, topic, group) == 2


async def test_poison_goes_to_the_dlq_with_the_reason_and_the_next_message_flows(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    handled: list[str] = []

    async def handler(event: Event[Any]) -> Sequence[Event[Any]]:
        handled.append(event.id)
        return []

    await produce_raw(infra.bootstrap, topic, b"\x00garbage", key=b"k1")
    good = received()
    await put(infra, topic, good)
    async with (
        TopicReader(infra.bootstrap, f"{topic}.dlq") as dlq,
        Running(consumer_loop(infra, topic, group, handler, producer)),
    ):
        dead = await dlq.wait_for_record(lambda r: r.key == b"k1")
        await eventually(lambda: good.id in handled)
    headers = dict(dead.headers)
    assert dead.value == b"\x00garbage"
    assert b"not a CloudEvent" in headers["dlq_reason"]
    assert headers["dlq_kind"] == b"invalid"
    assert headers["dlq_topic"] == topic.encode()
    assert headers["dlq_offset"] == b"0"
    assert headers["dlq_group"] == group.encode()
    assert await committed(infra, topic, group) == 2


async def test_transient_failures_are_retried_without_skipping(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    attempts: list[str] = []

    async def flaky(event: Event[Any]) -> Sequence[Event[Any]]:
        attempts.append(event.id)
        if len(attempts) <= 4:  # more than handler_max_attempts: transient is never given up
            raise AutoReconnect("database unreachable")
        return []

    event = received()
    await put(infra, topic, event)
    async with Running(consumer_loop(infra, topic, group, flaky, producer)):
        await eventually(lambda: len(attempts) >= 5)

        async def offset_is_committed() -> bool:
            return await committed(infra, topic, group) == 1

        await eventually(offset_is_committed)
    assert attempts == [event.id] * 5


async def test_a_failing_handler_is_dead_lettered_after_bounded_attempts(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    attempts: list[str] = []

    async def broken(event: Event[Any]) -> Sequence[Event[Any]]:
        attempts.append(event.id)
        raise ValueError("cannot route this")

    event = received()
    await put(infra, topic, event)
    async with (
        TopicReader(infra.bootstrap, f"{topic}.dlq") as dlq,
        Running(consumer_loop(infra, topic, group, broken, producer)),
    ):
        dead = await dlq.wait_for_record(lambda r: True)
    assert len(attempts) == 3
    reason = dict(dead.headers)["dlq_reason"].decode()
    assert reason == "handler failed after 3 attempts: ValueError: cannot route this"
    assert from_record(dead.key, dead.value, dead.headers).id == event.id


async def test_stopping_mid_retry_commits_nothing_and_the_next_owner_gets_the_message(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    first_owner: list[str] = []

    async def unavailable(event: Event[Any]) -> Sequence[Event[Any]]:
        first_owner.append(event.id)
        raise AutoReconnect("database unreachable")

    event = received()
    await put(infra, topic, event)
    async with Running(consumer_loop(infra, topic, group, unavailable, producer)):
        await eventually(lambda: bool(first_owner))
    assert await committed(infra, topic, group) is None

    second_owner: list[str] = []

    async def healthy(event: Event[Any]) -> Sequence[Event[Any]]:
        second_owner.append(event.id)
        return []

    async with Running(consumer_loop(infra, topic, group, healthy, producer)):
        await eventually(lambda: bool(second_owner))
    assert second_owner == [event.id]


# --- batch handlers ---------------------------------------------------------------------


def batching_loop(
    infra: Infra,
    topic: str,
    group: str,
    handler: Handler,
    batch_handler: BatchHandler,
    producer: EventProducer,
    **setting: int,
) -> ConsumerLoop:
    return ConsumerLoop(
        settings=settings(infra).model_copy(update={"kafka_batch_linger_ms": 100, **setting}),
        topics=[topic],
        group_id=group,
        client_id="test",
        handlers={"feedback.received": handler},
        batch_handlers={"feedback.received": batch_handler},
        producer=producer,
    )


def recording_handlers(calls: list[list[str]]) -> tuple[Handler, BatchHandler]:
    """A handler and a batch handler that note the ids of each call."""

    async def one(event: Event[Any]) -> Sequence[Event[Any]]:
        calls.append([event.id])
        return [classified_of(event)]

    async def many(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        calls.append([event.id for event in events])
        return [classified_of(event) for event in events]

    return one, many


async def test_waiting_events_go_to_the_batch_handler_in_one_call_and_are_committed(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    calls: list[list[str]] = []
    one, many = recording_handlers(calls)

    events = [received() for _ in range(12)]
    for event in events:
        await put(infra, topic, event)
    async with (
        TopicReader(infra.bootstrap, Topic.FEEDBACK_CLASSIFIED) as reader,
        Running(batching_loop(infra, topic, group, one, many, producer)),
    ):
        for event in events:
            await reader.wait_for(with_id(classified_of(event).id))
    assert [i for call in calls for i in call] == [e.id for e in events]
    assert len(calls) < len(events) and max(len(call) for call in calls) > 1
    assert await committed(infra, topic, group) == 12


async def test_lingering_stops_once_the_batch_holds_enough_events(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    """A linger far longer than the test may take: the events are handled because the
    batch reached KAFKA_BATCH_LINGER_RECORDS, not because the linger ran out (the copy
    skips the settings' 5 s limit on purpose: 300 s is longer than any wait below)."""
    group = f"g-{uuid.uuid4().hex}"
    calls: list[list[str]] = []
    one, many = recording_handlers(calls)
    loop = batching_loop(
        infra,
        topic,
        group,
        one,
        many,
        producer,
        kafka_batch_linger_ms=300_000,
        kafka_batch_linger_records=4,
    )
    events = [received() for _ in range(4)]
    async with (
        TopicReader(infra.bootstrap, Topic.FEEDBACK_CLASSIFIED) as reader,
        Running(loop),
    ):
        await put(infra, topic, events[0])
        await asyncio.sleep(0.5)  # the first fetch takes it; the linger starts
        for event in events[1:]:
            await put(infra, topic, event)
        for event in events:
            await reader.wait_for(with_id(classified_of(event).id))
    assert [i for call in calls for i in call] == [e.id for e in events]
    assert await committed(infra, topic, group) == 4


async def test_a_failed_batch_is_handled_one_by_one_and_only_the_bad_event_is_dead_lettered(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    group = f"g-{uuid.uuid4().hex}"
    events = [received() for _ in range(4)]
    bad = events[2].id
    handled: list[str] = []

    async def one(event: Event[Any]) -> Sequence[Event[Any]]:
        if event.id == bad:
            raise ValueError("cannot route this one")
        handled.append(event.id)
        return [classified_of(event)]

    async def many(batch: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        if any(event.id == bad for event in batch):
            raise ValueError("cannot route this one")
        handled.extend(event.id for event in batch)
        return [classified_of(event) for event in batch]

    for event in events[:2]:
        await put(infra, topic, event)
    await produce_raw(infra.bootstrap, topic, b"\x00garbage", key=b"poison")
    for event in events[2:]:
        await put(infra, topic, event)
    async with (
        TopicReader(infra.bootstrap, f"{topic}.dlq") as dlq,
        Running(batching_loop(infra, topic, group, one, many, producer)),
    ):
        poison = await dlq.wait_for_record(lambda r: r.key == b"poison")
        failed = await dlq.wait_for_record(lambda r: dict(r.headers)["dlq_kind"] == b"failed")

        async def all_committed() -> bool:
            return await committed(infra, topic, group) == 5

        await eventually(all_committed)
    assert from_record(failed.key, failed.value, failed.headers).id == bad
    assert dict(poison.headers)["dlq_kind"] == b"invalid"
    assert sorted(handled) == sorted(e.id for e in events if e.id != bad)
    assert len(handled) == 3


async def test_events_of_one_type_fetched_from_several_partitions_go_in_one_call_in_key_order(
    infra: Infra, producer: EventProducer
) -> None:
    topic = f"test.loop.{uuid.uuid4().hex[:8]}"
    await devstack.create_topics(infra.bootstrap, 3, names=[topic, f"{topic}.dlq"])
    group = f"g-{uuid.uuid4().hex}"
    calls: list[list[Event[Any]]] = []

    async def one(event: Event[Any]) -> Sequence[Event[Any]]:
        calls.append([event])
        return []

    async def many(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        calls.append(list(events))
        return []

    customers = [a_customer() for _ in range(6)]
    events = [
        new_event(
            FeedbackReceived(feedback=a_feedback(f"message {i}", customer=customers[i % 6])),
            source="/test",
            cause=f"c{i}",
        )
        for i in range(24)
    ]
    for event in events:
        await put(infra, topic, event)
    async with Running(batching_loop(infra, topic, group, one, many, producer)):
        await eventually(lambda: sum(len(call) for call in calls) >= 24)
    handled = [event for call in calls for event in call]
    assert sorted(e.id for e in handled) == sorted(e.id for e in events)
    assert max(len(call) for call in calls) > 8  # more than one partition's share
    for customer in customers:
        mine = [e.id for e in handled if e.data.feedback.customer == customer]
        assert mine == [e.id for e in events if e.data.feedback.customer == customer]
