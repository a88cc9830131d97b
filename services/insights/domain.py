"""Case facts: one projection per case, folded from case.routed and case.lifecycle.

Events come more than once and in any order (two topics, many partitions), so each
field is a merge that neither can change: the earliest or the latest of times, the
union of sets, the largest of counts, or the values of the event that ranks first by a
stamp kept beside them (its time, then its event id, so that ties break the same way
wherever they are met). Folding a set of events in any order, each any number of
times, gives an equal ``CaseFacts``; ``rollup_delta`` turns each change of a case's
facts into what to add to the daily rollups.

Pure functions over the event contracts: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_serializer

from services.insights.reports import TIME_BUCKETS_S, TIMES, bucket_measure, time_buckets
from shared.contracts import (
    CallbackScheduled,
    CaseClosed,
    CaseEscalated,
    CaseEvent,
    CaseFirstResponse,
    CaseOutcome,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    Channel,
    Customer,
    CustomerTier,
    ExpectedOutcome,
    Priority,
    PromiseBroken,
    PromiseEvent,
    PromiseKept,
    PromiseMade,
    PromiseOverdue,
    RootCause,
    SatisfactionVerdict,
    SlaBreached,
    SlaKind,
    SurveyAnswered,
    SurveyRequested,
    Urgency,
)
from shared.envelope import Event

Stamp = tuple[datetime, str]
"""(when, event id) of the event a "latest" value came from: the larger wins."""

OpeningStamp = tuple[bool, datetime, datetime, str]
"""(linked, routed_at, received_at, event id) of a case.routed: the smallest opened the
case. A linked feedback carries a copy of the case's routing (same routed_at), so it
ranks after the case's own feedback whatever the times say."""

RoutingStamp = tuple[datetime, int, bool, datetime, str]
"""(routed_at, reroute_count, assigned, received_at, event id) of a case.routed: the
largest is the routing in force. At one routed_at, an agent assigned from the queue
ranks after the queued routing, and a linked feedback (received later, perhaps with a
raised priority) after the routing it copied."""

PromiseOutcome = Literal["kept", "broken"]


class PromiseFacts(BaseModel):
    """One promise an agent made to the customer, folded from its promise events (each
    carries the promise's id, what, due time and owner)."""

    model_config = ConfigDict(frozen=True)

    promise_id: str
    what: str
    due_at: datetime
    made_by: str
    team: str
    agent: str | None = None
    details_stamp: Stamp
    """The event the details above came from: the latest."""
    made_at: datetime | None = None
    overdue_at: datetime | None = None
    """The earliest promise.overdue: the deadline passed by the grace with no outcome."""
    outcome: PromiseOutcome | None = None
    """The latest promise.kept or promise.broken (a later record corrects an earlier)."""
    late: bool = False
    """Kept after its deadline."""
    outcome_at: datetime | None = None
    outcome_stamp: Stamp | None = None


class PromiseCounts(BaseModel):
    """How many promises a case had, and how they ended (case.closed's, or counted from
    the promise events). An overdue promise is also kept or broken once its outcome is
    recorded late, and open until then."""

    model_config = ConfigDict(frozen=True)

    made: int = 0
    kept: int = 0
    broken: int = 0
    overdue: int = 0
    open: int = 0

    @classmethod
    def of(cls, promises: Iterable[PromiseFacts]) -> PromiseCounts:
        known = list(promises)
        return cls(
            made=len(known),
            kept=sum(p.outcome == "kept" for p in known),
            broken=sum(p.outcome == "broken" for p in known),
            overdue=sum(p.overdue_at is not None for p in known),
            open=sum(p.outcome is None for p in known),
        )


