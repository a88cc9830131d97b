"""Every change to a case, as a pure function ``decide_<what>(case, command_or_event,
now, policy) -> Decision``.

A decision is made on one revision of the case, with no I/O: the case as it will be,
the events the change emits (queued in the case's outbox when it is written), the
timed work to schedule before the write and to cancel after it, the metrics it moves
once written, or a refusal with its reason. The store writes it against the revision it
was decided on (``FollowupStore.apply``); if the case changed meanwhile, the flow
decides again on the new revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.followup.change import SLA_TIMER_KINDS, SOURCE, Decision, Draft, Measure
from services.followup.domain import (
    DUE_KINDS,
    OPEN_STATUSES,
    PROMISE_TIMERS,
    SLA_KINDS,
    Callback,
    CallbackOutcome,
    Cancel,
    Case,
    CaseConflict,
    Clock,
    DueItem,
    LinkedFeedback,
    Note,
    NotFound,
    OutcomeRejected,
    Resolution,
    Response,
    Satisfaction,
    StoredAnswer,
    Survey,
    SurveyUnavailable,
    callback_item,
    cancel_scheduled_callbacks,
    closed_summary,
    current_survey,
    deadline_met,
    decide_next_callback,
    judge_satisfaction,
    meaning_of_routed,
    new_case,
    new_survey,
    reentry_feedback,
    reopen_reason,
    resolution_callback,
    routing_callback,
    routing_callback_id,
    sla_clock,
    sla_timers,
    survey_state,
    survey_timers,
    timers_of,
    warning_is_useful,
)
from services.followup.links import SurveyLinks, SurveyTicket
from services.followup.outreach import (
    Outreach,
    acknowledge,
    apologise,
    customer_updated,
    decide_silence,
    said_on_routing,
    silence_item,
)
from services.followup.policy import FollowupPolicy
from services.followup.promises import decide_promise_timer
from shared.contracts import (
    CallbackDue,
    CallbackScheduled,
    CaseEscalated,
    CaseFirstResponse,
    CaseOutcome,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    FeedbackReceived,
    SlaBreached,
    SlaKind,
    SlaWarning,
    SurveyAnswered,
    SurveyRequested,
    higher_priority,
    raise_priority,
)
from shared.envelope import Event, new_event

# --- commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    by: str
    message: str | None
    client: str


@dataclass(frozen=True)
class AddNote:
    by: str
    text: str
    client: str


@dataclass(frozen=True)
class Resolve:
    by: str
    solution: str
    promise: str | None
    client: str


@dataclass(frozen=True)
class ReportCallback:
    callback_id: str
    outcome: CallbackOutcome
    by: str
    note: str | None = None
    reschedule_at: datetime | None = None


@dataclass(frozen=True)
class SurveyAnswer:
    csat: int
    expected: int
    perceived: int
    solved: bool
    comment: str | None = None
    expectation_met: bool | None = None


@dataclass(frozen=True)
class AnswerSurvey:
    answer: SurveyAnswer
    via: str
    survey_id: str | None = None
    language: str | None = None


# --- shared pieces ----------------------------------------------------------------------


def _reach(d: Draft, kind: SlaKind) -> bool | None:
    """The response or resolution a deadline waits for came: stop its timers. Returns
    whether it came in time, or None if this routing had it already."""
    case = d.case
    clock = case.sla.of(kind)
    if clock.reached_at is not None:
        return None
    within = deadline_met(clock, d.now)
    clock.reached_at = d.now
    if clock.state == "running":  # a breach was counted when it was declared
        clock.state = "met" if within else "breached"
        d.cancel.append(Cancel(SLA_TIMER_KINDS, (kind,), generation=case.sla.generation))
        d.count("sla_met" if within else "sla_breaches", case.team, kind, case.priority.value)
    if not within:
        setattr(case.sla_missed, kind, True)
    return within


def _first_response(d: Draft, by: str) -> bool:
    """The first response of the current routing: case.first_response, and the
    first-response SLA timer stops."""
    within = _reach(d, "first_response")
    if within is None:
        return False
    case = d.case
    if case.first_response_at is None:
        case.first_response_at = d.now
    d.emit(
        CaseFirstResponse(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=d.now,
            responded_by=by,
            within_sla=within,
        ),
        f"{case.id}:first_response:{case.sla.generation}",
        f"by {by}, {'within' if within else 'after'} SLA",
    )
    return True


def _close(d: Draft, outcome: CaseOutcome) -> None:
    case = d.case
    closed = closed_summary(case, outcome=outcome, closed_at=d.now)
    case.status, case.closed_at, case.outcome = "closed", d.now, outcome
    cancel_scheduled_callbacks(case, d.now)
    d.emit(closed, f"{case.id}:close", f"outcome {outcome}")
    # Nothing is left to do for a closed case but the promises made to the customer.
    d.cancel.append(Cancel(tuple(k for k in DUE_KINDS if k not in PROMISE_TIMERS)))
    d.count("cases_closed", outcome)


def _schedule_callback(d: Draft, callback: Callback) -> None:
    case = d.case
    case.callbacks[callback.callback_id] = callback
    d.schedule.append(callback_item(case.id, callback))
    d.emit(
        CallbackScheduled(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=d.now,
            callback_id=callback.callback_id,
            due_at=callback.due_at,
            attempt=callback.attempt,
            reason=callback.reason,
        ),
        callback.callback_id,
        f"{callback.reason}; due {callback.due_at.isoformat()}",
    )


def _request_survey(
    d: Draft, survey: Survey, links: SurveyLinks, *, cause: str, reminder: bool = False
) -> None:
    """survey.requested (or its reminder), with the survey's signed link."""
    case = d.case
    d.emit(
        SurveyRequested(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=d.now,
            survey_id=survey.survey_id,
            channel=case.feedback.channel,
            expires_at=survey.expires_at,
            url=links.url(SurveyTicket(case.id, survey.survey_id, survey.expires_at)),
            reminder=reminder,
        ),
        cause,
        f"survey {survey.survey_id}",
        logged_as="survey.reminded" if reminder else None,
    )


