"""The router's handlers against the real database: assignment, fairness, queues,
re-routes, links and idempotency. Events are handed to the handlers directly; what they
publish on their own (queue assignments) is recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from services.router.domain import deadlines
from services.router.flows import CaseRouter
from services.router.handlers import make_handlers
from services.router.opening import opened_elsewhere
from services.router.policy import RoutingPolicy, load_policy
from services.router.store import RouterStore
from shared.contracts import (
    CaseClosed,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    Channel,
    Classification,
    Customer,
    CustomerTier,
    EventData,
    Feedback,
    FeedbackClassified,
    Priority,
    SlaBreached,
    SlaKind,
    Urgency,
)
from shared.db import Document
from shared.envelope import Event, new_event
from shared.errors import BrokerUnavailable
from shared.kafka import Handler
from tests.support import a_classification, a_customer, a_feedback

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALWAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def small_policy(
    desk: int = 2, capacity: int = 2, experts_capacity: int = 2, window_days: float = 7
) -> RoutingPolicy:
    """A front desk that escalates to experts, where the lead takes re-routes first."""
    matrix = {
        "critical": {"standard": "P1", "premium": "P1", "vip": "P1"},
        "high": {"standard": "P2", "premium": "P2", "vip": "P1"},
        "medium": {"standard": "P3", "premium": "P3", "vip": "P2"},
        "low": {"standard": "P4", "premium": "P4", "vip": "P3"},
    }
    return RoutingPolicy.model_validate(
        {
            "priority": {"matrix": matrix},
            "sla_hours": {
                "P1": {"first_response": 1, "resolution": 8},
                "P2": {"first_response": 4, "resolution": 24},
                "P3": {"first_response": 8, "resolution": 72},
                "P4": {"first_response": 24, "resolution": 120},
            },
            "calendars": {"always": {"time_zone": "UTC", "hours": ALWAYS}},
            "teams": [
                {
                    "id": "desk",
                    "name": "Front desk",
                    "calendar": "always",
                    "escalation_team": "experts",
                    "escalation_lead": "expert-lead",
                    "agents": [
                        {"id": f"desk-{i:02d}", "languages": ["en", "zh"], "capacity": capacity}
                        for i in range(desk)
                    ],
                },
                {
                    "id": "experts",
                    "name": "Experts",
                    "calendar": "always",
                    "escalation_lead": "expert-lead",
                    "agents": [
                        {"id": "expert-lead", "languages": ["en"], "capacity": experts_capacity},
                        {"id": "expert-2", "languages": ["en"], "capacity": experts_capacity},
                    ],
                },
            ],
            "rules": [{"name": "everything-to-desk", "when": {}, "team": "desk"}],
            "linking": {"window_days": window_days},
        }
    )


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Recorder:
    """Stands in for the producer: records what the router publishes by itself."""

    events: list[Event[Any]] = field(default_factory=list)
    fail_next: int = 0

    async def __call__(self, events: Sequence[Event[Any]]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise BrokerUnavailable("broker down for this test")
        self.events.extend(events)


@dataclass
class Harness:
    store: RouterStore
    router: CaseRouter
    handlers: dict[str, Handler]
    published: Recorder
    clock: Clock

    async def handle(self, data: EventData, cause: str | None = None) -> list[Event[Any]]:
        event = new_event(data, source="/test", cause=cause or uuid.uuid4().hex, time=NOW)
        return list(await self.handlers[data.event_name](event))

    async def route(
        self,
        feedback: Feedback | None = None,
        classification: Classification | None = None,
        cause: str | None = None,
    ) -> CaseRouted:
        data = FeedbackClassified(
            feedback=feedback or a_feedback(), classification=classification or a_classification()
        )
        out = await self.handle(data, cause)
        assert len(out) == 1
        routed: CaseRouted = out[0].data
        return routed

    async def agent(self, agent_id: str) -> dict[str, Any]:
        doc = await self.store.agents.find_one({"_id": agent_id})
        assert doc is not None
        return doc

    async def loads(self) -> dict[str, int]:
        return {str(d["_id"]): int(d["load"]) async for d in self.store.agents.find()}


async def harness_for(
    client: AsyncMongoClient[Document], database: str, policy: RoutingPolicy
) -> Harness:
    clock, recorder = Clock(), Recorder()
    store = RouterStore(client[database])
    await store.ensure_indexes()
    await store.sync_agents(policy)
    router = CaseRouter(store, policy, recorder, clock)
    return Harness(store, router, make_handlers(router), recorder, clock)


@pytest.fixture
async def desk(mongo_client: AsyncMongoClient[Document], database_name: str) -> Harness:
    return await harness_for(mongo_client, database_name, small_policy())


def resolved(case_id: str) -> CaseResolved:
    return CaseResolved(
        case_id=case_id,
        customer_key="c-1",
        occurred_at=NOW,
        resolved_by="desk-00",
        solution="done",
        within_sla=True,
    )


def closed(case_id: str) -> CaseClosed:
    return CaseClosed(
        case_id=case_id,
        customer_key="c-1",
        occurred_at=NOW,
        outcome="satisfied",
        feedback_id="f-1",
        channel=Channel.WEB,
        customer_tier=CustomerTier.STANDARD,
        root_cause="delivery",
        urgency=Urgency.MEDIUM,
        priority=Priority.P3,
        team="desk",
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


def reopened(case_id: str, round_: int = 1) -> CaseReopened:
    return CaseReopened(
        case_id=case_id,
        customer_key="c-1",
        occurred_at=NOW,
        reason="customer not satisfied",
        reopen_count=round_,
    )


def escalated(case_id: str, round_: int | None) -> CaseEscalated:
    return CaseEscalated(
        case_id=case_id,
        customer_key="c-1",
        occurred_at=NOW,
        reason="customer asked for a manager",
        reopen_count=round_,
    )


def breached(case_id: str, sla: SlaKind, due_at: datetime) -> SlaBreached:
    return SlaBreached(case_id=case_id, customer_key="c-1", occurred_at=NOW, sla=sla, due_at=due_at)


# --- assignment -----------------------------------------------------------------------


async def test_a_new_case_goes_to_a_matching_agent_with_its_rule_reason_and_business_deadlines(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = load_policy()
    h = await harness_for(mongo_client, database_name, policy)
    h.clock.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
    feedback = a_feedback(language="zh")
    routed = await h.route(feedback, a_classification("staff_attitude", Urgency.HIGH))
    routing = routed.routing
    assert (routing.team, routing.rule, routing.priority) == ("service", "service", Priority.P2)
    assert routing.agent == "agent-chen-jie"  # the only Chinese speaker handling attitude
    assert not routing.queued and routing.reroute_count == 0
    assert "rule service sends it to service" in routing.reason
    assert "agent agent-chen-jie: least loaded available service agent" in routing.reason
    first, last = deadlines(policy, "service", Priority.P2, h.clock.now)
    assert (routing.first_response_due, routing.resolution_due) == (first, last)
    assert routing.first_response_due == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 15:00 local
    assert (await h.agent("agent-chen-jie"))["open_cases"] == [routed.case_id]


async def test_a_redelivered_feedback_emits_the_same_event_and_takes_no_second_agent(
    desk: Harness,
) -> None:
    data = FeedbackClassified(feedback=a_feedback(), classification=a_classification())
    first = await desk.handle(data, cause="c-1")
    desk.clock.advance(minutes=5)
    again = await desk.handle(data, cause="c-1")
    from_another_copy = await desk.handle(data, cause="c-2")
    assert [e.id for e in first] == [e.id for e in again] == [e.id for e in from_another_copy]
    assert first[0].data == again[0].data
    assert sum((await desk.loads()).values()) == 1
    assert await desk.store.cases.count_documents({}) == 1


async def test_two_routers_racing_on_one_feedback_leave_one_agent_holding_it(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    policy = small_policy(desk=4, capacity=6)
    copies = [await harness_for(mongo_client, database_name, policy) for _ in range(2)]
    feedbacks = [a_feedback() for _ in range(20)]
    for feedback in feedbacks:
        data = FeedbackClassified(feedback=feedback, classification=a_classification())
        outs = await asyncio.gather(*(c.handle(data, cause=feedback.feedback_id) for c in copies))
        assert outs[0][0].id == outs[1][0].id
        assert outs[0][0].data == outs[1][0].data
    holders: dict[str, list[str]] = {}
    async for agent in copies[0].store.agents.find():
        assert agent["load"] == len(agent["open_cases"]) <= agent["capacity"]
        for case_id in agent["open_cases"]:
            holders.setdefault(case_id, []).append(agent["_id"])
    assert len(holders) == 20 and all(len(h) == 1 for h in holders.values())


async def test_a_place_given_back_after_losing_a_race_serves_the_queue(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    """Two copies handled the same feedback (a redelivery while partitions moved): the
    copy whose insert lost gives back the place it took. A case queued while that place
    was held takes it at once instead of waiting for the next queue sweep."""
    policy = small_policy(desk=2, capacity=1)
    first, second = [await harness_for(mongo_client, database_name, policy) for _ in range(2)]
    opened = await first.route()
    other = "desk-01" if opened.routing.agent == "desk-00" else "desk-00"
    # The second copy's take of the same case, on the other agent: both places held.
    await second.store.agents.update_one(
        {"_id": other}, {"$push": {"open_cases": opened.case_id}, "$inc": {"load": 1}}
    )
    waiting = await first.route()
    assert waiting.routing.queued

    stored = await second.store.get_case(opened.case_id)
    assert stored is not None
    taken = await second.store.get_agent(other)
    assert taken is not None and taken.open_cases == (opened.case_id,)
    [again] = await opened_elsewhere(second.router, opened.case_id, taken)
    assert again.data.case_id == opened.case_id  # the first copy's event, said again
    [assigned] = second.published.events
    assert (assigned.data.case_id, assigned.data.routing.agent) == (waiting.case_id, other)
    assert (await second.agent(other))["open_cases"] == [waiting.case_id]


async def test_200_cases_over_10_equal_agents_end_within_one_case_of_each_other(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    h = await harness_for(mongo_client, database_name, small_policy(desk=10, capacity=50))
    for _ in range(100):  # one at a time
        await h.route()
    await asyncio.gather(*(h.route() for _ in range(100)))  # and all at once
    desk_loads = [load for agent, load in (await h.loads()).items() if agent.startswith("desk")]
    assert sum(desk_loads) == 200
    assert max(desk_loads) - min(desk_loads) <= 1


# --- queues ---------------------------------------------------------------------------


async def test_a_case_waits_in_the_queue_until_a_resolution_frees_an_agent(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    h = await harness_for(mongo_client, database_name, small_policy(desk=1, capacity=1))
    first = await h.route()
    waiting = await h.route()
    assert waiting.routing.queued and waiting.routing.agent is None
    assert "waiting in the team queue" in waiting.routing.reason
    h.clock.advance(minutes=30)
    await h.handle(resolved(first.case_id))
    [assigned] = h.published.events
    routing = assigned.data.routing
    assert assigned.data.case_id == waiting.case_id
    assert (routing.agent, routing.queued, routing.reroute_count) == ("desk-00", False, 0)
    assert routing.first_response_due == waiting.routing.first_response_due
    assert "assigned from the queue after 30 min" in routing.reason
    assert (await h.agent("desk-00"))["open_cases"] == [waiting.case_id]
    # The outbox was settled once published: the relay has nothing to send again.
    assert await h.router.relay_outbox(h.clock.now + timedelta(days=1)) == 0


async def test_the_queue_serves_the_highest_priority_first_then_the_oldest(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    h = await harness_for(mongo_client, database_name, small_policy(desk=1, capacity=1))
    holder = await h.route()
    queued = []
    for urgency in (Urgency.LOW, Urgency.HIGH, Urgency.LOW, Urgency.HIGH):
        h.clock.advance(minutes=1)
        queued.append(await h.route(classification=a_classification(urgency=urgency)))
    expected = [queued[1], queued[3], queued[0], queued[2]]
    previous = holder
    for routed in expected:
        await h.handle(closed(previous.case_id))
        assert h.published.events[-1].data.case_id == routed.case_id
        previous = routed
    assert len(h.published.events) == 4


async def test_an_agent_coming_online_takes_waiting_cases_and_going_offline_takes_none(
    desk: Harness,
) -> None:
    for agent in ("desk-00", "desk-01"):
        await desk.router.set_availability(agent, False)
    waiting = []
    for _ in range(3):
        desk.clock.advance(minutes=1)
        waiting.append(await desk.route())
    assert all(r.routing.queued for r in waiting)
    online = await desk.router.set_availability("desk-01", True)
    assert online is not None and online.load == 2  # its capacity
    assert [e.data.case_id for e in desk.published.events] == [r.case_id for r in waiting[:2]]
    assert await desk.store.queue_depth("desk") == 1


async def test_assignments_the_broker_did_not_take_are_relayed_later(desk: Harness) -> None:
    for agent in ("desk-00", "desk-01"):
        await desk.router.set_availability(agent, False)
    waiting = await desk.route()
    desk.published.fail_next = 1
    await desk.router.set_availability("desk-00", True)
    assert desk.published.events == []
    assert await desk.router.relay_outbox(desk.clock.now + timedelta(seconds=5)) == 1
    [relayed] = desk.published.events
    assert relayed.data.case_id == waiting.case_id and relayed.data.routing.agent == "desk-00"
    assert await desk.router.relay_outbox(desk.clock.now + timedelta(seconds=5)) == 0


# --- lifecycle and re-routes ----------------------------------------------------------


async def test_closing_a_case_frees_its_agent_once(desk: Harness) -> None:
    routed = await desk.route()
    agent = routed.routing.agent
    assert agent is not None
    event = closed(routed.case_id)
    await desk.handle(event, cause="close-1")
    await desk.handle(event, cause="close-1")
    assert (await desk.agent(agent))["load"] == 0
    case = await desk.store.get_case(routed.case_id)
    assert case is not None and case.status == "closed"


async def test_a_reopen_and_its_escalation_route_the_case_again_once(desk: Harness) -> None:
    routed = await desk.route(classification=a_classification(urgency=Urgency.MEDIUM))
    await desk.handle(resolved(routed.case_id))
    assert (await desk.loads())[str(routed.routing.agent)] == 0
    desk.clock.advance(hours=2)
    first = await desk.handle(reopened(routed.case_id, 1))
    second = await desk.handle(escalated(routed.case_id, 1))
    redelivered = await desk.handle(reopened(routed.case_id, 1))
    assert [e.id for e in first] == [e.id for e in second] == [e.id for e in redelivered]
    again: CaseRouted = first[0].data
    routing = again.routing
    assert again.case_id == routed.case_id and again.feedback == routed.feedback
    assert (routing.reroute_count, routing.reroute_reason) == (1, "reopened")
    assert (routing.priority, routing.team, routing.rule) == (
        Priority.P2,
        "experts",
        "reroute:reopened",
    )
    assert routing.agent == "expert-lead"  # the escalation lead takes re-routes first
    assert routing.first_response_due == desk.clock.now + timedelta(hours=4)
    assert "priority P3 raised to P2" in routing.reason
    loads = await desk.loads()
    assert loads["expert-lead"] == 1 and sum(loads.values()) == 1


async def test_each_standalone_escalation_routes_the_case_again_higher(desk: Harness) -> None:
    routed = await desk.route(classification=a_classification(urgency=Urgency.LOW))
    first = (await desk.handle(escalated(routed.case_id, None)))[0].data.routing
    second = (await desk.handle(escalated(routed.case_id, None)))[0].data.routing
    assert [first.reroute_count, second.reroute_count] == [1, 2]
    assert [first.priority, second.priority] == [Priority.P3, Priority.P2]
    assert (first.team, first.agent) == ("experts", "expert-lead")
    # Experts have no escalation team: the case stays there, with another agent.
    assert (second.team, second.agent) == ("experts", "expert-2")
    loads = await desk.loads()
    assert (loads["expert-lead"], loads["expert-2"], loads["desk-00"] + loads["desk-01"]) == (
        0,
        1,
        0,
    )


async def test_a_breach_routes_again_once_per_deadline_and_stale_breaches_are_ignored(
    desk: Harness,
) -> None:
    routed = await desk.route(classification=a_classification(urgency=Urgency.HIGH))
    due = routed.routing.first_response_due
    desk.clock.now = due + timedelta(seconds=1)
    out = await desk.handle(breached(routed.case_id, "first_response", due))
    again = await desk.handle(breached(routed.case_id, "first_response", due))
    assert [e.id for e in out] == [e.id for e in again]
    routing = out[0].data.routing
    assert (routing.reroute_count, routing.reroute_reason, routing.priority) == (
        1,
        "sla_breached",
        Priority.P1,
    )
    # The resolution deadline of the first routing was replaced: its breach is stale.
    stale = await desk.handle(breached(routed.case_id, "resolution", routed.routing.resolution_due))
    assert stale == []
    current = await desk.handle(breached(routed.case_id, "resolution", routing.resolution_due))
    assert current[0].data.routing.reroute_count == 2


async def test_a_closed_case_is_not_routed_again(desk: Harness) -> None:
    routed = await desk.route()
    await desk.handle(closed(routed.case_id))
    assert await desk.handle(escalated(routed.case_id, None)) == []
    assert await desk.handle(reopened(routed.case_id, 1)) == []
    assert sum((await desk.loads()).values()) == 0


async def test_a_redelivered_resolution_after_a_reopen_keeps_the_new_agent(desk: Harness) -> None:
    routed = await desk.route()
    resolution = resolved(routed.case_id)
    await desk.handle(resolution, cause="resolve-1")
    new_agent = (await desk.handle(reopened(routed.case_id)))[0].data.routing.agent
    await desk.handle(resolution, cause="resolve-1")
    assert (await desk.agent(new_agent))["open_cases"] == [routed.case_id]


async def test_a_re_route_with_nobody_free_queues_the_case_in_the_escalation_team(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    h = await harness_for(mongo_client, database_name, small_policy(experts_capacity=1))
    busy = [await h.route(), await h.route()]
    for routed in busy:
        await h.handle(escalated(routed.case_id, None))
    third = await h.route()
    [waiting] = await h.handle(escalated(third.case_id, None))
    assert waiting.data.routing.queued and waiting.data.routing.team == "experts"
    assert waiting.data.routing.agent is None
    assert third.routing.agent is not None
    assert (await h.agent(third.routing.agent))["load"] == 0
    await h.handle(resolved(busy[0].case_id))
    [assigned] = h.published.events
    assert assigned.data.case_id == third.case_id
    assert assigned.data.routing.reroute_count == 1 and not assigned.data.routing.queued


# --- links ------------------------------------------------------------------------------


async def test_a_repeat_from_the_same_customer_and_cause_is_linked_not_opened_twice(
    desk: Harness,
) -> None:
    customer = a_customer()
    routed = await desk.route(
        a_feedback(customer=customer), a_classification("delivery", Urgency.MEDIUM)
    )
    desk.clock.advance(days=2)
    repeat = a_feedback("Still nothing!", customer=customer, at=NOW + timedelta(days=2))
    links_before = REGISTRY.get_sample_value("closeloop_cases_linked_total") or 0
    linked = await desk.route(repeat, a_classification("delivery", Urgency.HIGH))
    assert REGISTRY.get_sample_value("closeloop_cases_linked_total") == links_before + 1
    assert (linked.case_id, linked.linked_to) == (routed.case_id, routed.case_id)
    assert linked.feedback == repeat
    routing = linked.routing
    assert routing.priority is Priority.P2  # more urgent than the case: one step up
    assert (routing.agent, routing.reroute_count) == (routed.routing.agent, 0)
    assert routing.rule == "link:same-customer-and-cause"
    assert sum((await desk.loads()).values()) == 1
    again = await desk.route(repeat, a_classification("delivery", Urgency.HIGH))
    assert again == linked
    case = await desk.store.get_case(routed.case_id)
    assert case is not None and case.linked_feedback == (repeat.feedback_id,)
    assert case.priority == "P2"


async def test_feedback_naming_its_case_is_linked_even_about_another_cause(desk: Harness) -> None:
    routed = await desk.route(classification=a_classification("delivery"))
    comment = a_feedback("Still broken", related_case_id=routed.case_id)
    linked = await desk.route(comment, a_classification("product_quality", Urgency.LOW))
    assert linked.linked_to == routed.case_id
    assert linked.routing.rule == "link:related-case"
    assert linked.routing.priority == routed.routing.priority


async def test_feedback_opens_a_new_case_once_the_open_one_is_closed_or_too_old(
    mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    h = await harness_for(mongo_client, database_name, small_policy(window_days=7))
    customer = a_customer()
    first = await h.route(a_feedback(customer=customer))
    late = a_feedback(customer=customer, at=NOW + timedelta(days=8))
    assert (await h.route(late)).linked_to is None
    await h.handle(closed(first.case_id))
    await h.handle(closed((await h.route(late)).case_id))
    after_close = a_feedback(customer=customer, related_case_id=first.case_id)
    reopened_case = await h.route(after_close)
    assert reopened_case.linked_to is None and reopened_case.case_id != first.case_id


async def test_a_vip_customer_with_another_cause_gets_a_case_of_its_own(desk: Harness) -> None:
    customer = Customer(id=f"VIP-{uuid.uuid4().hex[:6]}", tier=CustomerTier.VIP)
    first = await desk.route(a_feedback(customer=customer), a_classification("billing"))
    second = await desk.route(a_feedback(customer=customer), a_classification("delivery"))
    assert second.linked_to is None and second.case_id != first.case_id
    assert second.routing.priority is Priority.P2


# --- cases stored by earlier versions -----------------------------------------------------


async def test_a_case_stored_in_the_earlier_form_is_upgraded_relayed_and_changed_again(
    desk: Harness,
) -> None:
    routed = await desk.route()
    doc = await desk.store.cases.find_one({"_id": routed.case_id})
    assert doc is not None and doc["rev"] == 1
    # The earlier form: ``version`` from 0, and an outbox naming a history entry.
    [entry] = doc["history"]
    await desk.store.cases.update_one(
        {"_id": routed.case_id},
        {
            "$set": {"version": 0, "outbox": [{"key": entry["key"], "at": NOW}]},
            "$unset": {"rev": ""},
        },
    )
    assert await desk.store.upgrade_cases() == 1
    assert await desk.store.upgrade_cases() == 0  # once
    upgraded = await desk.store.get_case(routed.case_id)
    assert upgraded is not None and upgraded.rev == 1

    desk.published.events.clear()
    assert await desk.router.relay_outbox(NOW + timedelta(seconds=5)) == 1
    [relayed] = desk.published.events
    assert relayed.id == entry["event_id"] and relayed.data == routed

    await desk.handle(resolved(routed.case_id))
    after = await desk.store.get_case(routed.case_id)
    assert after is not None and after.status == "resolved" and after.rev == 2
