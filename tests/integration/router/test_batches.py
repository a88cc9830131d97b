"""The router's batch path against the real database: a batch of feedback ends exactly
as if each had been routed one by one, in a handful of round trips."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from services.router.domain import case_id_for
from services.router.handlers import make_batch_handlers
from shared.contracts import (
    CaseRouted,
    Customer,
    CustomerTier,
    FeedbackClassified,
    Urgency,
)
from shared.db import Document
from shared.envelope import Event, new_event
from tests.integration.router.test_flows import (
    NOW,
    Harness,
    harness_for,
    small_policy,
)
from tests.support import a_classification, a_customer, a_feedback


@pytest.fixture
async def desk(mongo_client: AsyncMongoClient[Document], database_name: str) -> Harness:
    return await harness_for(mongo_client, database_name, small_policy())


class CommandLog(monitoring.CommandListener):
    """Every command the client sends, by name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def as_events(batch: list[FeedbackClassified]) -> list[Event[Any]]:
    return [
        new_event(data, source="/test", cause=data.feedback.feedback_id, time=NOW) for data in batch
    ]


async def route_batch(h: Harness, batch: list[FeedbackClassified]) -> list[Event[Any]]:
    handler = make_batch_handlers(h.router)[FeedbackClassified.event_name]
    return list(await handler(as_events(batch)))


async def route_one_by_one(h: Harness, batch: list[FeedbackClassified]) -> list[Event[Any]]:
    out: list[Event[Any]] = []
    for event in as_events(batch):
        out += await h.handlers[FeedbackClassified.event_name](event)
    return out


def by_id(events: list[Event[Any]]) -> dict[str, CaseRouted]:
    return {event.id: event.data for event in events}


def a_mixed_batch() -> list[FeedbackClassified]:
    """New customers, a customer writing twice about one cause and once about another,
    a VIP, and more cases than the desk has places (some wait in the queue)."""
    twice = a_customer()
    vip = Customer(id=f"VIP-{uuid.uuid4().hex[:6]}", tier=CustomerTier.VIP)
    batch = [
        FeedbackClassified(
            feedback=a_feedback(f"complaint {i}"),
            classification=a_classification("delivery", Urgency.MEDIUM),
        )
        for i in range(6)
    ]
    batch.insert(
        1,
        FeedbackClassified(
            feedback=a_feedback("parcel late", customer=twice),
            classification=a_classification("delivery", Urgency.MEDIUM),
        ),
    )
    batch.insert(
        3,
        FeedbackClassified(
            feedback=a_feedback("still no parcel!", customer=twice),
            classification=a_classification("delivery", Urgency.HIGH),
        ),
    )
    batch.insert(
        4,
        FeedbackClassified(
            feedback=a_feedback("and I was charged twice", customer=twice),
            classification=a_classification("billing", Urgency.MEDIUM),
        ),
    )
    batch.append(
        FeedbackClassified(
            feedback=a_feedback("wrong item", customer=vip),
            classification=a_classification("product_quality", Urgency.HIGH),
        )
    )
    return batch