# --- agents -----------------------------------------------------------------------------


def decide_response(
    case: Case, cmd: Respond, now: datetime, policy: FollowupPolicy, outreach: Outreach
) -> Decision:
    """An agent answered the customer; the first answer of a routing stops its clock."""
    if case.status == "closed":
        return Decision.refuse(case, CaseConflict(f"case {case.id} is closed"))
    d = Draft(case, now)
    d.case.responses.append(Response(at=now, by=cmd.by, message=cmd.message, client=cmd.client))
    if not _first_response(d, cmd.by):
        d.log("case.response", f"by {cmd.by}")
    customer_updated(d, policy, outreach)
    return d.decision()


def decide_note(case: Case, cmd: AddNote, now: datetime, policy: FollowupPolicy) -> Decision:
    d = Draft(case, now)
    d.case.notes.append(Note(at=now, by=cmd.by, text=cmd.text, client=cmd.client))
    d.log("case.note", f"by {cmd.by}")
    return d.decision()


def decide_resolution(
    case: Case,
    cmd: Resolve,
    now: datetime,
    policy: FollowupPolicy,
    links: SurveyLinks,
    outreach: Outreach,
) -> Decision:
    """The solution is recorded; the customer is asked for the satisfaction check and a
    return visit is scheduled if the policy has one."""
    if case.status not in OPEN_STATUSES:
        why = f"case {case.id} is {case.status}; only open or reopened cases can be resolved"
        return Decision.refuse(case, CaseConflict(why))
    d = Draft(case, now)
    round_ = case.reopen_count
    _first_response(d, cmd.by)
    reached = _reach(d, "resolution")
    # Resolved again after a reopen, before the case was routed again: judged against
    # the deadline the case still has.
    within = deadline_met(case.sla.resolution, now) if reached is None else reached
    survey = new_survey(case.id, round_, now, policy)
    d.case.status, d.case.resolved_at = "resolved", now
    superseded = cancel_scheduled_callbacks(d.case, now)
    d.case.resolutions.append(
        Resolution(
            at=now,
            by=cmd.by,
            solution=cmd.solution,
            promise=cmd.promise,
            survey_id=survey.survey_id,
            client=cmd.client,
        )
    )
    d.case.surveys.append(survey)
    d.schedule += survey_timers(case.id, survey, policy)
    d.emit(
        CaseResolved(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=now,
            resolved_by=cmd.by,
            solution=cmd.solution,
            promise=cmd.promise,
            within_sla=within,
        ),
        f"{case.id}:resolve:{round_}",
        f"by {cmd.by}",
    )
    _request_survey(d, survey, links, cause=f"{case.id}:survey:{round_}")
    callback = resolution_callback(case.id, case.priority, now, round_, policy.callbacks)
    if callback is not None:
        _schedule_callback(d, callback)
    if superseded:
        d.cancel.append(Cancel(("callback",), tuple(superseded)))
    customer_updated(d, policy, outreach)
    d.count("cases_resolved", case.team)
    d.count("resolution_seconds", case.team, value=max(0.0, (now - case.opened_at).total_seconds()))
    d.count("surveys_requested")
    return d.decision()