class CaseFacts(BaseModel):
    """What insights knows of one case. Fields not known yet are None (or empty)."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    customer_key: str
    # The feedback that opened the case (the first case.routed) and its classification.
    feedback_id: str | None = None
    text: str | None = None
    channel: Channel | None = None
    language: str | None = None
    customer_tier: CustomerTier | None = None
    root_cause: RootCause | None = None
    secondary_cause: RootCause | None = None
    urgency: Urgency | None = None
    opened_at: datetime | None = None
    opening_stamp: OpeningStamp | None = None
    opening_expected_outcome: ExpectedOutcome | None = None
    # Every feedback of the case (its own and the linked ones): the customer as the latest
    # one names them, the urgency signals any of them carried, the first churn intent.
    customer: Customer | None = None
    customer_stamp: Stamp | None = None
    signals: frozenset[str] = frozenset()
    churn_evidence: str | None = None
    churn_stamp: Stamp | None = None
    # The routing in force (the latest case.routed): re-routing moves owner and deadlines.
    priority: Priority | None = None
    team: str | None = None
    agent: str | None = None
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    routing_stamp: RoutingStamp | None = None
    # The lifecycle.
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: CaseOutcome | None = None
    closed_first_response_sla_met: bool | None = None
    closed_resolution_sla_met: bool | None = None
    closed_expected_outcome: ExpectedOutcome | None = None
    closed_expectation_met: bool | None = None
    closed_promises: PromiseCounts | None = None
    closed_stamp: Stamp | None = None
    reopen_count: int = 0
    escalation_ids: frozenset[str] = frozenset()
    callback_ids: frozenset[str] = frozenset()
    survey_ids: frozenset[str] = frozenset()
    sla_breached: frozenset[SlaKind] = frozenset()
    # The latest survey answer.
    csat: int | None = None
    expected: int | None = None
    perceived: int | None = None
    ratio: float | None = None
    verdict: SatisfactionVerdict | None = None
    solved: bool | None = None
    answer_expectation_met: bool | None = None
    answer_stamp: Stamp | None = None
    # Every promise made to the customer, by id.
    promises: tuple[PromiseFacts, ...] = ()
    # Derived from the fields above after every fold (see _derived).
    escalation_count: int = 0
    callbacks_scheduled: int = 0
    surveys_sent: int = 0
    first_response_sla_met: bool | None = None
    resolution_sla_met: bool | None = None
    expected_outcome: ExpectedOutcome | None = None
    expectation_met: bool | None = None
    promises_made: int = 0
    promises_kept: int = 0
    promises_broken: int = 0
    promises_overdue: int = 0
    promises_overdue_open: int = 0
    """Overdue promises still without an outcome: what the kept rate counts as not kept."""
    applied: frozenset[str] = frozenset()
    """Ids of the events folded in: a caller can tell a redelivery from news."""

    @field_serializer(
        "escalation_ids",
        "callback_ids",
        "survey_ids",
        "sla_breached",
        "signals",
        "applied",
        when_used="json",
    )
    def _sorted(self, values: frozenset[str]) -> list[str]:
        # Sets in a stable order: equal facts are stored as equal documents.
        return sorted(values)


def fold(facts: CaseFacts | None, event: Event[Any]) -> CaseFacts:
    """``facts`` with one more event of its case (case.routed or case.lifecycle) in.

    Idempotent and order-independent: every field is a commutative merge. A lifecycle
    event before the case's case.routed is folded all the same; the facts of case.routed
    stay None until it comes.
    """
    data = event.data
    if not isinstance(data, CaseRouted | CaseEvent):
        raise ValueError(f"{event.name} is not an event of a case")
    key = data.feedback.customer_key if isinstance(data, CaseRouted) else data.customer_key
    if facts is None:
        facts = CaseFacts(case_id=data.case_id, customer_key=key)
    elif data.case_id != facts.case_id:
        raise ValueError(f"event {event.id} is of case {data.case_id}, not {facts.case_id}")
    changes = _changes(facts, event.id, data)
    # The same on every event of a case; the least makes a disagreement deterministic.
    changes["customer_key"] = min(facts.customer_key, key)
    changes["applied"] = facts.applied | {event.id}
    merged = facts.model_copy(update=changes)
    return merged.model_copy(update=_derived(merged))


def _changes(facts: CaseFacts, event_id: str, data: CaseRouted | CaseEvent) -> dict[str, Any]:
    if isinstance(data, CaseRouted):
        return _routed(facts, event_id, data)
    at = _utc(data.occurred_at)
    if isinstance(data, CaseFirstResponse):
        return {"first_response_at": _earliest(facts.first_response_at, at)}
    if isinstance(data, CaseResolved):
        return {"resolved_at": _latest(facts.resolved_at, at)}
    if isinstance(data, CaseReopened):
        return {"reopen_count": max(facts.reopen_count, data.reopen_count)}
    if isinstance(data, CaseEscalated):
        # An escalation that comes with a reopen counts that round too.
        return {
            "escalation_ids": facts.escalation_ids | {event_id},
            "reopen_count": max(facts.reopen_count, data.reopen_count or 0),
        }
    if isinstance(data, SlaBreached):
        return {"sla_breached": facts.sla_breached | {data.sla}}
    if isinstance(data, CallbackScheduled):
        return {"callback_ids": facts.callback_ids | {data.callback_id}}
    if isinstance(data, SurveyRequested):
        # A reminder repeats its survey's id: counted once.
        return {"survey_ids": facts.survey_ids | {data.survey_id}}
    if isinstance(data, SurveyAnswered):
        return _answered(facts, (at, event_id), data)
    if isinstance(data, CaseClosed):
        return _closed(facts, (at, event_id), data)
    if isinstance(data, PromiseEvent):
        return _promised(facts, (at, event_id), data)
    return {}  # sla.warning, callback.due, case.update_requested: nothing a report counts


def _routed(facts: CaseFacts, event_id: str, data: CaseRouted) -> dict[str, Any]:
    feedback, classification, routing = data.feedback, data.classification, data.routing
    routed_at, received_at = _utc(routing.routed_at), _utc(feedback.received_at)
    changes = _customer_and_signals(facts, (received_at, event_id), data)
    opening: OpeningStamp = (data.linked_to is not None, routed_at, received_at, event_id)
    if facts.opening_stamp is None or opening < facts.opening_stamp:
        changes |= {
            "feedback_id": feedback.feedback_id,
            "text": feedback.text,
            "channel": feedback.channel,
            "language": feedback.language,
            "customer_tier": feedback.customer.tier,
            "root_cause": classification.root_cause,
            "secondary_cause": classification.secondary_cause,
            "urgency": classification.urgency,
            "opened_at": received_at,
            "opening_stamp": opening,
            # What the customer asks for: the classifier's reading (the channel's form
            # value when there was one), else the form's.
            "opening_expected_outcome": classification.expectation.outcome
            if classification.expectation is not None
            else feedback.expected_outcome,
        }
    current: RoutingStamp = (
        routed_at,
        routing.reroute_count,
        not routing.queued,
        received_at,
        event_id,
    )
    if facts.routing_stamp is None or current > facts.routing_stamp:
        changes |= {
            "priority": routing.priority,
            "team": routing.team,
            "agent": routing.agent,
            "first_response_due": _utc(routing.first_response_due),
            "resolution_due": _utc(routing.resolution_due),
            "routing_stamp": current,
        }
    return changes


CHURN_SIGNAL = "churn_intent"


def _customer_and_signals(facts: CaseFacts, stamp: Stamp, data: CaseRouted) -> dict[str, Any]:
    names = {signal.name for signal in data.classification.signals}
    changes: dict[str, Any] = {"signals": facts.signals | names}
    if facts.customer_stamp is None or stamp > facts.customer_stamp:
        changes |= {"customer": data.feedback.customer, "customer_stamp": stamp}
    churn = next((s for s in data.classification.signals if s.name == CHURN_SIGNAL), None)
    if churn is not None and (facts.churn_stamp is None or stamp < facts.churn_stamp):
        changes |= {"churn_evidence": churn.evidence, "churn_stamp": stamp}
    return changes


def _answered(facts: CaseFacts, stamp: Stamp, data: SurveyAnswered) -> dict[str, Any]:
    if facts.answer_stamp is not None and stamp <= facts.answer_stamp:
        return {}
    return {
        "csat": data.csat,
        "expected": data.expected,
        "perceived": data.perceived,
        "ratio": data.ratio,
        "verdict": data.verdict,
        "solved": data.solved,
        "answer_expectation_met": data.expectation_met,
        "answer_stamp": stamp,
    }


def _closed(facts: CaseFacts, stamp: Stamp, data: CaseClosed) -> dict[str, Any]:
    # What the summary knows of the lifecycle merges like the lifecycle events would.
    first_response_at = facts.first_response_at
    if data.first_response_at is not None:
        first_response_at = _earliest(first_response_at, _utc(data.first_response_at))
    resolved_at = facts.resolved_at
    if data.resolved_at is not None:
        resolved_at = _latest(resolved_at, _utc(data.resolved_at))
    changes: dict[str, Any] = {
        "first_response_at": first_response_at,
        "resolved_at": resolved_at,
        "reopen_count": max(facts.reopen_count, data.reopen_count),
    }
    if facts.closed_stamp is None or stamp > facts.closed_stamp:
        changes |= {
            "closed_at": _utc(data.closed_at),
            "outcome": data.outcome,
            "closed_first_response_sla_met": data.first_response_sla_met,
            "closed_resolution_sla_met": data.resolution_sla_met,
            "closed_expected_outcome": data.expected_outcome,
            "closed_expectation_met": data.expectation_met,
            "closed_promises": PromiseCounts(
                made=data.promises_made,
                kept=data.promises_kept,
                broken=data.promises_broken,
                overdue=data.promises_overdue,
                open=data.promises_open,
            ),
            "closed_stamp": stamp,
        }
    return changes


def _promised(facts: CaseFacts, stamp: Stamp, data: PromiseEvent) -> dict[str, Any]:
    known = {promise.promise_id: promise for promise in facts.promises}
    known[data.promise_id] = _promise_after(known.get(data.promise_id), stamp, data)
    # In the order of their ids: equal facts are stored as equal documents.
    return {"promises": tuple(known[promise_id] for promise_id in sorted(known))}


def _promise_after(before: PromiseFacts | None, stamp: Stamp, data: PromiseEvent) -> PromiseFacts:
    """One promise with one more of its events in: the details of the latest event, the
    earliest making and overdue, the latest outcome recorded."""
    details: dict[str, Any] = {
        "what": data.what,
        "due_at": _utc(data.due_at),
        "made_by": data.made_by,
        "team": data.team,
        "agent": data.agent,
        "details_stamp": stamp,
    }
    if before is None:
        promise = PromiseFacts(promise_id=data.promise_id, **details)
        changes: dict[str, Any] = {}
    else:
        promise = before
        changes = details if stamp > before.details_stamp else {}
    at = stamp[0]
    if isinstance(data, PromiseMade):
        changes["made_at"] = _earliest(promise.made_at, at)
    elif isinstance(data, PromiseOverdue):
        changes["overdue_at"] = _earliest(promise.overdue_at, at)
    elif isinstance(data, PromiseKept | PromiseBroken) and (
        promise.outcome_stamp is None or stamp > promise.outcome_stamp
    ):
        kept = isinstance(data, PromiseKept)
        changes |= {
            "outcome": "kept" if kept else "broken",
            "late": data.late if isinstance(data, PromiseKept) else False,
            "outcome_at": at,
            "outcome_stamp": stamp,
        }
    return promise.model_copy(update=changes)


def _derived(facts: CaseFacts) -> dict[str, Any]:
    """The fields computed from the others: functions of merged state, so they merge too."""
    return {
        "escalation_count": len(facts.escalation_ids),
        "callbacks_scheduled": len(facts.callback_ids),
        "surveys_sent": len(facts.survey_ids),
        "first_response_sla_met": _sla_met(
            facts.closed_first_response_sla_met,
            "first_response" in facts.sla_breached,
            facts.first_response_at,
            facts.first_response_due,
        ),
        "resolution_sla_met": _sla_met(
            facts.closed_resolution_sla_met,
            "resolution" in facts.sla_breached,
            facts.resolved_at,
            facts.resolution_due,
        ),
        "expected_outcome": facts.closed_expected_outcome or facts.opening_expected_outcome,
        "expectation_met": facts.answer_expectation_met
        if facts.closed_expectation_met is None
        else facts.closed_expectation_met,
        **_promise_figures(facts),
    }


def _promise_figures(facts: CaseFacts) -> dict[str, int]:
    """The case's promise counts: case.closed's once the case is closed (the promise
    events' when that summary counts none but the events show some: a summary that did
    not count promises), else the promise events'. Which overdue promises are still
    without an outcome only the events tell; for a closed case no more than case.closed
    allows (overdue and open), and when the events miss some of its promises, as many
    as it allows."""
    events = PromiseCounts.of(facts.promises)
    events_overdue_open = sum(
        p.overdue_at is not None and p.outcome is None for p in facts.promises
    )
    closed = facts.closed_promises
    if closed is None or (closed.made == 0 and events.made > 0):
        counts, overdue_open = events, events_overdue_open
    else:
        counts = closed
        most = min(closed.overdue, closed.open)
        overdue_open = min(events_overdue_open, most) if events.made >= closed.made else most
    return {
        "promises_made": counts.made,
        "promises_kept": counts.kept,
        "promises_broken": counts.broken,
        "promises_overdue": counts.overdue,
        "promises_overdue_open": overdue_open,
    }


def _sla_met(
    closed: bool | None, breached: bool, done_at: datetime | None, due: datetime | None
) -> bool | None:
    """What case.closed said; else a breach is a miss (a re-route after it moves the
    deadline, not the miss); else the time against the deadline in force; else unknown."""
    if closed is not None:
        return closed
    if breached:
        return False
    if done_at is None or due is None:
        return None
    return done_at <= due


def _utc(at: datetime) -> datetime:
    # One instant, one value: equal facts serialise equally whatever offsets came in.
    return at.astimezone(UTC)


def _earliest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else min(current, at)


def _latest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else max(current, at)


# --- rollups ------------------------------------------------------------------------

DIMENSIONS = ("root_cause", "team", "agent", "channel", "priority", "language", "customer_tier")
MEASURES = (
    "cases",
    "first_responded",
    "first_response_s",
    "resolved",
    "resolve_s",
    "first_response_deadlines_known",
    "first_response_deadlines_met",
    "resolution_deadlines_known",
    "resolution_deadlines_met",
    "reopened",
    "escalated",
    "surveys_sent",
    "answered",
    "csat_sum",
    "csat_1",
    "csat_2",
    "csat_3",
    "csat_4",
    "csat_5",
    "perceived_sum",
    "expected_sum",
    "delighted",
    "satisfied",
    "dissatisfied",
    "closed",
    "promises_made",
    "promises_kept",
    "promises_broken",
    "promises_overdue",
    "promises_overdue_open",
    # Surveys that asked whether the customer got what they asked for, and said yes: in
    # all, and per outcome asked for (one-hot, as the CSAT scores).
    "expectations_asked",
    "expectations_met",
    *(
        f"expectations_{kind}_{outcome.value}"
        for outcome in ExpectedOutcome
        for kind in ("asked", "met")
    ),
    # One-hot: the bucket of each time (services/insights/reports.py), for percentiles.
    *(bucket_measure(time, i) for time in TIMES for i in range(len(TIME_BUCKETS_S) + 1)),
)
# SatisfactionVerdict's values are the three buckets themselves: perceived well above
# expected is delighted, about equal satisfied, below dissatisfied (followup judges it).
VERDICT_BUCKET: dict[SatisfactionVerdict, str] = {
    "delighted": "delighted",
    "satisfied": "satisfied",
    "dissatisfied": "dissatisfied",
}

Rollup = tuple[date, dict[str, str], dict[str, float]]
"""(day, dimensions, measures): what to add to one daily rollup."""


def day_of(facts: CaseFacts) -> date | None:
    """The UTC day the case was opened on: the day its rollup belongs to."""
    return None if facts.opened_at is None else facts.opened_at.astimezone(UTC).date()


def dimensions(facts: CaseFacts) -> dict[str, str]:
    """Each dimension's value as text; "none" when not known."""
    values: dict[str, str] = {}
    for name in DIMENSIONS:
        value = getattr(facts, name)
        values[name] = "none" if value is None else str(getattr(value, "value", value))
    return values


