"""Followup decisions: callbacks, SLA timers, the satisfaction check and case outcomes.

Pure functions over the case document (a dict as stored) and the policy; ``now`` is
always passed in. Timed work is described as ``DueItem``s, which the store keeps in
the due queue; every id is derived from what caused it, so scheduling twice is
scheduling once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from services.followup.policy import CallbackPolicy, FollowupPolicy, SatisfactionPolicy
from shared.contracts import (
    CaseClosed,
    CaseOutcome,
    CaseRouted,
    Customer,
    Feedback,
    Priority,
    Routing,
    SatisfactionVerdict,
    SlaKind,
)
from shared.envelope import derive_id

Case = dict[str, Any]

OPEN_STATUSES = ("open", "reopened")
SLA_KINDS: tuple[SlaKind, ...] = get_args(SlaKind)

DueKind = Literal["callback", "sla_warning", "sla_breach", "survey_reminder", "survey_timeout"]
CallbackOutcome = Literal["reached", "no_answer", "wrong_number", "rescheduled"]
CallbackPurpose = Literal["after_routing", "after_resolution", "retry", "rescheduled"]
RoutedMeaning = Literal["new", "linked", "rerouted", "assigned", "repeat"]

PRIORITY_ORDER = (Priority.P1, Priority.P2, Priority.P3, Priority.P4)


def entry(at: datetime, event: str, detail: str | None = None) -> dict[str, Any]:
    """One timeline entry."""
    return {"at": at, "event": event, "detail": detail}


# --- due items ------------------------------------------------------------------


@dataclass(frozen=True)
class DueItem:
    """Timed work for the due queue: fire ``kind`` about ``ref`` at ``due_at``."""

    case_id: str
    kind: DueKind
    ref: str
    due_at: datetime
    generation: int = 0

    @property
    def id(self) -> str:
        return derive_id("due", self.case_id, self.kind, self.ref, str(self.generation))

    def document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "case_id": self.case_id,
            "kind": self.kind,
            "ref": self.ref,
            "generation": self.generation,
            "due_at": self.due_at,
            "state": "pending",
            "lease_until": None,
            "owner": None,
        }


# --- priorities -----------------------------------------------------------------


def more_urgent(a: Priority, b: Priority) -> Priority:
    return a if PRIORITY_ORDER.index(a) <= PRIORITY_ORDER.index(b) else b


def one_step_higher(priority: Priority) -> Priority:
    return PRIORITY_ORDER[max(0, PRIORITY_ORDER.index(priority) - 1)]


# --- callbacks ------------------------------------------------------------------


def new_callback(
    *,
    callback_id: str,
    purpose: CallbackPurpose,
    due_at: datetime,
    attempt: int,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    return {
        "callback_id": callback_id,
        "purpose": purpose,
        "due_at": due_at,
        "attempt": attempt,
        "reason": reason,
        "status": "scheduled",
        "scheduled_at": now,
        "outcome": None,
        "outcome_at": None,
        "outcome_by": None,
        "note": None,
        "next_callback_id": None,
    }


def routing_callback(
    case_id: str,
    priority: Priority,
    routed_at: datetime,
    generation: int,
    policy: CallbackPolicy,
    now: datetime,
) -> dict[str, Any]:
    """The callback after (re-)routing, due after the policy's hours for the priority."""
    reason = "first contact after routing" if generation == 0 else "contact after re-routing"
    return new_callback(
        callback_id=derive_id("callback", case_id, "after_routing", str(generation)),
        purpose="after_routing",
        due_at=routed_at + timedelta(hours=policy.after_routing_hours[priority]),
        attempt=1,
        reason=reason,
        now=now,
    )


def resolution_callback(
    case_id: str, priority: Priority, resolved_at: datetime, round_: int, policy: CallbackPolicy
) -> dict[str, Any] | None:
    """The return visit that confirms a solution holds; None if the policy has none."""
    hours = policy.after_resolution_hours.get(priority)
    if hours is None:
        return None
    return new_callback(
        callback_id=derive_id("callback", case_id, "after_resolution", str(round_)),
        purpose="after_resolution",
        due_at=resolved_at + timedelta(hours=hours),
        attempt=1,
        reason="return visit after the resolution",
        now=resolved_at,
    )