def decide_callback_outcome(
    case: Case, cmd: ReportCallback, now: datetime, policy: FollowupPolicy, outreach: Outreach
) -> Decision:
    """How a callback went; the same report again changes nothing."""
    callback_id = cmd.callback_id
    callback = case.callbacks.get(callback_id)
    if callback is None:
        return Decision.refuse(case, NotFound(f"no callback {callback_id}"))
    if callback.status == "done":
        if callback.outcome == cmd.outcome:
            return Decision.nothing(case)  # the same report again: already recorded
        return Decision.refuse(
            case, CaseConflict(f"callback {callback_id} already has outcome {callback.outcome}")
        )
    if callback.status == "cancelled":
        return Decision.refuse(case, CaseConflict(f"callback {callback_id} was cancelled"))
    next_ = decide_next_callback(
        callback, cmd.outcome, now=now, policy=policy.callbacks, reschedule_at=cmd.reschedule_at
    )
    if isinstance(next_, OutcomeRejected):
        return Decision.refuse(case, next_)
    d = Draft(case, now)
    done = d.case.callbacks[callback_id]
    done.status, done.outcome, done.outcome_at = "done", cmd.outcome, now
    done.outcome_by, done.note = cmd.by, cmd.note
    d.case.callbacks_made += 1
    d.log(f"callback.{cmd.outcome}", next_.detail)
    d.cancel.append(Cancel(("callback",), (callback_id,)))
    if next_.gave_up:
        d.log("callback.given_up", next_.detail)
    if next_.next_callback is not None and case.status != "closed":
        _schedule_callback(d, next_.next_callback)
        done.next_callback_id = next_.next_callback.callback_id
    if cmd.outcome == "reached":
        customer_updated(d, policy, outreach)
    d.count("callbacks", cmd.outcome)
    return d.decision()


# --- customers --------------------------------------------------------------------------


def judge(answer: SurveyAnswer, policy: FollowupPolicy) -> Satisfaction:
    return judge_satisfaction(
        csat=answer.csat,
        expected=answer.expected,
        perceived=answer.perceived,
        solved=answer.solved,
        policy=policy.satisfaction,
    )


def decide_survey_answer(
    case: Case, cmd: AnswerSurvey, now: datetime, policy: FollowupPolicy, outreach: Outreach
) -> Decision:
    """The satisfaction check: solved and satisfied (or delighted) closes the case;
    otherwise it is reopened and escalated, and the comment comes back as feedback."""
    if cmd.survey_id is None:
        current = current_survey(case)
        sid = current.survey_id if current is not None else None
    else:
        sid = cmd.survey_id or None
    if sid is None:
        return Decision.refuse(case, SurveyUnavailable("unknown"))
    state = survey_state(case, sid, now)
    if state != "open":
        return Decision.refuse(case, SurveyUnavailable(state))
    answer, judged = cmd.answer, judge(cmd.answer, policy)
    d = Draft(case, now)
    survey = d.case.survey(sid)
    assert survey is not None  # survey_state found it
    survey.status = "answered"
    survey.answer = StoredAnswer(
        at=now,
        csat=answer.csat,
        expected=answer.expected,
        perceived=answer.perceived,
        solved=answer.solved,
        comment=answer.comment,
        ratio=judged.ratio,
        verdict=judged.verdict,
        via=cmd.via,
        expectation_met=answer.expectation_met,
    )
    d.emit(
        SurveyAnswered(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=now,
            survey_id=sid,
            csat=answer.csat,
            expected=answer.expected,
            perceived=answer.perceived,
            ratio=judged.ratio,
            solved=answer.solved,
            verdict=judged.verdict,
            comment=answer.comment,
            expectation_met=answer.expectation_met,
        ),
        f"{sid}:answered",
        f"csat {answer.csat}, ratio {judged.ratio}, {judged.verdict}, "
        f"{'solved' if answer.solved else 'not solved'} (via {cmd.via})",
    )
    if judged.closes_case:
        _close(d, judged.verdict)
    else:
        _reopen(d, sid, cmd, judged)
        customer_updated(d, policy, outreach)  # told it is reopened and escalated
    d.count("survey_answers", judged.verdict)
    d.count("satisfaction_ratio", value=judged.ratio)
    d.count("csat", value=answer.csat)
    return d.decision()


