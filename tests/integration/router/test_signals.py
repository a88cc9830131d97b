"""Customers at risk, against the real database: the standing customer.signals leave
(once per crossing, the latest crossing winning, whatever the order and however many
copies), and the routing of the customer's next new case in the single and the batch
path, with the database reads it costs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import DuplicateKeyError

from services.router.domain import Standing, standing_from_signal
from services.router.handlers import make_batch_handlers, make_signal_handlers
from services.router.policy import RoutingPolicy
from services.router.store import RouterStore
from shared.contracts import (
    CaseRouted,
    CustomerAtRisk,
    CustomerRecovered,
    CustomerSignal,
    CustomerTier,
    FeedbackClassified,
    Priority,
    ScoreReason,
    Urgency,
)
from shared.db import Document
from shared.envelope import Event, new_event
from tests.conftest import Infra
from tests.integration.router.test_flows import NOW, Harness, harness_for, small_policy
from tests.support import a_classification, a_customer, a_feedback

INSIGHTS = "/closeloop/insights"


def with_retention(policy: RoutingPolicy) -> RoutingPolicy:
    """``policy`` with a retention team that takes at-risk customers' new cases first, one
    priority higher."""
    data = policy.model_dump(mode="json")
    data["teams"].append(
        {
            "id": "retention",
            "name": "Customer retention",
            "calendar": next(iter(data["calendars"])),
            "agents": [
                {"id": f"keeper-{i}", "languages": ["en", "zh"], "capacity": 5} for i in (1, 2)
            ],
        }
    )
    data["rules"].insert(
        0,
        {
            "name": "at-risk-to-retention",
            "when": {"at_risk": True},
            "team": "retention",
            "raise_priority": 1,
        },
    )
    return RoutingPolicy.model_validate(data)


def a_signal(
    customer_key: str, crossing: int, *, at_risk: bool | None = None
) -> Event[CustomerSignal]:
    """The ``crossing``-th crossing of the customer, as insights publishes it: odd ones
    into risk, even ones out of it, unless ``at_risk`` says otherwise."""
    at_risk = crossing % 2 == 1 if at_risk is None else at_risk
    model: type[CustomerSignal] = CustomerAtRisk if at_risk else CustomerRecovered
    data = model(
        customer_key=customer_key,
        customer_tier=CustomerTier.STANDARD,
        score=30.0 if at_risk else 70.0,
        threshold=40.0 if at_risk else 60.0,
        crossing=crossing,
        reasons=[
            ScoreReason(part="complaints", points=-20.0, reason="-20.0: 3 delivery complaints"),
            ScoreReason(part="reopens", points=-8.5, reason="-8.5: 1 case reopened"),
        ],
        occurred_at=NOW + timedelta(hours=crossing),
    )
    cause = f"customer.signals/{customer_key}/{crossing}"
    return new_event(data, source=INSIGHTS, cause=cause, time=data.occurred_at)


def standing(event: Event[CustomerSignal]) -> Standing:
    return standing_from_signal(event.data, event.id)


def signals_seen(event: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "closeloop_router_customer_signals_total", {"event": event, "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
async def store(mongo_client: AsyncMongoClient[Document], database_name: str) -> RouterStore:
    store = RouterStore(mongo_client[database_name])
    await store.ensure_indexes()
    return store


@pytest.fixture
async def retention(mongo_client: AsyncMongoClient[Document], database_name: str) -> Harness:
    return await harness_for(mongo_client, database_name, with_retention(small_policy()))


async def tell(h: Harness, *signals: Event[CustomerSignal]) -> None:
    handlers = make_signal_handlers(h.router)
    for signal in signals:
        assert await handlers[signal.name](signal) == []


# --- the standing --------------------------------------------------------------------


async def test_a_redelivered_signal_changes_nothing(store: RouterStore) -> None:
    signal = a_signal("c-again", 1)
    assert await store.apply_standing(standing(signal))
    before = await store.customers.find_one({"_id": "c-again"})
    assert not await store.apply_standing(standing(signal))
    assert not await store.apply_standing(standing(signal))
    assert await store.customers.find_one({"_id": "c-again"}) == before
    stored = await store.standing_of("c-again")
    assert stored == standing(signal)
    assert await store.customer_at_risk("c-again")


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 2, 1), (2, 3, 1), (1, 3, 2)])
async def test_the_latest_crossing_wins_whatever_order_the_signals_arrive_in(
    store: RouterStore, order: tuple[int, ...]
) -> None:
    key = f"c-{uuid.uuid4().hex[:8]}"
    applied = [await store.apply_standing(standing(a_signal(key, n))) for n in order]
    # A signal applies only over an earlier crossing than any applied before it.
    assert applied == [n > max(order[:i], default=0) for i, n in enumerate(order)]
    assert await store.standing_of(key) == standing(a_signal(key, 3))
    assert await store.customer_at_risk(key)  # the third crossing is into risk


async def test_concurrent_copies_of_signals_leave_the_latest_once(store: RouterStore) -> None:
    key = f"c-{uuid.uuid4().hex[:8]}"
    crossings = [1, 2, 3, 4] * 3
    outcomes = await asyncio.gather(
        *(store.apply_standing(standing(a_signal(key, n))) for n in crossings)
    )
    applied = [n for n, ok in zip(crossings, outcomes, strict=True) if ok]
    assert applied.count(4) == 1
    assert all(applied.count(n) <= 1 for n in (1, 2, 3))
    latest = await store.standing_of(key)
    assert latest == standing(a_signal(key, 4))
    assert not await store.customer_at_risk(key)


class RacedCustomers:
    """router_customers, where another router copy stores a standing of the customer
    between this store's first upsert matching nothing and its insert."""

    def __init__(self, store: RouterStore, competitor: Standing) -> None:
        self.real = store.customers
        self.other_copy = RouterStore(store.customers.database)
        self.competitor = competitor
        self.raced = False

    async def update_one(self, query: Any, update: Any, upsert: bool = False) -> Any:
        if upsert and not self.raced:
            self.raced = True
            assert await self.other_copy.apply_standing(self.competitor)
            raise DuplicateKeyError("E11000 duplicate key error collection: router_customers")
        return await self.real.update_one(query, update, upsert=upsert)


