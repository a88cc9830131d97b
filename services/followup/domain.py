"""The followup case as typed models, and the rules about callbacks, SLA clocks, surveys
and satisfaction that the decisions (services/followup/decisions.py) are made of.

Pure: no I/O, no clock reads (``now`` is passed in). Timed work is described as
``DueItem``s, which the store keeps in the due queue; every id is derived from what
caused it, so scheduling twice is scheduling once. Only the store knows how a case is
stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from services.followup.policy import CallbackPolicy, FollowupPolicy, SatisfactionPolicy
from shared.contracts import (
    CaseClosed,
    CaseOutcome,
    CaseRouted,
    Classification,
    Feedback,
    Priority,
    Routing,
    SatisfactionVerdict,
    SlaKind,
)
from shared.envelope import derive_id

CaseStatus = Literal["open", "resolved", "reopened", "closed"]
OPEN_STATUSES: tuple[CaseStatus, ...] = ("open", "reopened")
SLA_KINDS: tuple[SlaKind, ...] = get_args(SlaKind)

DueKind = Literal[
    "callback",
    "sla_warning",
    "sla_breach",
    "survey_reminder",
    "survey_timeout",
    "promise_warning",
    "promise_due",
    "promise_overdue",
    "silence",
]
DUE_KINDS: tuple[DueKind, ...] = get_args(DueKind)
PROMISE_TIMERS: tuple[DueKind, ...] = ("promise_warning", "promise_due", "promise_overdue")
PromiseStatus = Literal["open", "kept", "broken"]
PromiseOutcome = Literal["kept", "broken"]
NoticeVia = Literal["routing", "case"]
CallbackOutcome = Literal["reached", "no_answer", "wrong_number", "rescheduled"]
CallbackPurpose = Literal["after_routing", "after_resolution", "retry", "rescheduled"]
CallbackStatus = Literal["scheduled", "due", "done", "cancelled"]
ClockState = Literal["running", "met", "breached"]
SurveyStatus = Literal["pending", "answered", "expired"]
RoutedMeaning = Literal["new", "linked", "rerouted", "assigned", "repeat"]
SurveyState = Literal["open", "answered", "expired", "superseded", "unknown"]


# --- the case ---------------------------------------------------------------------


class Part(BaseModel):
    """A piece of a case: changed by the decisions on their own copy of the case."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TimelineEntry(Part):
    at: datetime
    event: str
    detail: str | None = None


class Clock(Part):
    """One deadline: running until reached (met) or declared breached; ``reached_at``
    is when the response or resolution came, in time or not."""

    due_at: datetime
    state: ClockState = "running"
    warned: bool = False
    reached_at: datetime | None = None


class SlaClocks(Part):
    """The SLA state of one routing generation: both deadlines running from routing."""

    generation: int
    started_at: datetime
    first_response: Clock
    resolution: Clock

    def of(self, kind: SlaKind) -> Clock:
        return self.first_response if kind == "first_response" else self.resolution


class SlaMissed(Part):
    """Whether any routing generation missed the deadline."""

    first_response: bool = False
    resolution: bool = False


class Callback(Part):
    callback_id: str
    purpose: CallbackPurpose
    due_at: datetime
    attempt: int
    reason: str
    status: CallbackStatus = "scheduled"
    scheduled_at: datetime
    outcome: CallbackOutcome | None = None
    outcome_at: datetime | None = None
    outcome_by: str | None = None
    note: str | None = None
    next_callback_id: str | None = None


class Response(Part):
    at: datetime
    by: str
    message: str | None
    client: str


class Note(Part):
    at: datetime
    by: str
    text: str
    client: str


class Resolution(Part):
    at: datetime
    by: str
    solution: str
    promise: str | None
    survey_id: str
    client: str


class StoredAnswer(Part):
    at: datetime
    csat: int
    expected: int
    perceived: int
    solved: bool
    comment: str | None = None
    ratio: float
    verdict: SatisfactionVerdict
    via: str
    expectation_met: bool | None = None