def _reopen(d: Draft, sid: str, cmd: AnswerSurvey, judged: Satisfaction) -> None:
    case = d.case
    reopen_count = case.reopen_count + 1
    why = reopen_reason(cmd.answer.solved, judged.verdict)
    case.status, case.resolved_at, case.reopen_count = "reopened", None, reopen_count
    superseded = cancel_scheduled_callbacks(case, d.now)
    common = {"case_id": case.id, "customer_key": case.customer_key, "occurred_at": d.now}
    d.emit(
        CaseReopened(**common, reason=why, reopen_count=reopen_count),
        f"{case.id}:reopen:{reopen_count}",
        why,
    )
    escalate_to = raise_priority(case.priority)
    d.emit(
        CaseEscalated(**common, reason=why, priority=escalate_to, reopen_count=reopen_count),
        f"{case.id}:escalate:{reopen_count}",
        f"{why}; asks for {escalate_to.value}",
    )
    comment = (cmd.answer.comment or "").strip()
    if comment:
        feedback = reentry_feedback(
            case, survey_id=sid, comment=comment, language=cmd.language, now=d.now
        )
        d.emit(
            FeedbackReceived(feedback=feedback),
            f"{sid}:reentry",
            f"survey comment as feedback {feedback.feedback_id}",
        )
    d.cancel.append(Cancel(("callback",), tuple(superseded)))
    d.cancel.append(Cancel(("survey_reminder", "survey_timeout"), (sid,)))
    d.count("cases_reopened")


# --- timers -----------------------------------------------------------------------------


def decide_callback_due(
    case: Case, item: DueItem, now: datetime, policy: FollowupPolicy
) -> Decision:
    """A callback's time came: it goes to the dialer, unless the case no longer needs it."""
    callback = case.callbacks.get(item.ref)
    if callback is None or callback.status != "scheduled" or case.status == "closed":
        return Decision.nothing(case)
    if callback.purpose != "after_resolution" and case.status not in OPEN_STATUSES:
        return Decision.nothing(case)
    d = Draft(case, now)
    d.case.callbacks[item.ref].status = "due"
    d.emit(
        CallbackDue(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=now,
            callback_id=item.ref,
            due_at=callback.due_at,
            attempt=callback.attempt,
            team=case.team,
            agent=case.agent,
        ),
        f"{item.ref}:due",
        f"attempt {callback.attempt}: {callback.reason}",
    )
    return d.decision()


def _running_clock(case: Case, item: DueItem) -> tuple[SlaKind, Clock] | None:
    """The deadline a timer is about, if it is of the case's current routing."""
    if case.status not in OPEN_STATUSES or case.sla.generation != item.generation:
        return None
    kind = next((k for k in SLA_KINDS if k == item.ref), None)
    return None if kind is None else (kind, case.sla.of(kind))


def decide_sla_warning(
    case: Case, item: DueItem, now: datetime, policy: FollowupPolicy
) -> Decision:
    found = _running_clock(case, item)
    if found is None or not warning_is_useful(found[1], now):
        return Decision.nothing(case)
    kind, clock = found
    d = Draft(case, now)
    d.case.sla.of(kind).warned = True
    d.emit(
        SlaWarning(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=now,
            sla=kind,
            due_at=clock.due_at,
        ),
        f"{case.id}:sla_warning:{kind}:{item.generation}",
        f"{kind} due {clock.due_at.isoformat()}",
    )
    d.count("sla_warnings", case.team, kind, case.priority.value)
    return d.decision()