def callback_item(case_id: str, callback: dict[str, Any]) -> DueItem:
    return DueItem(case_id, "callback", callback["callback_id"], callback["due_at"])


def open_callbacks(case: Case) -> list[dict[str, Any]]:
    """Callbacks still waiting for an outcome, earliest first."""
    pending = [
        cb for cb in (case.get("callbacks") or {}).values() if cb["status"] in ("scheduled", "due")
    ]
    return sorted(pending, key=lambda cb: cb["due_at"])


def scheduled_callback_ids(case: Case) -> list[str]:
    return [
        cb["callback_id"]
        for cb in (case.get("callbacks") or {}).values()
        if cb["status"] == "scheduled"
    ]


def cancel_scheduled_callbacks(case: Case, now: datetime) -> dict[str, Any]:
    """Fields that cancel every callback not yet due (superseded by a new owner, a
    resolution or the end of the case). Callbacks already handed to the dialer stay
    open for their outcome."""
    fields: dict[str, Any] = {}
    for callback_id in scheduled_callback_ids(case):
        fields[f"callbacks.{callback_id}.status"] = "cancelled"
        fields[f"callbacks.{callback_id}.outcome_at"] = now
    return fields


@dataclass(frozen=True)
class CallbackDecision:
    """What an outcome means: the next callback, if any, and whether we gave up."""

    next_callback: dict[str, Any] | None
    gave_up: bool
    detail: str


class OutcomeRejected(ValueError):
    """The outcome cannot be recorded (e.g. a reschedule into the past)."""


def decide_callback_outcome(
    callback: dict[str, Any],
    outcome: CallbackOutcome,
    *,
    now: datetime,
    policy: CallbackPolicy,
    reschedule_at: datetime | None = None,
) -> CallbackDecision:
    """No answer is tried again with backoff until ``max_attempts`` calls were made; a
    reschedule moves the call to the time the customer asked for, without counting as
    a failed try; reached and wrong number end the callback."""
    attempt = int(callback["attempt"])
    if outcome == "no_answer":
        if attempt >= policy.max_attempts:
            return CallbackDecision(None, True, f"no answer after {attempt} attempts; given up")
        retry = new_callback(
            callback_id=derive_id("callback", callback["callback_id"], "retry"),
            purpose="retry",
            due_at=now + policy.retry.delay(attempt),
            attempt=attempt + 1,
            reason=f"no answer on attempt {attempt}",
            now=now,
        )
        return CallbackDecision(retry, False, f"no answer; attempt {attempt + 1} scheduled")
    if outcome == "rescheduled":
        if reschedule_at is None or reschedule_at <= now:
            raise OutcomeRejected("a rescheduled callback needs reschedule_at in the future")
        moved = new_callback(
            callback_id=derive_id("callback", callback["callback_id"], "rescheduled"),
            purpose="rescheduled",
            due_at=reschedule_at,
            attempt=attempt,
            reason="rescheduled at the customer's request",
            now=now,
        )
        return CallbackDecision(moved, False, f"rescheduled to {reschedule_at.isoformat()}")
    if outcome == "wrong_number":
        return CallbackDecision(None, False, "wrong number; the contact details need checking")
    return CallbackDecision(None, False, "customer reached")


def overdue_cutoff(now: datetime, policy: CallbackPolicy) -> datetime:
    """Callbacks due before this and still without an outcome are overdue."""
    return now - timedelta(minutes=policy.overdue_after_minutes)


# --- SLA timers -----------------------------------------------------------------


def warning_time(started_at: datetime, due_at: datetime, share: float) -> datetime:
    """When ``share`` of the time from ``started_at`` to ``due_at`` has passed."""
    span = max(due_at - started_at, timedelta(0))
    at = started_at + span * share
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def sla_clock(routing: Routing) -> dict[str, Any]:
    """The SLA state of one routing generation: both deadlines running from routing."""
    return {
        "generation": routing.reroute_count,
        "started_at": routing.routed_at,
        "first_response": _clock(routing.first_response_due),
        "resolution": _clock(routing.resolution_due),
    }


