"""Followup's timed work against the real database and broker, with an injected clock:
the due queue is drained "at" a chosen time, so nothing here sleeps."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from services.followup.flows import SurveyAnswer
from services.followup.scheduled import count_cases, drain_due
from shared.clock import utcnow
from shared.contracts import CaseRouted, Priority, Topic
from shared.db import Document
from shared.envelope import Event, derive_id
from tests.conftest import Infra
from tests.integration.followup.test_store import Rig, followup_rig
from tests.support import TopicReader, a_case_routed, a_routing

OWNER = "timer-test"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def routed_at(t0: datetime, priority: Priority = Priority.P2, **routing: Any) -> CaseRouted:
    """A case routed at ``t0``: first response due after 4 h, resolution after 24 h."""
    base = a_case_routed(priority, at=t0)
    fields = {
        "first_response_due": t0 + timedelta(hours=4),
        "resolution_due": t0 + timedelta(hours=24),
        **routing,
    }
    return base.model_copy(update={"routing": a_routing(priority, at=t0, **fields)})


@pytest.fixture
async def rig(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Rig]:
    async with followup_rig(infra, mongo_client, database_name) as made:
        yield made


@pytest.fixture
async def lifecycle(infra: Infra) -> AsyncIterator[TopicReader]:
    async with TopicReader(infra.bootstrap, Topic.CASE_LIFECYCLE, Topic.FEEDBACK_RECEIVED) as r:
        yield r


async def events_of(reader: TopicReader, case_id: str, count: int) -> list[Event[Any]]:
    """The first ``count`` distinct events about a case, in the order they were sent."""

    def about(event: Event[Any]) -> bool:
        return event.subject == case_id or (
            event.name == "feedback.received" and event.data.feedback.related_case_id == case_id
        )

    seen: dict[str, Event[Any]] = {}
    while len(seen) < count:
        event = await reader.wait_for(lambda e: about(e) and e.id not in seen)
        seen[event.id] = event
    return list(seen.values())


async def drain(rig: Rig, at: datetime) -> int:
    return await drain_due(rig.followup, now=at, owner=OWNER, lease_s=30)


async def test_sla_warning_at_80_percent_then_breach_at_the_deadline(
    rig: Rig, lifecycle: TopicReader
) -> None:
    t0 = utcnow()
    routed = routed_at(t0)
    await rig.route(routed)
    labels = {"team": "logistics", "sla": "first_response", "priority": "P2"}
    warnings = sample("closeloop_sla_warnings_total", **labels)
    breaches = sample("closeloop_sla_breaches_total", **labels)

    assert await drain(rig, t0 + timedelta(hours=3, minutes=11)) == 0
    assert await drain(rig, t0 + timedelta(hours=3, minutes=12)) == 1
    (warning,) = await events_of(lifecycle, routed.case_id, 1)
    assert (warning.name, warning.data.sla) == ("sla.warning", "first_response")
    assert warning.data.due_at == t0 + timedelta(hours=4)
    assert sample("closeloop_sla_warnings_total", **labels) == warnings + 1

    assert await drain(rig, t0 + timedelta(hours=4)) == 2  # the breach and the callback
    events = await events_of(lifecycle, routed.case_id, 3)
    assert {(e.name, getattr(e.data, "sla", None)) for e in events[1:]} == {
        ("sla.breached", "first_response"),
        ("callback.due", None),
    }
    assert sample("closeloop_sla_breaches_total", **labels) == breaches + 1
    case = await rig.store.get(routed.case_id)
    assert case is not None
    assert case.sla.first_response.state == "breached"
    assert case.sla.resolution.state == "running"
    # A response after the breach is recorded but cannot meet the deadline any more.
    case = await rig.followup.respond(
        routed.case_id, by="agent-wang-fang", message=None, client="t", now=t0 + timedelta(hours=5)
    )
    assert case.first_response_at == t0 + timedelta(hours=5)
    assert (await events_of(lifecycle, routed.case_id, 4))[3].data.within_sla is False


async def test_a_deadline_met_in_time_cancels_its_timers(rig: Rig, lifecycle: TopicReader) -> None:
    t0 = utcnow()
    routed = routed_at(t0)
    await rig.route(routed)
    labels = {"team": "logistics", "sla": "first_response", "priority": "P2"}
    met = sample("closeloop_sla_met_total", **labels)
    case = await rig.followup.respond(
        routed.case_id,
        by="agent-wang-fang",
        message="on it",
        client="t",
        now=t0 + timedelta(hours=1),
    )
    assert case.sla.first_response.state == "met"
    (first,) = await events_of(lifecycle, routed.case_id, 1)
    assert (first.name, first.data.within_sla) == ("case.first_response", True)
    assert sample("closeloop_sla_met_total", **labels) == met + 1

    # A second response is only a timeline entry.
    case = await rig.followup.respond(
        routed.case_id, by="agent-wang-fang", message=None, client="t", now=t0 + timedelta(hours=2)
    )
    assert [e.event for e in case.timeline][-1] == "case.response"
    assert len(case.responses) == 2

    assert await drain(rig, t0 + timedelta(hours=4)) == 1  # only the callback is left
    assert (
        await rig.store.due.count_documents(
            {"case_id": routed.case_id, "ref": "first_response", "state": "cancelled"}
        )
        == 2
    )
    events = await events_of(lifecycle, routed.case_id, 2)
    assert events[1].name == "callback.due"
    case = await rig.followup.resolve(
        routed.case_id, by="a", solution="s", promise=None, client="t", now=t0 + timedelta(hours=6)
    )
    assert case.sla.resolution.state == "met"
    assert (
        await rig.store.due.count_documents(
            {"case_id": routed.case_id, "kind": {"$regex": "^sla"}, "state": "pending"}
        )
        == 0
    )


async def test_no_answer_is_called_again_with_backoff_until_the_attempts_run_out(
    rig: Rig, lifecycle: TopicReader
) -> None:
    t0 = utcnow()
    routed = routed_at(
        t0,
        Priority.P1,
        first_response_due=t0 + timedelta(days=9),
        resolution_due=t0 + timedelta(days=10),
    )
    await rig.route(routed)
    no_answer = sample("closeloop_callbacks_total", outcome="no_answer")
    callback_id = derive_id("callback", routed.case_id, "after_routing", "0")
    at = t0 + timedelta(hours=1)  # P1 calls back within the hour
    calls = []
    for attempt in (1, 2, 3):
        assert await drain(rig, at) == 1
        due = (await events_of(lifecycle, routed.case_id, 2 * attempt - 1))[-1]
        assert (due.name, due.data.attempt, due.data.callback_id) == (
            "callback.due",
            attempt,
            callback_id,
        )
        calls.append(at)
        case, done, following = await rig.followup.record_callback_outcome(
            callback_id, outcome="no_answer", by="dialer", note=None, reschedule_at=None, now=at
        )
        assert done.outcome == "no_answer"
        if attempt < 3:
            assert following is not None and following.attempt == attempt + 1
            scheduled = (await events_of(lifecycle, routed.case_id, 2 * attempt))[-1]
            assert scheduled.name == "callback.scheduled"
            assert scheduled.data.due_at == at + timedelta(minutes=30 * 2 ** (attempt - 1))
            callback_id, at = following.callback_id, following.due_at
        else:
            assert following is None
    assert [b - a for a, b in itertools.pairwise(calls)] == [
        timedelta(minutes=30),
        timedelta(minutes=60),
    ]
    assert case.callbacks_made == 3
    assert [e.event for e in case.timeline][-1] == "callback.given_up"
    assert sample("closeloop_callbacks_total", outcome="no_answer") == no_answer + 3
    # Reporting the last outcome again changes nothing.
    again, _, _ = await rig.followup.record_callback_outcome(
        callback_id, outcome="no_answer", by="dialer", note=None, reschedule_at=None, now=at
    )
    assert again.rev == case.rev


async def test_callbacks_past_their_time_without_an_outcome_are_counted_overdue(rig: Rig) -> None:
    t0 = utcnow()
    routed = routed_at(
        t0,
        Priority.P1,
        first_response_due=t0 + timedelta(days=9),
        resolution_due=t0 + timedelta(days=10),
    )
    await rig.route(routed)
    due_at = t0 + timedelta(hours=1)
    grace = timedelta(minutes=rig.policy.callbacks.overdue_after_minutes)
    await count_cases(rig.store, rig.policy, due_at + grace - timedelta(seconds=1))
    assert sample("closeloop_callbacks_overdue") == 0
    await count_cases(rig.store, rig.policy, due_at + grace)
    assert sample("closeloop_callbacks_overdue") == 1
    assert sample("closeloop_cases_open", status="open") == 1
    callback_id = derive_id("callback", routed.case_id, "after_routing", "0")
    await rig.followup.record_callback_outcome(
        callback_id, outcome="reached", by="dialer", note=None, reschedule_at=None, now=due_at
    )
    await count_cases(rig.store, rig.policy, due_at + grace)
    assert sample("closeloop_callbacks_overdue") == 0


async def test_the_survey_is_reminded_once_and_closes_with_no_response_when_it_expires(
    rig: Rig, lifecycle: TopicReader
) -> None:
    t0 = utcnow()
    routed = routed_at(t0)
    await rig.route(routed)
    resolved_at = t0 + timedelta(hours=2)
    await rig.followup.resolve(
        routed.case_id,
        by="agent-wang-fang",
        solution="re-sent the parcel",
        promise="arrives Friday",
        client="t",
        now=resolved_at,
    )
    names = [e.name for e in await events_of(lifecycle, routed.case_id, 4)]
    assert names == [
        "case.first_response",
        "case.resolved",
        "survey.requested",
        "callback.scheduled",
    ]
    request = (await events_of(lifecycle, routed.case_id, 4))[2]
    assert request.data.url.startswith("http://cx.test/survey/")
    assert request.data.expires_at == resolved_at + timedelta(hours=72)

    assert await drain(rig, resolved_at + timedelta(hours=24)) == 2  # reminder, return visit
    events = await events_of(lifecycle, routed.case_id, 6)
    reminder = next(e for e in events[4:] if e.name == "survey.requested")
    assert reminder.data.reminder is True and reminder.data.url == request.data.url
    assert await drain(rig, resolved_at + timedelta(hours=48)) == 0  # one reminder only

    closed_before = sample("closeloop_cases_closed_total", outcome="no_response")
    assert await drain(rig, resolved_at + timedelta(hours=72)) == 1
    closed = (await events_of(lifecycle, routed.case_id, 7))[-1]
    assert closed.name == "case.closed"
    assert closed.data.outcome == "no_response" and closed.data.csat is None
    assert closed.data.first_response_sla_met is True and closed.data.resolution_sla_met is True
    assert sample("closeloop_cases_closed_total", outcome="no_response") == closed_before + 1
    case = await rig.store.get(routed.case_id)
    assert case is not None and case.status == "closed" and case.surveys[0].status == "expired"
    assert await rig.store.due.count_documents({"case_id": routed.case_id, "state": "pending"}) == 0


async def test_a_dissatisfied_customer_reopens_escalates_and_the_comment_comes_back_as_feedback(
    rig: Rig, lifecycle: TopicReader
) -> None:
    t0 = utcnow()
    routed = routed_at(t0)
    await rig.route(routed)
    await rig.followup.resolve(
        routed.case_id, by="a", solution="s", promise=None, client="t", now=t0 + timedelta(hours=1)
    )
    case, judged = await rig.followup.answer_survey(
        routed.case_id,
        SurveyAnswer(csat=2, expected=5, perceived=2, solved=False, comment="包裹还是没到"),
        now=t0 + timedelta(hours=2),
        language="zh",
        via="test",
    )
    assert judged.verdict == "dissatisfied" and case.status == "reopened"
    events = await events_of(lifecycle, routed.case_id, 8)
    (feedback,) = [e for e in events if e.topic == Topic.FEEDBACK_RECEIVED]
    lifecycle_events = [e for e in events if e.topic == Topic.CASE_LIFECYCLE]
    names = [e.name for e in lifecycle_events[4:]]
    assert names == ["survey.answered", "case.reopened", "case.escalated"]
    reopened, escalated = lifecycle_events[5], lifecycle_events[6]
    assert reopened.data.reopen_count == escalated.data.reopen_count == 1
    assert escalated.data.priority == Priority.P1
    assert feedback.topic == Topic.FEEDBACK_RECEIVED
    assert feedback.data.feedback.related_case_id == routed.case_id
    assert feedback.data.feedback.text == "包裹还是没到"
    assert feedback.data.feedback.customer_key == routed.feedback.customer_key
    # Nothing of the resolved round is left to fire: only the silence check of the case,
    # open again.
    assert await drain(rig, t0 + timedelta(days=5)) == 1
    silence = {"case_id": routed.case_id, "kind": "silence", "result": "done"}
    assert await rig.store.due.count_documents(silence) == 1


async def test_a_reroute_replaces_timers_and_an_assignment_from_the_queue_sets_the_agent(
    rig: Rig,
) -> None:
    t0 = utcnow()
    queued = routed_at(t0, agent=None, queued=True)
    await rig.route(queued)
    assigned = queued.model_copy(
        update={
            "routing": queued.routing.model_copy(
                update={"agent": "agent-emma-jones", "queued": False}
            )
        }
    )
    assert await rig.route(assigned) == []
    case = await rig.store.get(queued.case_id)
    assert case is not None and (case.agent, case.queued) == ("agent-emma-jones", False)
    assert [e.event for e in case.timeline][-1] == "case.assigned"

    t1 = t0 + timedelta(hours=4)
    again = queued.model_copy(
        update={
            "routing": a_routing(
                Priority.P1,
                at=t1,
                team="escalations",
                agent="agent-boss",
                reroute_count=1,
                reroute_reason="sla_breached",
                first_response_due=t1 + timedelta(hours=1),
                resolution_due=t1 + timedelta(hours=8),
            )
        }
    )
    first = await rig.route(again)
    assert await rig.route(again) == first  # redelivery: the same event, nothing else
    assert [e.name for e in first] == ["callback.scheduled"]
    assert first[0].data.due_at == t1 + timedelta(hours=1)
    case = await rig.store.get(queued.case_id)
    assert case is not None
    assert (case.priority, case.team, case.agent, case.generation) == (
        "P1",
        "escalations",
        "agent-boss",
        1,
    )
    assert [e.event for e in case.timeline].count("case.rerouted") == 1
    pending = [d async for d in rig.store.due.find({"case_id": queued.case_id, "state": "pending"})]
    assert {(d["kind"], d["generation"]) for d in pending if d["kind"] != "callback"} == {
        ("sla_warning", 1),
        ("sla_breach", 1),
        ("silence", 0),  # the checks of both routings: the earlier one fires first
        ("silence", 1),
    }
    assert len([d for d in pending if d["kind"] == "callback"]) == 1
    # An older routing arriving late changes nothing.
    assert await rig.route(queued) == []
    late = await rig.store.get(queued.case_id)
    assert late is not None and late.generation == 1


async def test_linked_feedback_is_kept_once_and_raises_the_priority(rig: Rig) -> None:
    t0 = utcnow()
    routed = routed_at(t0, Priority.P3)
    await rig.route(routed)
    urgent = a_case_routed(Priority.P1, at=t0).model_copy(
        update={"case_id": routed.case_id, "linked_to": routed.case_id}
    )
    assert await rig.route(urgent) == []
    assert await rig.route(urgent) == []
    case = await rig.store.get(routed.case_id)
    assert case is not None and case.priority == "P1"
    assert [f.feedback_id for f in case.linked_feedback] == [urgent.feedback.feedback_id]
    assert [e.event for e in case.timeline].count("feedback.linked") == 1
    assert len(case.callbacks) == 1
