"""Router state against the real database: atomic assignment, idempotent handling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pymongo import AsyncMongoClient

from services.router.config import load_policy
from services.router.handlers import make_handlers
from services.router.store import RouterStore
from shared.contracts import (
    CaseClosed,
    Channel,
    CustomerTier,
    FeedbackClassified,
    Priority,
    RootCause,
    Urgency,
)
from shared.db import Document
from shared.envelope import new_event
from tests.support import a_classification, a_feedback

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = load_policy()


def classified(cause: RootCause = RootCause.DELIVERY) -> FeedbackClassified:
    return FeedbackClassified(feedback=a_feedback(), classification=a_classification(cause))


def closed_event(case_id: str) -> CaseClosed:
    return CaseClosed(
        case_id=case_id,
        customer_key="c-1",
        occurred_at=NOW,
        outcome="satisfied",
        feedback_id="f-1",
        channel=Channel.WEB,
        customer_tier=CustomerTier.STANDARD,
        root_cause=RootCause.DELIVERY,
        urgency=Urgency.MEDIUM,
        priority=Priority.P3,
        team="logistics",
        agent=None,
        opened_at=NOW,
        first_response_at=None,
        resolved_at=None,
        closed_at=NOW,
        time_to_first_response_s=None,
        time_to_resolve_s=None,
        first_response_sla_met=None,
        resolution_sla_met=None,
        callbacks_made=0,
        reopen_count=0,
        csat=4,
        expected=4,
        perceived=4,
        ratio=1.0,
    )


async def store_for(client: AsyncMongoClient[Document], name: str) -> RouterStore:
    store = RouterStore(client[name])
    await store.ensure_indexes()
    await store.sync_agents(POLICY)
    return store


async def test_two_concurrent_assigners_never_exceed_capacity(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    await store.agents.update_many({"team": "logistics"}, {"$set": {"capacity": 3}})
    case_ids = [f"case-{i}" for i in range(10)]

    async def assign(case_id: str) -> bool:
        for agent in ("agent-wang-fang", "agent-emma-jones"):
            if await store.try_assign(agent, case_id):
                return True
        return False

    results = await asyncio.gather(*(assign(c) for c in case_ids))
    assert sum(results) == 6
    async for agent in store.agents.find({"team": "logistics"}):
        assert agent["load"] == len(agent["open_cases"]) == 3


async def test_redelivered_feedback_routes_once_and_emits_the_same_event(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    handler = make_handlers(store, POLICY)["feedback.classified"]
    event = new_event(classified(), source="/test", cause="c-1")
    first = await handler(event)
    second = await handler(event)
    assert [e.id for e in first] == [e.id for e in second]
    assert first[0].data == second[0].data
    routing = first[0].data.routing
    assert routing.team == "logistics" and routing.agent is not None
    holder = await store.agents.find_one({"_id": routing.agent})
    assert holder is not None and holder["open_cases"].count(first[0].data.case_id) == 1
    assert await store.routings.count_documents({}) == 1


async def test_closing_a_case_frees_the_agent_once(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    handlers = make_handlers(store, POLICY)
    routed = (
        await handlers["feedback.classified"](new_event(classified(), source="/t", cause="x"))
    )[0]
    agent = routed.data.routing.agent
    before = (await store.agents.find_one({"_id": agent}))["load"]  # type: ignore[index]
    closed = closed_event(routed.data.case_id)
    event = new_event(closed, source="/t", cause="close")
    await handlers["case.closed"](event)
    await handlers["case.closed"](event)
    after = (await store.agents.find_one({"_id": agent}))["load"]  # type: ignore[index]
    assert after == before - 1


async def test_least_loaded_agent_gets_the_next_case(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = await store_for(mongo_client, database_name)
    handler = make_handlers(store, POLICY)["feedback.classified"]
    agents = []
    for i in range(6):
        out = await handler(new_event(classified(RootCause.BILLING), source="/t", cause=f"b{i}"))
        agents.append(out[0].data.routing.agent)
    assert sorted(agents.count(a) for a in set(agents)) == [3, 3]