class Survey(Part):
    survey_id: str
    round: int
    requested_at: datetime
    expires_at: datetime
    reminded_at: datetime | None = None
    status: SurveyStatus = "pending"
    answer: StoredAnswer | None = None


class Promise(Part):
    """What an agent promised the customer, by when, and whether it was kept."""

    promise_id: str
    what: str
    due_at: datetime
    due_in: str | None = None
    made_by: str
    made_at: datetime
    client: str
    status: PromiseStatus = "open"
    warned: bool = False
    due_told: bool = False
    overdue: bool = False
    outcome_at: datetime | None = None
    outcome_by: str | None = None
    note: str | None = None


class Notice(Part):
    """A customer.notify as it was sent: said again, the same, if its cause comes again."""

    notification_id: str
    kind: str
    at: datetime
    cause: str
    via: NoticeVia
    generation: int
    data: dict[str, object]


class LinkedFeedback(Part):
    feedback_id: str
    channel: str
    received_at: datetime
    text: str
    root_cause: str
    urgency: str
    linked_at: datetime


class QueuedEvent(Part):
    """An event the case's outbox holds until it is published."""

    id: str
    name: str
    source: str
    time: datetime
    data: dict[str, object]
    queued_at: datetime


class Case(Part):
    id: str = Field(alias="_id")
    feedback_id: str
    customer_key: str
    status: CaseStatus = "open"
    priority: Priority
    team: str
    agent: str | None = None
    queued: bool = False
    feedback: Feedback
    classification: Classification
    routing: Routing
    generation: int = 0
    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopen_count: int = 0
    sla: SlaClocks
    sla_missed: SlaMissed = Field(default_factory=SlaMissed)
    callbacks: dict[str, Callback] = Field(default_factory=dict)
    callbacks_made: int = 0
    responses: list[Response] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    resolutions: list[Resolution] = Field(default_factory=list)
    surveys: list[Survey] = Field(default_factory=list)
    linked_feedback: list[LinkedFeedback] = Field(default_factory=list)
    promises: dict[str, Promise] = Field(default_factory=dict)
    notices: list[Notice] = Field(default_factory=list)
    last_update_at: datetime | None = Field(
        default=None, description="The last customer-facing update (sent or said)"
    )
    update_requested_at: datetime | None = None
    outcome: CaseOutcome | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    outbox: list[QueuedEvent] = Field(default_factory=list)
    created_at: datetime
    rev: int = 0

    def survey(self, survey_id: str) -> Survey | None:
        return next((s for s in self.surveys if s.survey_id == survey_id), None)

    @property
    def reference(self) -> str:
        """The case reference the customer is given."""
        return case_reference(self.id)

    @property
    def silent_since(self) -> datetime:
        """Since when the customer has heard nothing (an update asked of the owner
        restarts the count too)."""
        marks = [m for m in (self.last_update_at, self.update_requested_at) if m is not None]
        return max(marks) if marks else self.opened_at


def case_reference(case_id: str) -> str:
    """The short reference customers are given for a case (its id's first 8 characters)."""
    return case_id[:8]


def entry(at: datetime, event: str, detail: str | None = None) -> TimelineEntry:
    """One timeline entry."""
    return TimelineEntry(at=at, event=event, detail=detail)


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


@dataclass(frozen=True)
class Cancel:
    """Pending timed work of a case that no longer needs doing: every item of the case
    matching all the given conditions (no condition: all of them)."""

    kinds: tuple[DueKind, ...] | None = None
    refs: tuple[str, ...] | None = None
    generation: int | None = None
    generation_below: int | None = None


# --- callbacks ------------------------------------------------------------------


def new_callback(
    *,
    callback_id: str,
    purpose: CallbackPurpose,
    due_at: datetime,
    attempt: int,
    reason: str,
    now: datetime,
) -> Callback:
    return Callback(
        callback_id=callback_id,
        purpose=purpose,
        due_at=due_at,
        attempt=attempt,
        reason=reason,
        scheduled_at=now,
    )


