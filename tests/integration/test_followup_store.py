"""Followup state against the real database and broker: idempotent case creation,
leased due queue, and the outbox that never loses an accepted change's events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pymongo import AsyncMongoClient

from services.followup.handlers import make_handlers
from services.followup.outbox import publish_outbox, relay
from services.followup.scheduled import fire_callback
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import (
    CaseRouted,
    Priority,
    Topic,
)
from shared.db import Document
from shared.envelope import Event, new_event
from shared.kafka import EventProducer
from tests.conftest import Infra
from tests.support import TopicReader, a_case_routed


def routed_event(priority: Priority = Priority.P3) -> Event[CaseRouted]:
    routed = a_case_routed(priority, at=utcnow())
    return new_event(routed, source="/test", cause=routed.case_id)


async def store_for(client: AsyncMongoClient[Document], name: str) -> FollowupStore:
    store = FollowupStore(client[name])
    await store.ensure_indexes()
    return store


async def test_redelivered_case_routed_opens_one_case_with_one_callback(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    handler = make_handlers(store, FollowupSettings())["case.routed"]
    event = routed_event()
    first = await handler(event)
    second = await handler(event)
    assert [(e.id, e.data) for e in first] == [(e.id, e.data) for e in second]
    assert first[0].name == "callback.scheduled"
    assert await store.cases.count_documents({}) == 1
    assert await store.due.count_documents({}) == 1
    case = await store.get(event.data.case_id)
    assert case is not None and case["status"] == "open"
    assert case["callbacks"][0]["due_at"] == event.data.routing.routed_at + timedelta(hours=24)


async def test_a_due_item_is_claimed_by_one_copy_and_reclaimed_after_its_lease(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    event = routed_event()
    await make_handlers(store, FollowupSettings())["case.routed"](event)
    later = utcnow() + timedelta(days=3)
    claims = await asyncio.gather(*(store.claim_due(later, f"copy-{i}", 30) for i in range(5)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert await store.claim_due(later + timedelta(seconds=10), "copy-x", 30) is None
    reclaimed = await store.claim_due(later + timedelta(seconds=31), "copy-y", 30)
    assert reclaimed is not None and reclaimed["_id"] == winners[0]["_id"]
    await store.complete_due(reclaimed["_id"], "copy-y")
    assert await store.claim_due(later + timedelta(days=1), "copy-z", 30) is None


async def test_events_queued_while_the_broker_is_down_are_published_by_the_relay(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    settings = FollowupSettings(kafka_bootstrap=infra.bootstrap)
    event = routed_event()
    await make_handlers(store, settings)["case.routed"](event)
    item = await store.claim_due(utcnow() + timedelta(days=3), "me", 30)
    assert item is not None

    offline = EventProducer(settings, "test-offline")  # never connected: every publish fails
    await fire_callback(offline, store, item)
    case = await store.get(event.data.case_id)
    assert case is not None and [e["name"] for e in case["outbox"]] == ["callback.due"]
    queued_id = case["outbox"][0]["id"]

    online = EventProducer(settings, "test-online")
    assert await online.connect()
    stop = asyncio.Event()
    try:
        async with TopicReader(infra.bootstrap, Topic.CASE_LIFECYCLE) as reader:
            task = asyncio.create_task(relay(online, store, 0.2, stop))
            due = await reader.wait_for(lambda e: e.id == queued_id)
            stop.set()
            await task
    finally:
        await online.stop()
    assert due.data.callback_id == item["_id"]
    case = await store.get(event.data.case_id)
    assert case is not None and case["outbox"] == []
    assert await publish_outbox(online, store, case)