def decide_sla_breach(case: Case, item: DueItem, now: datetime, policy: FollowupPolicy) -> Decision:
    found = _running_clock(case, item)
    if found is None or found[1].state != "running" or now < found[1].due_at:
        return Decision.nothing(case)
    kind, clock = found
    d = Draft(case, now)
    d.case.sla.of(kind).state = "breached"
    setattr(d.case.sla_missed, kind, True)
    d.emit(
        SlaBreached(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=now,
            sla=kind,
            due_at=clock.due_at,
        ),
        f"{case.id}:sla_breached:{kind}:{item.generation}",
        f"{kind} was due {clock.due_at.isoformat()}",
    )
    d.count("sla_breaches", case.team, kind, case.priority.value)
    return d.decision()


def decide_survey_reminder(
    case: Case, item: DueItem, now: datetime, policy: FollowupPolicy, links: SurveyLinks
) -> Decision:
    sid = item.ref
    survey = case.survey(sid)
    if survey is None or survey_state(case, sid, now) != "open" or survey.reminded_at:
        return Decision.nothing(case)
    d = Draft(case, now)
    reminded = d.case.survey(sid)
    assert reminded is not None
    reminded.reminded_at = now
    _request_survey(d, survey, links, cause=f"{sid}:reminder", reminder=True)
    d.count("survey_reminders")
    return d.decision()


def decide_survey_timeout(
    case: Case, item: DueItem, now: datetime, policy: FollowupPolicy
) -> Decision:
    """An unanswered survey expired: the case closes with no response."""
    sid = item.ref
    survey = case.survey(sid)
    if survey is None or survey.status != "pending" or case.status != "resolved":
        return Decision.nothing(case)
    if now < survey.expires_at:
        return Decision.nothing(case)
    d = Draft(case, now)
    expired = d.case.survey(sid)
    assert expired is not None
    expired.status = "expired"
    d.log("survey.expired", f"survey {sid} not answered")
    _close(d, "no_response")
    return d.decision()


def decide_due(
    case: Case,
    item: DueItem,
    now: datetime,
    policy: FollowupPolicy,
    links: SurveyLinks,
    outreach: Outreach,
) -> Decision:
    """The timed work of one due item."""
    if item.kind == "callback":
        return decide_callback_due(case, item, now, policy)
    if item.kind == "sla_warning":
        return decide_sla_warning(case, item, now, policy)
    if item.kind == "sla_breach":
        return decide_sla_breach(case, item, now, policy)
    if item.kind == "survey_reminder":
        return decide_survey_reminder(case, item, now, policy, links)
    if item.kind == "survey_timeout":
        return decide_survey_timeout(case, item, now, policy)
    if item.kind in PROMISE_TIMERS:
        return decide_promise_timer(case, item, now, policy)
    if item.kind == "silence":
        return decide_silence(case, item, now, policy, outreach)
    return Decision.nothing(case)  # a kind this version does not know


# --- case.routed --------------------------------------------------------------------------


def routing_callback_event(case: Case, generation: int) -> list[Event[Any]]:
    """callback.scheduled for the callback of one routing generation, as stored: a
    redelivery emits the very same event again."""
    callback_id = routing_callback_id(case.id, generation)
    callback = case.callbacks.get(callback_id)
    if callback is None:
        return []
    scheduled = CallbackScheduled(
        case_id=case.id,
        customer_key=case.customer_key,
        occurred_at=callback.scheduled_at,
        callback_id=callback_id,
        due_at=callback.due_at,
        attempt=callback.attempt,
        reason=callback.reason,
    )
    return [new_event(scheduled, source=SOURCE, cause=callback_id, time=callback.scheduled_at)]