def routing_callback_id(case_id: str, generation: int) -> str:
    return derive_id("callback", case_id, "after_routing", str(generation))


def routing_callback(
    case_id: str,
    priority: Priority,
    routed_at: datetime,
    generation: int,
    policy: CallbackPolicy,
    now: datetime,
) -> Callback:
    """The callback after (re-)routing, due after the policy's hours for the priority."""
    reason = "first contact after routing" if generation == 0 else "contact after re-routing"
    return new_callback(
        callback_id=routing_callback_id(case_id, generation),
        purpose="after_routing",
        due_at=routed_at + timedelta(hours=policy.after_routing_hours[priority]),
        attempt=1,
        reason=reason,
        now=now,
    )


def resolution_callback(
    case_id: str, priority: Priority, resolved_at: datetime, round_: int, policy: CallbackPolicy
) -> Callback | None:
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


def callback_item(case_id: str, callback: Callback) -> DueItem:
    return DueItem(case_id, "callback", callback.callback_id, callback.due_at)


def open_callbacks(case: Case) -> list[Callback]:
    """Callbacks still waiting for an outcome, earliest first."""
    pending = [cb for cb in case.callbacks.values() if cb.status in ("scheduled", "due")]
    return sorted(pending, key=lambda cb: cb.due_at)


def scheduled_callback_ids(case: Case) -> list[str]:
    return [cb.callback_id for cb in case.callbacks.values() if cb.status == "scheduled"]


def cancel_scheduled_callbacks(case: Case, now: datetime) -> list[str]:
    """Cancel (on ``case``) every callback not yet due, superseded by a new owner, a
    resolution or the end of the case; returns their ids. Callbacks already handed to
    the dialer stay open for their outcome."""
    cancelled = scheduled_callback_ids(case)
    for callback_id in cancelled:
        callback = case.callbacks[callback_id]
        callback.status = "cancelled"
        callback.outcome_at = now
    return cancelled


@dataclass(frozen=True)
class CallbackDecision:
    """What an outcome means: the next callback, if any, and whether we gave up."""

    next_callback: Callback | None
    gave_up: bool
    detail: str


# --- refusals ---------------------------------------------------------------------


@dataclass(frozen=True)
class NotFound:
    """No such case (or callback)."""

    message: str


@dataclass(frozen=True)
class CaseConflict:
    """The case is not in a state that allows the request."""

    message: str


SURVEY_MESSAGES: dict[SurveyState, str] = {
    "answered": "the survey was already answered",
    "expired": "the survey has expired",
    "superseded": "the case no longer waits for this survey",
    "unknown": "no survey to answer for this case",
}


@dataclass(frozen=True)
class SurveyUnavailable:
    """The survey cannot be answered: already answered, expired, superseded or unknown."""

    state: SurveyState

    @property
    def message(self) -> str:
        return SURVEY_MESSAGES.get(self.state, f"survey {self.state}")


@dataclass(frozen=True)
class OutcomeRejected:
    """The outcome cannot be recorded (e.g. a reschedule into the past)."""

    message: str


Refusal = NotFound | CaseConflict | SurveyUnavailable | OutcomeRejected