async def test_a_batch_ends_exactly_as_routing_each_feedback_one_by_one(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = small_policy(desk=3, capacity=2)
    one = await harness_for(mongo_client, database_name, policy)
    many = await harness_for(mongo_client, f"{database_name}_b", policy)
    batch = a_mixed_batch()
    expected = by_id(await route_one_by_one(one, batch))
    got = by_id(await route_batch(many, batch))
    assert got == expected
    assert len(got) == len(batch)
    assert sum(1 for routed in got.values() if routed.linked_to) == 1
    assert sum(1 for routed in got.values() if routed.routing.queued) == len(batch) - 1 - 6
    assert await many.loads() == await one.loads()
    for store in (one.store, many.store):
        async for agent in store.agents.find():
            assert agent["load"] == len(agent["open_cases"]) <= agent["capacity"]


async def test_a_redelivered_batch_emits_the_same_events_and_takes_no_second_place(
    desk: Harness,
) -> None:
    batch = a_mixed_batch()
    first = by_id(await route_batch(desk, batch))
    loads = await desk.loads()
    desk.clock.advance(minutes=5)
    again = by_id(await route_batch(desk, batch))
    assert again == first
    assert await desk.loads() == loads
    assert await desk.store.cases.count_documents({}) == len(batch) - 1


async def test_a_place_taken_by_an_interrupted_attempt_is_kept_not_taken_twice(
    desk: Harness,
) -> None:
    batch = [FeedbackClassified(feedback=a_feedback(), classification=a_classification())]
    batch.append(FeedbackClassified(feedback=a_feedback(), classification=a_classification()))
    interrupted = await desk.router.store.take_at_load(
        case_id_for(batch[1].feedback.feedback_id), "desk-01", 0
    )
    assert interrupted is not None
    routed = by_id(await route_batch(desk, batch))
    agents = {r.feedback.feedback_id: r.routing.agent for r in routed.values()}
    assert agents[batch[1].feedback.feedback_id] == "desk-01"
    assert await desk.loads() == {"desk-00": 1, "desk-01": 1, "expert-lead": 0, "expert-2": 0}


async def test_twenty_new_cases_cost_four_round_trips_and_the_next_batch_three(
    infra: Any, database_name: str
) -> None:
    commands = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    try:
        h = await harness_for(client, database_name, small_policy(desk=10, capacity=3))
        batch = [
            FeedbackClassified(feedback=a_feedback(), classification=a_classification())
            for _ in range(20)
        ]
        commands.names.clear()
        routed = await route_batch(h, batch)
        assert len(routed) == 20
        assert commands.names == ["find", "find", "update", "insert"]
        # The next batch assigns from the agents as this router left them.
        more = [
            FeedbackClassified(feedback=a_feedback(), classification=a_classification())
            for _ in range(5)
        ]
        commands.names.clear()
        assert len(await route_batch(h, more)) == 5
        assert commands.names == ["find", "update", "insert"]
    finally:
        await client.close()


async def test_two_routers_racing_on_overlapping_batches_hold_each_case_once(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = small_policy(desk=4, capacity=8)
    copies = [await harness_for(mongo_client, database_name, policy) for _ in range(2)]
    batch = [
        FeedbackClassified(feedback=a_feedback(), classification=a_classification())
        for _ in range(24)
    ]
    outs = await asyncio.gather(
        route_batch(copies[0], batch[:16]), route_batch(copies[1], batch[8:])
    )
    first, second = by_id(outs[0]), by_id(outs[1])
    for event_id in first.keys() & second.keys():
        assert first[event_id] == second[event_id]
    assert len(first | second) == 24
    holders: dict[str, list[str]] = {}
    async for agent in copies[0].store.agents.find():
        assert agent["load"] == len(agent["open_cases"]) <= agent["capacity"]
        for case_id in agent["open_cases"]:
            holders.setdefault(case_id, []).append(agent["_id"])
    assert len(holders) == 24 and all(len(h) == 1 for h in holders.values())
    routed_agents = {r.case_id: r.routing.agent for r in (first | second).values()}
    assert routed_agents == {case_id: h[0] for case_id, h in holders.items()}


async def test_feedback_a_day_later_in_another_batch_links_to_the_open_case(
    desk: Harness,
) -> None:
    customer = a_customer()
    first = await route_batch(
        desk,
        [
            FeedbackClassified(
                feedback=a_feedback(customer=customer), classification=a_classification()
            ),
            FeedbackClassified(feedback=a_feedback(), classification=a_classification()),
        ],
    )
    case_id = next(e.data.case_id for e in first if e.data.feedback.customer == customer)
    later = a_feedback("any news?", customer=customer, at=NOW + timedelta(days=1))
    out = await route_batch(
        desk,
        [
            FeedbackClassified(feedback=later, classification=a_classification()),
            FeedbackClassified(feedback=a_feedback(), classification=a_classification()),
        ],
    )
    linked = next(e.data for e in out if e.data.feedback == later)
    assert linked.linked_to == case_id


async def test_a_snapshot_another_router_made_stale_neither_overfills_nor_loses_a_case(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = small_policy(desk=2, capacity=3)
    first, second = [await harness_for(mongo_client, database_name, policy) for _ in range(2)]

    def a_batch(n: int) -> list[FeedbackClassified]:
        return [
            FeedbackClassified(feedback=a_feedback(), classification=a_classification())
            for _ in range(n)
        ]

    await route_batch(first, a_batch(2))  # the first router now holds a snapshot
    await route_batch(second, a_batch(3))  # the second fills the desk behind its back
    late = by_id(await route_batch(first, a_batch(3)))
    assert len(late) == 3
    async for agent in first.store.agents.find({"team": "desk"}):
        assert agent["load"] == len(agent["open_cases"]) <= agent["capacity"]
    assert sum(1 for routed in late.values() if routed.routing.queued) == 2
    assert await first.store.cases.count_documents({}) == 8