@pytest.mark.parametrize(("mine", "theirs", "applies"), [(2, 1, True), (1, 2, False)])
async def test_losing_the_insert_race_applies_only_over_an_earlier_crossing(
    store: RouterStore, monkeypatch: pytest.MonkeyPatch, mine: int, theirs: int, applies: bool
) -> None:
    key = f"c-{uuid.uuid4().hex[:8]}"
    raced = RacedCustomers(store, standing(a_signal(key, theirs)))
    monkeypatch.setattr(store, "customers", raced)
    assert await store.apply_standing(standing(a_signal(key, mine))) is applies
    monkeypatch.undo()
    assert raced.raced
    assert await store.standing_of(key) == standing(a_signal(key, max(mine, theirs)))


async def test_customers_at_risk_are_read_for_many_customers_at_once(store: RouterStore) -> None:
    keys = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    await store.apply_standing(standing(a_signal(keys[0], 1)))
    await store.apply_standing(standing(a_signal(keys[1], 2)))  # recovered
    await store.apply_standing(standing(a_signal(keys[2], 3)))
    assert await store.customers_at_risk([*keys, keys[0]]) == {keys[0], keys[2]}
    assert await store.customers_at_risk([]) == set()


async def test_the_signal_handler_counts_applied_and_stale_signals(retention: Harness) -> None:
    key = f"c-{uuid.uuid4().hex[:8]}"
    into, out = a_signal(key, 1), a_signal(key, 2)
    before = {
        (e, o): signals_seen(e, o)
        for e in ("customer.at_risk", "customer.recovered")
        for o in ("applied", "stale")
    }
    await tell(retention, into, out, into, out)
    after = {k: signals_seen(*k) - v for k, v in before.items()}
    assert after == {
        ("customer.at_risk", "applied"): 1,
        ("customer.at_risk", "stale"): 1,
        ("customer.recovered", "applied"): 1,
        ("customer.recovered", "stale"): 1,
    }


# --- routing ---------------------------------------------------------------------------