def _clock(due_at: datetime) -> dict[str, Any]:
    # state: running until reached (met) or declared breached; reached_at: when the
    # response or resolution came, in time or not.
    return {"due_at": due_at, "state": "running", "warned": False, "reached_at": None}


def sla_timers(case_id: str, sla: dict[str, Any], share: float) -> list[DueItem]:
    """Warning and breach timers for every deadline of ``sla`` that is still running."""
    items = []
    for kind in SLA_KINDS:
        clock = sla[kind]
        if clock["state"] != "running":
            continue
        generation = int(sla["generation"])
        warn_at = warning_time(sla["started_at"], clock["due_at"], share)
        items.append(DueItem(case_id, "sla_warning", kind, warn_at, generation))
        items.append(DueItem(case_id, "sla_breach", kind, clock["due_at"], generation))
    return items


def deadline_met(clock: dict[str, Any], at: datetime) -> bool:
    """Reached at ``at``: met if in time and not already declared breached."""
    return bool(clock["state"] != "breached" and at <= clock["due_at"])


def warning_is_useful(clock: dict[str, Any], now: datetime) -> bool:
    """A warning fired after the deadline itself is no warning: the breach says it."""
    return bool(clock["state"] == "running" and not clock["warned"] and now < clock["due_at"])


# --- the case -------------------------------------------------------------------


def new_case(
    routed: CaseRouted, now: datetime, policy: FollowupPolicy
) -> tuple[Case, list[DueItem]]:
    """The case document created when a case is first routed, and its timed work."""
    routing = routed.routing
    generation = routing.reroute_count
    callback = routing_callback(
        routed.case_id, routing.priority, routing.routed_at, generation, policy.callbacks, now
    )
    sla = sla_clock(routing)
    case: Case = {
        "_id": routed.case_id,
        "feedback_id": routed.feedback.feedback_id,
        "customer_key": routed.feedback.customer_key,
        "status": "open",
        "priority": routing.priority.value,
        "team": routing.team,
        "agent": routing.agent,
        "queued": routing.queued,
        "feedback": routed.feedback.model_dump(mode="json"),
        "classification": routed.classification.model_dump(mode="json"),
        "routing": routing.model_dump(mode="json"),
        "generation": generation,
        "opened_at": routing.routed_at,
        "first_response_due": routing.first_response_due,
        "resolution_due": routing.resolution_due,
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "reopen_count": 0,
        "sla": sla,
        "sla_missed": {kind: False for kind in SLA_KINDS},
        "callbacks": {callback["callback_id"]: callback},
        "callbacks_made": 0,
        "responses": [],
        "notes": [],
        "resolutions": [],
        "surveys": [],
        "linked_feedback": [],
        "outcome": None,
        "timeline": [
            entry(now, "case.routed", routing.reason),
            entry(now, "callback.scheduled", f"due {callback['due_at'].isoformat()}"),
        ],
        "outbox": [],
        "created_at": now,
        "rev": 0,
    }
    items = [
        callback_item(routed.case_id, callback),
        *sla_timers(routed.case_id, sla, policy.sla.warning_share),
    ]
    return case, items


def meaning_of_routed(case: Case | None, routed: CaseRouted) -> RoutedMeaning:
    """What a case.routed means for a case followup may already have."""
    if routed.linked_to is not None:
        return "linked"
    if case is None:
        return "new"
    if case["status"] == "closed":
        return "repeat"  # a late re-route or assignment changes nothing on a closed case
    generation = routed.routing.reroute_count
    if generation > int(case.get("generation", 0)):
        return "rerouted"
    if (
        generation == int(case.get("generation", 0))
        and case.get("agent") is None
        and routed.routing.agent is not None
    ):
        return "assigned"
    return "repeat"


@dataclass(frozen=True)
class Change:
    """A case update worked out by the domain, for the store to apply atomically."""

    set_fields: dict[str, Any]
    timeline: list[dict[str, Any]]
    push: dict[str, Any] = field(default_factory=dict)
    schedule: list[DueItem] = field(default_factory=list)
    superseded_callbacks: list[str] = field(default_factory=list)


