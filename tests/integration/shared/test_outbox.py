"""The shared versioned-update + outbox primitive against the real database and broker:
a change and its events land together or not at all, a stale revision writes nothing,
the relay publishes what a stopped writer left, and publishing twice keeps the ids."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from shared.contracts import FeedbackReceived
from shared.db import Document
from shared.envelope import Event, new_event
from shared.errors import BrokerUnavailable
from shared.kafka import EventProducer
from shared.outbox import Conflict, Outbox, new_document, queued_events, until_applied
from shared.settings import ServiceSettings
from tests.conftest import Infra
from tests.support import TopicReader, a_feedback, with_id

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def an_event(run: str, n: int) -> Event[Any]:
    return new_event(
        FeedbackReceived(feedback=a_feedback(f"message {n}", feedback_id=f"{run}-{n}")),
        source="/test",
        cause=f"{run}-{n}",
        time=NOW,
    )


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[EventProducer]:
    producer = EventProducer(ServiceSettings(kafka_bootstrap=infra.bootstrap), "test-outbox")
    assert await producer.connect()
    yield producer
    await producer.stop()


@pytest.fixture
async def collection(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Any]:
    yield mongo_client[database_name]["things"]
    await mongo_client.drop_database(database_name)


async def test_a_change_queues_its_events_and_publishing_empties_the_outbox(
    infra: Infra, producer: EventProducer, collection: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    outbox = Outbox(collection)
    await outbox.ensure_indexes()
    await collection.insert_one(new_document({"_id": run, "n": 0}, [], NOW))

    events = [an_event(run, 1), an_event(run, 2)]
    written = await outbox.write(run, 1, {"$set": {"n": 1}}, events, NOW)
    assert written is not None and written["rev"] == 2 and written["n"] == 1
    assert [e.id for e in queued_events(written)] == [e.id for e in events]

    assert await outbox.publish(written, producer.publish)
    stored = await collection.find_one({"_id": run})
    assert stored is not None and stored["outbox"] == []
    async with TopicReader(infra.bootstrap, events[0].topic) as reader:
        for event in events:
            found = await reader.wait_for(with_id(event.id))
            assert found.data == event.data


async def test_a_change_decided_on_an_old_revision_writes_nothing(
    producer: EventProducer, collection: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    outbox = Outbox(collection)
    await collection.insert_one(new_document({"_id": run, "n": 0}, [], NOW))
    assert await outbox.write(run, 1, {"$set": {"n": 1}}, [an_event(run, 1)], NOW) is not None
    assert await outbox.write(run, 1, {"$set": {"n": 99}}, [an_event(run, 2)], NOW) is None
    stored = await collection.find_one({"_id": run})
    assert stored is not None and stored["n"] == 1 and len(stored["outbox"]) == 1


async def test_concurrent_increments_all_land_once_each(
    producer: EventProducer, collection: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    outbox = Outbox(collection)
    await collection.insert_one(new_document({"_id": run, "n": 0}, [], NOW))

    async def increment(k: int) -> Document:
        async def attempt() -> Document | None:
            doc = await collection.find_one({"_id": run})
            assert doc is not None
            return await outbox.write(
                run, doc["rev"], {"$set": {"n": doc["n"] + 1}}, [an_event(run, k)], NOW
            )

        return await until_applied(attempt, what=f"thing {run}", attempts=50)

    await asyncio.gather(*(increment(k) for k in range(6)))
    stored = await collection.find_one({"_id": run})
    assert stored is not None and stored["n"] == 6 and stored["rev"] == 7
    assert len({entry["id"] for entry in stored["outbox"]}) == 6


async def test_until_applied_gives_up_with_a_conflict() -> None:
    tries = 0

    async def never() -> None:
        nonlocal tries
        tries += 1

    with pytest.raises(Conflict, match="thing t keeps changing"):
        await until_applied(never, what="thing t", attempts=3)
    assert tries == 3


async def test_the_relay_publishes_what_a_writer_left_when_the_broker_was_down(
    infra: Infra, producer: EventProducer, collection: Any
) -> None:
    run = uuid.uuid4().hex[:8]

    async def broker_down(events: Sequence[Event[Any]]) -> None:
        raise BrokerUnavailable("broker down")

    outbox = Outbox(collection)
    await collection.insert_one(new_document({"_id": run}, [], NOW))
    event = an_event(run, 1)
    written = await outbox.write(run, 1, {"$set": {"done": True}}, [event], NOW)
    assert written is not None
    assert not await outbox.publish(written, broker_down)  # left for the relay

    assert (
        await outbox.relay(NOW - timedelta(seconds=1), producer.publish) == 0
    )  # queued after the cut-off
    assert await outbox.relay(NOW + timedelta(seconds=1), producer.publish) == 1
    assert await outbox.relay(NOW + timedelta(seconds=1), producer.publish) == 0
    async with TopicReader(infra.bootstrap, event.topic) as reader:
        await reader.wait_for(lambda e: e.id == event.id)