def measures(facts: CaseFacts) -> dict[str, float]:
    """The case's contribution to its daily rollup (every measure, zeros included)."""
    out = dict.fromkeys(MEASURES, 0.0)
    out["cases"] = 1.0
    if facts.first_response_at is not None:
        out["first_responded"] = 1.0
        out["first_response_s"] = _seconds(facts.opened_at, facts.first_response_at)
        out.update(time_buckets("first_response", out["first_response_s"]))
    if facts.resolved_at is not None:
        out["resolved"] = 1.0
        out["resolve_s"] = _seconds(facts.opened_at, facts.resolved_at)
        out.update(time_buckets("resolve", out["resolve_s"]))
    for kind, met in (
        ("first_response", facts.first_response_sla_met),
        ("resolution", facts.resolution_sla_met),
    ):
        out[f"{kind}_deadlines_known"] = float(met is not None)
        out[f"{kind}_deadlines_met"] = float(met is True)
    out["reopened"] = float(facts.reopen_count > 0)
    out["escalated"] = float(facts.escalation_count > 0)
    out["surveys_sent"] = float(facts.surveys_sent > 0)
    if facts.csat is not None:
        out["answered"] = 1.0
        out["csat_sum"] = float(facts.csat)
        out[f"csat_{facts.csat}"] = 1.0
    if facts.perceived is not None:
        out["perceived_sum"] = float(facts.perceived)
    if facts.expected is not None:
        out["expected_sum"] = float(facts.expected)
    if facts.verdict is not None:
        out[VERDICT_BUCKET[facts.verdict]] = 1.0
    out["closed"] = float(facts.closed_at is not None)
    out.update(_promise_measures(facts))
    out.update(_expectation_measures(facts))
    return out