def reroute(case: Case, routed: CaseRouted, now: datetime, policy: FollowupPolicy) -> Change:
    """A higher routing generation: new owner, priority and deadlines. An open case gets
    fresh SLA timers and a callback from the new owner; a resolved one keeps waiting for
    its survey."""
    routing = routed.routing
    generation = routing.reroute_count
    set_fields: dict[str, Any] = {
        "priority": routing.priority.value,
        "team": routing.team,
        "agent": routing.agent,
        "queued": routing.queued,
        "routing": routing.model_dump(mode="json"),
        "generation": generation,
        "first_response_due": routing.first_response_due,
        "resolution_due": routing.resolution_due,
    }
    why = routing.reroute_reason or "re-routed"
    timeline = [
        entry(now, "case.rerouted", f"{why}: {routing.priority.value} {routing.team}"),
    ]
    schedule: list[DueItem] = []
    superseded: list[str] = []
    if case["status"] in OPEN_STATUSES:
        sla = sla_clock(routing)
        set_fields["sla"] = sla
        schedule += sla_timers(case["_id"], sla, policy.sla.warning_share)
        callback = routing_callback(
            case["_id"], routing.priority, routing.routed_at, generation, policy.callbacks, now
        )
        set_fields |= cancel_scheduled_callbacks(case, now)
        superseded = scheduled_callback_ids(case)
        set_fields[f"callbacks.{callback['callback_id']}"] = callback
        schedule.append(callback_item(case["_id"], callback))
        timeline.append(entry(now, "callback.scheduled", f"due {callback['due_at'].isoformat()}"))
    return Change(
        set_fields=set_fields,
        timeline=timeline,
        schedule=schedule,
        superseded_callbacks=superseded,
    )


def link(case: Case, routed: CaseRouted, now: datetime) -> Change:
    """A new feedback about this case: kept with the case, priority raised if it is
    more urgent; no new callback."""
    feedback = routed.feedback
    set_fields: dict[str, Any] = {}
    stored = Priority(case["priority"])
    raised = more_urgent(stored, routed.routing.priority)
    detail = f"feedback {feedback.feedback_id} via {feedback.channel.value}"
    if raised != stored:
        set_fields["priority"] = raised.value
        detail += f"; priority {stored.value} -> {raised.value}"
    linked = {
        "feedback_id": feedback.feedback_id,
        "channel": feedback.channel.value,
        "received_at": feedback.received_at,
        "text": feedback.text,
        "root_cause": routed.classification.root_cause.value,
        "urgency": routed.classification.urgency.value,
        "linked_at": now,
    }
    return Change(
        set_fields=set_fields,
        timeline=[entry(now, "feedback.linked", detail)],
        push={"linked_feedback": linked},
    )


# --- surveys and satisfaction -----------------------------------------------------


def new_survey(case_id: str, round_: int, now: datetime, policy: FollowupPolicy) -> dict[str, Any]:
    return {
        "survey_id": derive_id("survey", case_id, str(round_)),
        "round": round_,
        "requested_at": now,
        "expires_at": now + timedelta(hours=policy.survey.expires_after_hours),
        "reminded_at": None,
        "status": "pending",
        "answer": None,
    }


def survey_timers(case_id: str, survey: dict[str, Any], policy: FollowupPolicy) -> list[DueItem]:
    remind_at = survey["requested_at"] + timedelta(hours=policy.survey.reminder_after_hours)
    return [
        DueItem(case_id, "survey_reminder", survey["survey_id"], remind_at),
        DueItem(case_id, "survey_timeout", survey["survey_id"], survey["expires_at"]),
    ]


def current_survey(case: Case) -> dict[str, Any] | None:
    surveys = case.get("surveys") or []
    return surveys[-1] if surveys else None


SurveyState = Literal["open", "answered", "expired", "superseded", "unknown"]


def survey_state(case: Case, survey_id: str, now: datetime) -> SurveyState:
    """Whether a survey can still be answered: once, before it expires, and only while
    the case waits for it."""
    survey = next((s for s in case.get("surveys") or [] if s["survey_id"] == survey_id), None)
    if survey is None:
        return "unknown"
    if survey["status"] == "answered":
        return "answered"
    if survey["status"] == "expired" or now >= survey["expires_at"]:
        return "expired"
    if survey["status"] != "pending" or case["status"] != "resolved":
        return "superseded"
    return "open"