def decide_routed(
    case: Case | None,
    routed: CaseRouted,
    now: datetime,
    policy: FollowupPolicy,
    outreach: Outreach,
) -> Decision:
    """case.routed opens a case, re-routes it, assigns it from the queue, links new
    feedback to it, or (a redelivery, an older routing) repeats what was said."""
    meaning = meaning_of_routed(case, routed)
    routing = routed.routing
    generation = routing.reroute_count
    if meaning == "new":
        return _open(routed, now, policy, outreach)
    if case is None:
        # Linked to a case this copy has not stored yet: the consumer loop retries,
        # then dead-letters it for replay.
        return Decision.refuse(None, NotFound(f"feedback linked to unknown case {routed.case_id}"))
    if meaning == "linked":
        if any(f.feedback_id == routed.feedback.feedback_id for f in case.linked_feedback):
            return Decision.nothing(case)
        return _link(Draft(case, now), routed)
    if meaning == "rerouted":
        return _reroute(Draft(case, now), routed, policy, outreach)
    if meaning == "assigned":
        d = Draft(case, now)
        d.case.agent, d.case.queued, d.case.routing = routing.agent, False, routing
        d.log("case.assigned", routing.agent)
        return d.decision()
    # A redelivery, or an older routing: make sure the timed work of the current routing
    # exists (a crash may have come between the steps) and say it again.
    said: list[Event[Any]] = []
    if generation == case.generation:
        said += routing_callback_event(case, generation)
        said += said_on_routing(case, generation)
    timers = timers_of(case, policy)
    if case.status in OPEN_STATUSES:
        timers.append(silence_item(case, policy, outreach))
    return Decision.nothing(case, schedule=tuple(timers), replies=tuple(said))


def _open(
    routed: CaseRouted, now: datetime, policy: FollowupPolicy, outreach: Outreach
) -> Decision:
    """A new case, its timed work, and the acknowledgement that tells the customer what
    happens next and by when."""
    routing = routed.routing
    opened, items = new_case(routed, now, policy)
    d = Draft(opened, now, fresh=True)
    acknowledge(d, policy, outreach)
    return Decision(
        base=None,
        case=d.case,
        replies=(*routing_callback_event(d.case, routing.reroute_count), *d.replies),
        schedule=(*items, *d.schedule),
        measures=(Measure("cases_opened", (routing.priority.value, routing.team)), *d.measures),
    )


def _reroute(d: Draft, routed: CaseRouted, policy: FollowupPolicy, outreach: Outreach) -> Decision:
    """A higher routing generation: new owner, priority and deadlines. An open case gets
    fresh SLA timers, a callback from the new owner and a silence check at its new
    priority; a resolved one keeps waiting for its survey. A case re-routed because its
    resolution deadline passed apologises to the customer with the new one."""
    routing = routed.routing
    generation = routing.reroute_count
    case = d.case
    case.priority, case.team, case.agent = routing.priority, routing.team, routing.agent
    case.queued, case.routing, case.generation = routing.queued, routing, generation
    case.first_response_due, case.resolution_due = (
        routing.first_response_due,
        routing.resolution_due,
    )
    why = routing.reroute_reason or "re-routed"
    d.log("case.rerouted", f"{why}: {routing.priority.value} {routing.team}")
    superseded: list[str] = []
    if d.base.status in OPEN_STATUSES:
        case.sla = sla_clock(routing)
        d.schedule += sla_timers(case.id, case.sla, policy.sla.warning_share)
        callback = routing_callback(
            case.id, routing.priority, routing.routed_at, generation, policy.callbacks, d.now
        )
        superseded = cancel_scheduled_callbacks(case, d.now)
        case.callbacks[callback.callback_id] = callback
        d.schedule.append(callback_item(case.id, callback))
        d.log("callback.scheduled", f"due {callback.due_at.isoformat()}")
        d.schedule.append(silence_item(case, policy, outreach))
        if routing.reroute_reason == "sla_breached" and d.base.sla.resolution.state == "breached":
            apologise(d, policy, outreach)
    d.cancel.append(Cancel(SLA_TIMER_KINDS, generation_below=generation))
    if superseded:
        d.cancel.append(Cancel(("callback",), tuple(superseded)))
    d.replies += routing_callback_event(case, generation)
    return d.decision()


def _link(d: Draft, routed: CaseRouted) -> Decision:
    """A new feedback about this case: kept with the case, priority raised if it is more
    urgent; no new callback."""
    feedback = routed.feedback
    stored = d.case.priority
    raised = higher_priority(stored, routed.routing.priority)
    detail = f"feedback {feedback.feedback_id} via {feedback.channel.value}"
    if raised != stored:
        d.case.priority = raised
        detail += f"; priority {stored.value} -> {raised.value}"
    d.case.linked_feedback.append(
        LinkedFeedback(
            feedback_id=feedback.feedback_id,
            channel=feedback.channel.value,
            received_at=feedback.received_at,
            text=feedback.text,
            root_cause=routed.classification.root_cause,
            urgency=routed.classification.urgency.value,
            linked_at=d.now,
        )
    )
    d.log("feedback.linked", detail)
    return d.decision()
