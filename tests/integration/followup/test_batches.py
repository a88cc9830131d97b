"""Followup's batch handler for case.routed against the real database: a batch leaves
the same cases, timed work and events as handling each event one by one, and opens its
new cases in two round trips."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from services.followup.handlers import make_batch_handlers, make_handlers
from services.followup.outreach import load_outreach
from services.followup.policy import load_policy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import CaseRouted, Priority
from shared.db import Document
from shared.envelope import Event, new_event
from tests.conftest import Infra
from tests.support import a_case_routed, a_routing

OUTREACH = load_outreach()


class CommandLog(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def counted(infra: Infra) -> AsyncIterator[tuple[AsyncMongoClient[Document], CommandLog]]:
    commands = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    yield client, commands
    await client.close()


def as_event(routed: CaseRouted) -> Event[CaseRouted]:
    return new_event(routed, source="/test", cause=f"{routed.case_id}:{uuid.uuid4().hex}")


def a_batch() -> list[Event[Any]]:
    """Eight new cases; one of them routed again and then linked to, later in the batch;
    and a redelivery of the first."""
    now = utcnow()
    opened = [a_case_routed(priority, at=now) for priority in list(Priority) * 2]
    rerouted = opened[2].model_copy(
        update={
            "routing": a_routing(
                Priority.P1,
                at=now,
                agent="agent-li-na",
                reroute_count=1,
                reroute_reason="escalated",
            )
        }
    )
    linked = a_case_routed(at=now).model_copy(
        update={"case_id": opened[5].case_id, "linked_to": opened[5].case_id}
    )
    events = [as_event(routed) for routed in opened]
    return [*events[:4], as_event(rerouted), *events[4:], as_event(linked), events[0]]


async def state(store: FollowupStore) -> dict[str, Any]:
    cases = {
        doc["_id"]: (doc["status"], doc.get("generation"), doc.get("agent"), len(doc["callbacks"]))
        async for doc in store.cases.find()
    }
    # A silence check's id says since when the customer heard nothing: the time each
    # case was acknowledged, which differs between the two runs.
    due = sorted(
        [
            (d["case_id"] if d["kind"] == "silence" else d["_id"], d["kind"], d["state"])
            async for d in store.due.find()
        ]
    )
    return {"cases": cases, "due": due}


async def test_a_batch_leaves_what_handling_each_event_one_by_one_leaves(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = load_policy()
    one_store = FollowupStore(mongo_client[database_name])
    many_store = FollowupStore(mongo_client[f"{database_name}_b"])
    for store in (one_store, many_store):
        await store.ensure_indexes()
    batch = a_batch()
    one = make_handlers(one_store, policy, OUTREACH)["case.routed"]
    expected: list[Event[Any]] = []
    for event in batch:
        expected += await one(event)
    handlers = make_handlers(many_store, policy, OUTREACH)
    got = await make_batch_handlers(many_store, policy, OUTREACH, handlers)["case.routed"](batch)
    assert sorted(e.id for e in got) == sorted(e.id for e in expected)
    # Eight cases, each with its callback and its acknowledgement, and the callback of
    # the re-route.
    assert len({e.id for e in got}) == 17
    assert await state(many_store) == await state(one_store)
    case = await many_store.get(batch[0].data.case_id)
    assert case is not None and case.status == "open"


async def test_a_redelivered_batch_changes_nothing_and_says_nothing_new(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = load_policy()
    store = FollowupStore(mongo_client[database_name])
    await store.ensure_indexes()
    handle = make_batch_handlers(store, policy, OUTREACH, make_handlers(store, policy, OUTREACH))[
        "case.routed"
    ]
    batch = a_batch()
    first = await handle(batch)
    before = await state(store)
    again = await handle(batch)
    # What is said again is what was said first (a case routed again since repeats
    # only its current routing's callback).
    assert {e.id for e in again} <= {e.id for e in first}
    assert {e.data.case_id for e in again} == {e.data.case_id for e in first}
    assert await state(store) == before


async def test_ten_new_cases_cost_two_database_round_trips(
    counted: tuple[AsyncMongoClient[Document], CommandLog], database_name: str
) -> None:
    client, commands = counted
    policy = load_policy()
    store = FollowupStore(client[database_name])
    await store.ensure_indexes()
    handle = make_batch_handlers(store, policy, OUTREACH, make_handlers(store, policy, OUTREACH))[
        "case.routed"
    ]
    batch = [as_event(a_case_routed(at=utcnow())) for _ in range(10)]
    commands.names.clear()
    out = await handle(batch)
    assert [e.name for e in out] == ["callback.scheduled", "customer.notify"] * 10
    assert commands.names == ["insert", "update"]
    assert await store.cases.count_documents({}) == 10