@dataclass(frozen=True)
class Satisfaction:
    ratio: float
    verdict: SatisfactionVerdict
    closes_case: bool


def judge_satisfaction(
    *, csat: int, expected: int, perceived: int, solved: bool, policy: SatisfactionPolicy
) -> Satisfaction:
    """satisfaction = perceived / expected: below ``satisfied_ratio`` the customer is
    dissatisfied, from ``delighted_ratio`` delighted. A low CSAT is dissatisfied whatever
    the ratio (the customer said so); an unsolved problem never closes the case."""
    ratio = round(perceived / expected, 3)
    verdict: SatisfactionVerdict
    if ratio < policy.satisfied_ratio or csat <= policy.dissatisfied_csat:
        verdict = "dissatisfied"
    elif ratio >= policy.delighted_ratio:
        verdict = "delighted"
    else:
        verdict = "satisfied"
    return Satisfaction(ratio=ratio, verdict=verdict, closes_case=closes_case(solved, verdict))


def closes_case(solved: bool, verdict: SatisfactionVerdict) -> bool:
    """A solved problem and a customer who is not dissatisfied close the case; anything
    else reopens it."""
    return solved and verdict != "dissatisfied"


def reopen_reason(solved: bool, verdict: SatisfactionVerdict) -> str:
    return "problem not solved" if not solved else f"customer {verdict}"


def reentry_feedback(
    case: Case, *, survey_id: str, comment: str, language: str | None, now: datetime
) -> Feedback:
    """The comment of a customer who is not satisfied, as new feedback on the case: it
    goes through classification again and the router links it to the case."""
    original = case["feedback"]
    return Feedback(
        feedback_id=derive_id("feedback", "survey", survey_id),
        channel=original["channel"],
        external_id=f"survey:{survey_id}",
        customer=Customer.model_validate(original["customer"]),
        customer_key=case["customer_key"],
        text=comment,
        language=language or original.get("language", "other"),
        received_at=now,
        ingested_at=now,
        metadata={"source": "survey", "survey_id": survey_id},
        related_case_id=case["_id"],
    )


# --- closing ----------------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def sla_met_flag(case: Case, kind: SlaKind) -> bool | None:
    """Met only if no routing generation missed it; None if it was never reached."""
    if (case.get("sla_missed") or {}).get(kind):
        return False
    clock = (case.get("sla") or {}).get(kind)
    if clock is None:
        return None
    if clock["state"] == "running":
        return None
    return bool(clock["state"] == "met")


def closed_summary(case: Case, *, outcome: CaseOutcome, closed_at: datetime) -> CaseClosed:
    """case.closed: what downstream needs to know about the finished case."""
    survey = current_survey(case)
    answer = (survey or {}).get("answer") or {}
    feedback, classification = case["feedback"], case["classification"]
    first_response_at = case.get("first_response_at")
    resolved_at = case.get("resolved_at")
    return CaseClosed(
        case_id=case["_id"],
        customer_key=case["customer_key"],
        occurred_at=closed_at,
        outcome=outcome,
        feedback_id=case["feedback_id"],
        channel=feedback["channel"],
        customer_tier=feedback["customer"]["tier"],
        root_cause=classification["root_cause"],
        urgency=classification["urgency"],
        priority=case["priority"],
        team=case["team"],
        agent=case.get("agent"),
        opened_at=case["opened_at"],
        first_response_at=first_response_at,
        resolved_at=resolved_at,
        closed_at=closed_at,
        time_to_first_response_s=_seconds(case["opened_at"], first_response_at),
        time_to_resolve_s=_seconds(case["opened_at"], resolved_at),
        first_response_sla_met=sla_met_flag(case, "first_response"),
        resolution_sla_met=sla_met_flag(case, "resolution"),
        callbacks_made=int(case.get("callbacks_made", 0)),
        reopen_count=int(case.get("reopen_count", 0)),
        csat=answer.get("csat"),
        expected=answer.get("expected"),
        perceived=answer.get("perceived"),
        ratio=answer.get("ratio"),
    )
