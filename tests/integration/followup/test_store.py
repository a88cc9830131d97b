"""Followup state against the real database and broker: idempotent case creation,
leased due queue, and the outbox that never loses an accepted change's events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from services.followup.flows import Followup
from services.followup.handlers import make_handlers
from services.followup.links import SurveyLinks
from services.followup.outreach import load_outreach
from services.followup.policy import FollowupPolicy, load_policy
from services.followup.scheduled import run_outbox_relay
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore, due_item_of
from shared.clock import utcnow
from shared.contracts import CaseRouted, Priority, Topic
from shared.db import Document
from shared.envelope import Event, new_event
from shared.kafka import EventProducer
from shared.tools import devstack
from shared.tools.devstack import free_port
from tests.conftest import Infra
from tests.support import TopicReader, a_case_routed

OUTREACH = load_outreach()

API_KEY = "test-agent-key-0123456789"
SURVEY_SECRET = "test-survey-secret-0123456789abcdef"


def followup_settings(infra: Infra, database: str, **overrides: Any) -> FollowupSettings:
    """Settings for a followup run against the test broker and database."""
    port = free_port()
    values: dict[str, Any] = {
        "http_port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "kafka_bootstrap": infra.bootstrap,
        "mongo_url": infra.mongo_url,
        "mongo_database": database,
        "kafka_consumer_group": f"followup-test-{uuid.uuid4().hex[:8]}",
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 400,
        "kafka_fetch_max_wait_ms": devstack.LOCAL_FETCH_MAX_WAIT_MS,
        "api_keys": {"test": SecretStr(API_KEY)},
        "survey_secret": SecretStr(SURVEY_SECRET),
        "due_poll_s": 0.1,
        **overrides,
    }
    return FollowupSettings.model_validate(values)


class FakeClock:
    """A clock tests move by hand: timers fire when it says so, never by sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Rig:
    """Followup's flows and handler on the real database and broker, in this process."""

    store: FollowupStore
    followup: Followup
    policy: FollowupPolicy
    producer: EventProducer

    async def route(self, routed: CaseRouted) -> list[Event[Any]]:
        handler = make_handlers(self.store, self.policy, OUTREACH)["case.routed"]
        return list(await handler(new_event(routed, source="/test", cause=uuid.uuid4().hex)))


@asynccontextmanager
async def followup_rig(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Rig]:
    store = FollowupStore(mongo_client[database_name])
    await store.ensure_indexes()
    policy = load_policy()
    producer = EventProducer(followup_settings(infra, database_name), "followup-test")
    assert await producer.connect()
    links = SurveyLinks(SURVEY_SECRET, public_url="http://cx.test")
    try:
        yield Rig(store, Followup(store, producer, policy, links, OUTREACH), policy, producer)
    finally:
        await producer.stop()


@pytest.fixture
async def rig(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Rig]:
    async with followup_rig(infra, mongo_client, database_name) as made:
        yield made


def routed_event(priority: Priority = Priority.P3) -> Event[CaseRouted]:
    routed = a_case_routed(priority, at=utcnow())
    return new_event(routed, source="/test", cause=routed.case_id)


async def test_redelivered_case_routed_opens_one_case_with_one_callback_and_its_timers(
    rig: Rig,
) -> None:
    handler = make_handlers(rig.store, rig.policy, OUTREACH)["case.routed"]
    event = routed_event()
    first = await handler(event)
    second = await handler(event)
    assert [(e.id, e.data) for e in first] == [(e.id, e.data) for e in second]
    assert [e.name for e in first] == ["callback.scheduled", "customer.notify"]
    assert await rig.store.cases.count_documents({}) == 1
    kinds = sorted([d["kind"] async for d in rig.store.due.find({})])
    assert kinds == [
        "callback",
        "silence",
        "sla_breach",
        "sla_breach",
        "sla_warning",
        "sla_warning",
    ]
    case = await rig.store.get(event.data.case_id)
    assert case is not None and case.status == "open"
    (callback,) = case.callbacks.values()
    assert callback.due_at == event.data.routing.routed_at + timedelta(hours=24)


async def test_a_due_item_is_claimed_by_one_copy_and_reclaimed_after_its_lease(rig: Rig) -> None:
    await rig.route(routed_event().data)
    later = utcnow() + timedelta(days=30)
    claims = await asyncio.gather(*(rig.store.claim_due(later, f"copy-{i}", 30) for i in range(6)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 6 and len({w.id for w in winners}) == 6  # one item each
    assert await rig.store.claim_due(later + timedelta(seconds=10), "copy-x", 30) is None
    reclaimed = await rig.store.claim_due(later + timedelta(seconds=31), "copy-y", 30)
    assert reclaimed is not None
    (first_owner,) = [w.owner for w in winners if w.id == reclaimed.id]
    # The copy whose lease ran out can no longer complete it; the new holder can.
    assert not await rig.store.complete_due(reclaimed.id, first_owner)
    assert await rig.store.complete_due(reclaimed.id, "copy-y")


async def test_events_queued_while_the_broker_is_down_are_published_by_the_relay(
    infra: Infra, rig: Rig, database_name: str
) -> None:
    event = routed_event()
    await rig.route(event.data)
    item = await rig.store.due.find_one({"kind": "callback"})
    assert item is not None
    due_item = due_item_of(item)

    settings = followup_settings(infra, database_name)
    offline = EventProducer(settings, "test-offline")  # never connected: every publish fails
    cut_off = Followup(rig.store, offline, rig.policy, rig.followup.links, OUTREACH)
    assert await cut_off.fire(due_item, item["due_at"]) == "done"
    case = await rig.store.get(event.data.case_id)
    assert case is not None and [e.name for e in case.outbox] == ["callback.due"]
    queued_id = case.outbox[0].id

    stop = asyncio.Event()
    async with TopicReader(infra.bootstrap, Topic.CASE_LIFECYCLE) as reader:
        task = asyncio.create_task(
            run_outbox_relay(rig.store, rig.producer.publish, retry_after_s=0.2, stop=stop)
        )
        due = await reader.wait_for(lambda e: e.id == queued_id)
        stop.set()
        await task
    assert due.data.callback_id == item["ref"]
    case = await rig.store.get(event.data.case_id)
    assert case is not None and case.outbox == []
    assert await rig.store.publish(case, rig.producer.publish)
    # Firing the same item again finds the callback already due: nothing more happens.
    assert await rig.followup.fire(due_item, item["due_at"]) == "skipped"