class Refused(Exception):
    """A request the case refuses; ``refusal`` says why (the API answers a problem)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def decide_next_callback(
    callback: Callback,
    outcome: CallbackOutcome,
    *,
    now: datetime,
    policy: CallbackPolicy,
    reschedule_at: datetime | None = None,
) -> CallbackDecision | OutcomeRejected:
    """No answer is tried again with backoff until ``max_attempts`` calls were made; a
    reschedule moves the call to the time the customer asked for, without counting as
    a failed try; reached and wrong number end the callback."""
    attempt = callback.attempt
    if outcome == "no_answer":
        if attempt >= policy.max_attempts:
            return CallbackDecision(None, True, f"no answer after {attempt} attempts; given up")
        retry = new_callback(
            callback_id=derive_id("callback", callback.callback_id, "retry"),
            purpose="retry",
            due_at=now + policy.retry.delay(attempt),
            attempt=attempt + 1,
            reason=f"no answer on attempt {attempt}",
            now=now,
        )
        return CallbackDecision(retry, False, f"no answer; attempt {attempt + 1} scheduled")
    if outcome == "rescheduled":
        if reschedule_at is None or reschedule_at <= now:
            return OutcomeRejected("a rescheduled callback needs reschedule_at in the future")
        moved = new_callback(
            callback_id=derive_id("callback", callback.callback_id, "rescheduled"),
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


def sla_clock(routing: Routing) -> SlaClocks:
    """The SLA state of one routing generation: both deadlines running from routing."""
    return SlaClocks(
        generation=routing.reroute_count,
        started_at=routing.routed_at,
        first_response=Clock(due_at=routing.first_response_due),
        resolution=Clock(due_at=routing.resolution_due),
    )


def sla_timers(case_id: str, sla: SlaClocks, share: float) -> list[DueItem]:
    """Warning and breach timers for every deadline of ``sla`` that is still running."""
    items = []
    for kind in SLA_KINDS:
        clock = sla.of(kind)
        if clock.state != "running":
            continue
        warn_at = warning_time(sla.started_at, clock.due_at, share)
        items.append(DueItem(case_id, "sla_warning", kind, warn_at, sla.generation))
        items.append(DueItem(case_id, "sla_breach", kind, clock.due_at, sla.generation))
    return items


def deadline_met(clock: Clock, at: datetime) -> bool:
    """Reached at ``at``: met if in time and not already declared breached."""
    return clock.state != "breached" and at <= clock.due_at


def warning_is_useful(clock: Clock, now: datetime) -> bool:
    """A warning fired after the deadline itself is no warning: the breach says it."""
    return clock.state == "running" and not clock.warned and now < clock.due_at


# --- opening and routing ------------------------------------------------------------


def new_case(
    routed: CaseRouted, now: datetime, policy: FollowupPolicy
) -> tuple[Case, list[DueItem]]:
    """The case created when a case is first routed, and its timed work."""
    routing = routed.routing
    generation = routing.reroute_count
    callback = routing_callback(
        routed.case_id, routing.priority, routing.routed_at, generation, policy.callbacks, now
    )
    sla = sla_clock(routing)
    case = Case(
        id=routed.case_id,
        feedback_id=routed.feedback.feedback_id,
        customer_key=routed.feedback.customer_key,
        priority=routing.priority,
        team=routing.team,
        agent=routing.agent,
        queued=routing.queued,
        feedback=routed.feedback,
        classification=routed.classification,
        routing=routing,
        generation=generation,
        opened_at=routing.routed_at,
        first_response_due=routing.first_response_due,
        resolution_due=routing.resolution_due,
        sla=sla,
        callbacks={callback.callback_id: callback},
        timeline=[
            entry(now, "case.routed", routing.reason),
            entry(now, "callback.scheduled", f"due {callback.due_at.isoformat()}"),
        ],
        created_at=now,
    )
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
    if case.status == "closed":
        return "repeat"  # a late re-route or assignment changes nothing on a closed case
    generation = routed.routing.reroute_count
    if generation > case.generation:
        return "rerouted"
    if generation == case.generation and case.agent is None and routed.routing.agent is not None:
        return "assigned"
    return "repeat"


def timers_of(case: Case, policy: FollowupPolicy) -> list[DueItem]:
    """The timed work the current routing generation of a case needs."""
    items: list[DueItem] = []
    callback = case.callbacks.get(routing_callback_id(case.id, case.generation))
    if callback is not None and callback.status == "scheduled":
        items.append(callback_item(case.id, callback))
    if case.status in OPEN_STATUSES:
        items += sla_timers(case.id, case.sla, policy.sla.warning_share)
    return items


# --- surveys and satisfaction -----------------------------------------------------


def new_survey(case_id: str, round_: int, now: datetime, policy: FollowupPolicy) -> Survey:
    return Survey(
        survey_id=derive_id("survey", case_id, str(round_)),
        round=round_,
        requested_at=now,
        expires_at=now + timedelta(hours=policy.survey.expires_after_hours),
    )


def survey_timers(case_id: str, survey: Survey, policy: FollowupPolicy) -> list[DueItem]:
    remind_at = survey.requested_at + timedelta(hours=policy.survey.reminder_after_hours)
    return [
        DueItem(case_id, "survey_reminder", survey.survey_id, remind_at),
        DueItem(case_id, "survey_timeout", survey.survey_id, survey.expires_at),
    ]


def current_survey(case: Case) -> Survey | None:
    return case.surveys[-1] if case.surveys else None


def survey_state(case: Case, survey_id: str, now: datetime) -> SurveyState:
    """Whether a survey can still be answered: once, before it expires, and only while
    the case waits for it."""
    survey = case.survey(survey_id)
    if survey is None:
        return "unknown"
    if survey.status == "answered":
        return "answered"
    if survey.status == "expired" or now >= survey.expires_at:
        return "expired"
    if survey.status != "pending" or case.status != "resolved":
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
    original = case.feedback
    return Feedback(
        feedback_id=derive_id("feedback", "survey", survey_id),
        channel=original.channel,
        external_id=f"survey:{survey_id}",
        customer=original.customer,
        customer_key=case.customer_key,
        text=comment,
        language=language or original.language,
        received_at=now,
        ingested_at=now,
        metadata={"source": "survey", "survey_id": survey_id},
        related_case_id=case.id,
    )


# --- closing ----------------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def sla_met_flag(case: Case, kind: SlaKind) -> bool | None:
    """Met only if no routing generation missed it; None if it was never reached."""
    if getattr(case.sla_missed, kind):
        return False
    clock = case.sla.of(kind)
    if clock.state == "running":
        return None
    return clock.state == "met"


def closed_summary(case: Case, *, outcome: CaseOutcome, closed_at: datetime) -> CaseClosed:
    """case.closed: what downstream needs to know about the finished case."""
    survey = current_survey(case)
    answer = survey.answer if survey is not None else None
    expectation = case.classification.expectation
    return CaseClosed(
        case_id=case.id,
        customer_key=case.customer_key,
        occurred_at=closed_at,
        outcome=outcome,
        feedback_id=case.feedback_id,
        channel=case.feedback.channel,
        customer_tier=case.feedback.customer.tier,
        root_cause=case.classification.root_cause,
        urgency=case.classification.urgency,
        priority=case.priority,
        team=case.team,
        agent=case.agent,
        opened_at=case.opened_at,
        first_response_at=case.first_response_at,
        resolved_at=case.resolved_at,
        closed_at=closed_at,
        time_to_first_response_s=_seconds(case.opened_at, case.first_response_at),
        time_to_resolve_s=_seconds(case.opened_at, case.resolved_at),
        first_response_sla_met=sla_met_flag(case, "first_response"),
        resolution_sla_met=sla_met_flag(case, "resolution"),
        callbacks_made=case.callbacks_made,
        reopen_count=case.reopen_count,
        csat=answer.csat if answer else None,
        expected=answer.expected if answer else None,
        perceived=answer.perceived if answer else None,
        ratio=answer.ratio if answer else None,
        expected_outcome=expectation.outcome if expectation else None,
        expectation_met=answer.expectation_met if answer else None,
        **promise_counts(case),
    )


def promise_counts(case: Case) -> dict[str, int]:
    """Promises made, kept, broken, overdue (deadline passed without an outcome in time,
    whatever came after) and still open."""
    promises = list(case.promises.values())
    return {
        "promises_made": len(promises),
        "promises_kept": sum(p.status == "kept" for p in promises),
        "promises_broken": sum(p.status == "broken" for p in promises),
        "promises_overdue": sum(p.overdue for p in promises),
        "promises_open": sum(p.status == "open" for p in promises),
    }