PROMISE_MEASURES = (
    "promises_made", "promises_kept", "promises_broken", "promises_overdue",
    "promises_overdue_open",
)  # fmt: skip


def _promise_measures(facts: CaseFacts) -> dict[str, float]:
    return {name: float(getattr(facts, name)) for name in PROMISE_MEASURES}


def _expectation_measures(facts: CaseFacts) -> dict[str, float]:
    """Whether the survey asked if the customer got what they asked for, and the answer:
    in all and under the outcome asked for, when known."""
    if facts.expectation_met is None:
        return {}
    out = {"expectations_asked": 1.0, "expectations_met": float(facts.expectation_met)}
    if facts.expected_outcome is not None:
        outcome = facts.expected_outcome.value
        out[f"expectations_asked_{outcome}"] = 1.0
        out[f"expectations_met_{outcome}"] = float(facts.expectation_met)
    return out


def _seconds(start: datetime | None, end: datetime) -> float:
    return 0.0 if start is None else (end - start).total_seconds()


def rollup_delta(before: CaseFacts | None, after: CaseFacts) -> list[Rollup]:
    """What to add to the rollups when a case's facts change from ``before`` to ``after``:
    the old contribution taken out of its day and dimensions, the new one put in. A case
    whose day is not known yet (no case.routed) counts nowhere. Only measures that change
    are given; an entry with none is left out, and when the day and dimensions stay the
    same the two make one entry of differences."""
    old = _contribution(before)
    new = _contribution(after)
    if old is not None and new is not None and old[:2] == new[:2]:
        day, dims, values = new
        entries = [(day, dims, {k: v - old[2].get(k, 0.0) for k, v in values.items()})]
    else:
        entries = []
        if old is not None:
            entries.append((old[0], old[1], {k: -v for k, v in old[2].items()}))
        if new is not None:
            entries.append(new)
    out: list[Rollup] = []
    for day, dims, values in entries:
        changed = {k: v for k, v in values.items() if v != 0.0}
        if changed:
            out.append((day, dims, changed))
    return out


def _contribution(facts: CaseFacts | None) -> Rollup | None:
    if facts is None:
        return None
    day = day_of(facts)
    return None if day is None else (day, dimensions(facts), measures(facts))