class CommandLog(monitoring.CommandListener):
    """Every command the client sends: its name and collection."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reads_of(self, collection: str) -> int:
        return self.commands.count(("find", collection))


async def test_an_at_risk_customer_new_case_goes_to_retention_one_priority_higher(
    retention: Harness,
) -> None:
    kept, other = a_customer(), a_customer()
    await tell(retention, a_signal(kept.key, 1))
    usual = await retention.route(a_feedback(customer=other), a_classification())
    risky = await retention.route(a_feedback(customer=kept), a_classification())
    assert (usual.routing.team, usual.routing.priority) == ("desk", Priority.P3)
    assert (risky.routing.team, risky.routing.rule, risky.routing.priority) == (
        "retention",
        "at-risk-to-retention",
        Priority.P2,
    )
    assert risky.routing.agent in ("keeper-1", "keeper-2")
    assert "customer at risk (insights' health score)" in risky.routing.reason
    assert "rule at-risk-to-retention raises 1, so P2" in risky.routing.reason
    # Its deadlines are those of P2.
    hours = retention.router.policy.sla_hours[Priority.P2].first_response
    assert risky.routing.first_response_due - risky.routing.routed_at == timedelta(hours=hours)


async def test_a_link_to_the_open_case_is_unchanged_and_reads_no_standing(
    infra: Infra, database_name: str
) -> None:
    commands = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    try:
        h = await harness_for(client, database_name, with_retention(small_policy()))
        customer = a_customer()
        opened = await h.route(a_feedback(customer=customer), a_classification())
        await tell(h, a_signal(customer.key, 1))
        commands.commands.clear()
        linked = await h.route(a_feedback("any news?", customer=customer), a_classification())
        assert linked.linked_to == opened.case_id
        assert (linked.routing.team, linked.routing.priority) == ("desk", Priority.P3)
        assert commands.reads_of("router_customers") == 0
        commands.commands.clear()
        other_cause = a_classification("billing")
        new = await h.route(a_feedback("and a wrong bill", customer=customer), other_cause)
        assert (new.routing.team, new.linked_to) == ("retention", None)
        assert commands.reads_of("router_customers") == 1
    finally:
        await client.close()


async def route_batch(h: Harness, batch: list[FeedbackClassified]) -> dict[str, CaseRouted]:
    handler = make_batch_handlers(h.router)[FeedbackClassified.event_name]
    events = [
        new_event(data, source="/test", cause=data.feedback.feedback_id, time=NOW) for data in batch
    ]
    return {e.data.feedback.feedback_id: e.data for e in await handler(events)}


async def test_a_batch_reads_the_standing_of_its_customers_once(
    infra: Infra, database_name: str
) -> None:
    commands = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        infra.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    try:
        policy = with_retention(small_policy(desk=4, capacity=5))
        h = await harness_for(client, database_name, policy)
        customers = [a_customer() for _ in range(8)]
        at_risk = {customers[1].key, customers[4].key, customers[6].key}
        await tell(h, *(a_signal(key, 1) for key in sorted(at_risk)))
        await tell(h, a_signal(customers[6].key, 2))  # recovered since
        batch = [
            FeedbackClassified(
                feedback=a_feedback(customer=customer), classification=a_classification()
            )
            for customer in customers
        ]
        commands.commands.clear()
        routed = await route_batch(h, batch)
        assert commands.commands == [
            ("find", "router_routings"),
            ("find", "router_customers"),
            ("find", "router_agents"),
            ("update", "router_agents"),
            ("insert", "router_routings"),
        ]
        kept = {customers[1].key, customers[4].key}
        for data in batch:
            routing = routed[data.feedback.feedback_id].routing
            expected = (
                ("retention", Priority.P2)
                if data.feedback.customer_key in kept
                else (
                    "desk",
                    Priority.P3,
                )
            )
            assert (routing.team, routing.priority) == expected
        # Feedback that only links reads no standing.
        again = [
            FeedbackClassified(
                feedback=a_feedback("any news?", customer=customer),
                classification=a_classification(),
            )
            for customer in customers[:3]
        ]
        commands.commands.clear()
        links = await route_batch(h, again)
        assert all(r.linked_to for r in links.values())
        assert commands.reads_of("router_customers") == 0
    finally:
        await client.close()


async def test_a_batch_ends_as_routing_each_at_risk_feedback_one_by_one(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = with_retention(small_policy(desk=3, capacity=4))
    one, many = [
        await harness_for(mongo_client, f"{database_name}_{n}", policy) for n in ("one", "many")
    ]
    customers = [a_customer() for _ in range(6)]
    signals = [a_signal(customers[i].key, 1) for i in (0, 3, 5)]
    batch = [
        FeedbackClassified(
            feedback=a_feedback(customer=c), classification=a_classification(urgency=u)
        )
        for c, u in zip(customers, [Urgency.LOW, Urgency.HIGH, Urgency.MEDIUM] * 2, strict=True)
    ]
    for h in (one, many):
        await tell(h, *signals)
    singles = {}
    for data in batch:
        routed = await one.route(
            data.feedback, data.classification, cause=data.feedback.feedback_id
        )
        singles[data.feedback.feedback_id] = routed.routing
    batched = await route_batch(many, batch)
    assert {k: (r.team, r.priority, r.rule, r.reason) for k, r in singles.items()} == {
        k: (r.routing.team, r.routing.priority, r.routing.rule, r.routing.reason)
        for k, r in batched.items()
    }
    assert [singles[d.feedback.feedback_id].team for d in batch] == [
        "retention",
        "desk",
        "desk",
        "retention",
        "desk",
        "retention",
    ]
