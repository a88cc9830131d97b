"""Every decision about a case, without a database: what it changes, emits, schedules,
cancels and counts, and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.followup.decisions import (
    AddNote,
    AnswerSurvey,
    Decision,
    ReportCallback,
    Resolve,
    Respond,
    SurveyAnswer,
    decide_callback_outcome,
    decide_due,
    decide_note,
    decide_resolution,
    decide_response,
    decide_routed,
    decide_survey_answer,
)
from services.followup.domain import (
    PROMISE_TIMERS,
    Cancel,
    Case,
    CaseConflict,
    DueItem,
    NotFound,
    OutcomeRejected,
    SurveyUnavailable,
    routing_callback_id,
)
from services.followup.links import SurveyLinks, SurveyTicket
from services.followup.outreach import load_outreach
from services.followup.policy import CallbackPolicy, FollowupPolicy, RetryBackoff, SurveyPolicy
from shared.contracts import CaseRouted, Channel, Priority, Urgency
from tests.support import a_classification, a_feedback, a_routing

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = FollowupPolicy(
    callbacks=CallbackPolicy(
        after_routing_hours={Priority.P1: 1, Priority.P2: 4, Priority.P3: 24, Priority.P4: 48},
        after_resolution_hours={Priority.P2: 24},
        max_attempts=2,
        retry=RetryBackoff(first_minutes=30, factor=2, max_minutes=45),
    ),
    survey=SurveyPolicy(reminder_after_hours=24, expires_after_hours=72),
)
OUTREACH = load_outreach()
LINKS = SurveyLinks("unit-test-survey-secret-0123456789", public_url="http://cx.test")
AGENT = "agent-wang-fang"


def routed(priority: Priority = Priority.P2, **routing: Any) -> CaseRouted:
    fields = {
        "first_response_due": NOW + timedelta(hours=4),
        "resolution_due": NOW + timedelta(hours=24),
        **routing,
    }
    return CaseRouted(
        case_id="case-1",
        feedback=a_feedback(channel=Channel.SMS, at=NOW, language="zh"),
        classification=a_classification("delivery", Urgency.HIGH),
        routing=a_routing(priority, at=NOW, **fields),
    )


def written(decision: Decision) -> Case:
    """The case a decision writes (it must not be a refusal)."""
    assert decision.refusal is None, decision.refusal
    assert decision.case is not None
    return decision.case


def names(decision: Decision) -> list[str]:
    return [event.name for event in decision.events]


def opened(priority: Priority = Priority.P2, **routing: Any) -> Case:
    return written(decide_routed(None, routed(priority, **routing), NOW, POLICY, OUTREACH))


def respond(case: Case, at: datetime) -> Decision:
    return decide_response(case, Respond(AGENT, "on it", "tool"), at, POLICY, OUTREACH)


def resolve(case: Case, at: datetime) -> Decision:
    return decide_resolution(
        case, Resolve(AGENT, "re-sent", "Friday", "tool"), at, POLICY, LINKS, OUTREACH
    )


def resolved(priority: Priority = Priority.P2) -> Case:
    return written(resolve(opened(priority), NOW + timedelta(hours=1)))


def answer(case: Case, at: datetime, **fields: Any) -> Decision:
    values: dict[str, Any] = {"csat": 4, "expected": 4, "perceived": 4, "solved": True}
    values |= fields
    command = AnswerSurvey(
        SurveyAnswer(**{k: v for k, v in values.items() if k != "survey_id"}),
        via="test",
        survey_id=values.get("survey_id"),
    )
    return decide_survey_answer(case, command, at, POLICY, OUTREACH)


def report(case: Case, callback_id: str, outcome: Any, at: datetime, **fields: Any) -> Decision:
    return decide_callback_outcome(
        case, ReportCallback(callback_id, outcome, "dialer", **fields), at, POLICY, OUTREACH
    )


def fire(case: Case, kind: Any, ref: str, at: datetime, generation: int = 0) -> Decision:
    return decide_due(
        case, DueItem(case.id, kind, ref, at, generation), at, POLICY, LINKS, OUTREACH
    )


FIRST_CALLBACK = routing_callback_id("case-1", 0)


# --- responses and notes --------------------------------------------------------------


def test_the_first_response_in_time_meets_its_deadline_and_stops_its_timers() -> None:
    case = opened()
    decision = respond(case, NOW + timedelta(hours=1))
    after = written(decision)
    assert names(decision) == ["case.first_response"]
    assert decision.events[0].data.within_sla is True
    assert after.first_response_at == NOW + timedelta(hours=1)
    assert after.sla.first_response.state == "met"
    assert [r.message for r in after.responses] == ["on it"]
    assert decision.cancel[0] == Cancel(("sla_warning", "sla_breach"), ("first_response",), 0)
    # The customer heard from us: the silence check moves on.
    assert decision.cancel[1:] == (Cancel(("silence",), (NOW.isoformat(),)),)
    assert [(m.metric, m.labels) for m in decision.measures] == [
        ("sla_met", ("logistics", "first_response", "P2"))
    ]
    assert case.responses == [] and case.sla.first_response.state == "running"  # untouched


def test_a_second_response_is_only_a_timeline_entry() -> None:
    once = written(respond(opened(), NOW + timedelta(hours=1)))
    decision = respond(once, NOW + timedelta(hours=2))
    after = written(decision)
    assert decision.events == ()
    assert [c.kinds for c in decision.cancel] == [("silence",)]
    assert after.timeline[-1].event == "case.response" and len(after.responses) == 2


def test_a_response_after_a_declared_breach_is_recorded_late_and_not_counted_again() -> None:
    case = opened()
    breached = written(fire(case, "sla_breach", "first_response", NOW + timedelta(hours=4)))
    decision = respond(breached, NOW + timedelta(hours=5))
    assert decision.events[0].data.within_sla is False
    assert decision.measures == ()
    assert [c.kinds for c in decision.cancel] == [("silence",)]
    assert written(decision).sla_missed.first_response is True


def test_a_closed_case_refuses_responses() -> None:
    closed = written(answer(resolved(), NOW + timedelta(hours=2)))
    decision = respond(closed, NOW + timedelta(hours=3))
    assert decision.refusal == CaseConflict("case case-1 is closed") and decision.case is None


def test_a_note_is_kept_and_noted_on_the_timeline() -> None:
    decision = decide_note(opened(), AddNote(AGENT, "asked depot", "tool"), NOW, POLICY)
    after = written(decision)
    assert [n.text for n in after.notes] == ["asked depot"]
    assert (after.timeline[-1].event, after.timeline[-1].detail) == ("case.note", f"by {AGENT}")
    assert decision.events == ()


# --- resolution -----------------------------------------------------------------------


def test_a_resolution_asks_for_the_survey_and_schedules_the_return_visit() -> None:
    case = opened()
    at = NOW + timedelta(hours=2)
    decision = resolve(case, at)
    after = written(decision)
    assert names(decision) == [
        "case.first_response",
        "case.resolved",
        "survey.requested",
        "callback.scheduled",
    ]
    assert [e.event for e in after.timeline[len(case.timeline) :]] == names(decision)
    (survey,) = after.surveys
    request = decision.events[2].data
    assert request.url == LINKS.url(SurveyTicket("case-1", survey.survey_id, survey.expires_at))
    assert request.expires_at == at + timedelta(hours=72)
    assert (after.status, after.resolved_at) == ("resolved", at)
    assert after.sla.resolution.state == "met" and decision.events[1].data.within_sla is True
    assert after.callbacks[FIRST_CALLBACK].status == "cancelled"
    assert sorted((i.kind, i.due_at) for i in decision.schedule) == [
        ("callback", at + timedelta(hours=24)),
        ("survey_reminder", at + timedelta(hours=24)),
        ("survey_timeout", at + timedelta(hours=72)),
    ]
    assert Cancel(("callback",), (FIRST_CALLBACK,)) in decision.cancel
    assert {m.metric for m in decision.measures} >= {
        "cases_resolved",
        "resolution_seconds",
        "surveys_requested",
    }


def test_a_priority_without_a_return_visit_gets_none() -> None:
    decision = resolve(opened(Priority.P3), NOW + timedelta(hours=1))
    assert "callback.scheduled" not in names(decision)


def test_only_open_or_reopened_cases_can_be_resolved() -> None:
    decision = resolve(resolved(), NOW + timedelta(hours=2))
    assert decision.refusal == CaseConflict(
        "case case-1 is resolved; only open or reopened cases can be resolved"
    )


# --- callback outcomes ----------------------------------------------------------------


def test_no_answer_schedules_the_next_try_and_counts_the_call() -> None:
    at = NOW + timedelta(hours=4)
    decision = report(opened(), FIRST_CALLBACK, "no_answer", at)
    after = written(decision)
    done = after.callbacks[FIRST_CALLBACK]
    assert (done.status, done.outcome, done.outcome_by) == ("done", "no_answer", "dialer")
    assert done.next_callback_id is not None
    following = after.callbacks[done.next_callback_id]
    assert (following.attempt, following.due_at) == (2, at + timedelta(minutes=30))
    assert names(decision) == ["callback.scheduled"]
    assert after.callbacks_made == 1
    assert decision.cancel == (Cancel(("callback",), (FIRST_CALLBACK,)),)
    assert [(i.kind, i.ref) for i in decision.schedule] == [("callback", following.callback_id)]


def test_no_answer_on_the_last_attempt_gives_up() -> None:
    at = NOW + timedelta(hours=4)
    first = written(report(opened(), FIRST_CALLBACK, "no_answer", at))
    retry = first.callbacks[FIRST_CALLBACK].next_callback_id
    assert retry is not None
    decision = report(first, retry, "no_answer", at + timedelta(minutes=30))
    assert written(decision).timeline[-1].event == "callback.given_up"
    assert decision.events == () and decision.schedule == ()


def test_the_same_outcome_again_changes_nothing_and_another_one_conflicts() -> None:
    once = written(report(opened(), FIRST_CALLBACK, "reached", NOW))
    again = report(once, FIRST_CALLBACK, "reached", NOW)
    assert again.refusal is None and not again.writes
    other = report(once, FIRST_CALLBACK, "no_answer", NOW)
    assert other.refusal == CaseConflict(f"callback {FIRST_CALLBACK} already has outcome reached")


def test_outcomes_of_unknown_or_cancelled_callbacks_and_bad_reschedules_are_refused() -> None:
    case = opened()
    assert report(case, "nope", "reached", NOW).refusal == NotFound("no callback nope")
    assert report(case, FIRST_CALLBACK, "rescheduled", NOW).refusal == OutcomeRejected(
        "a rescheduled callback needs reschedule_at in the future"
    )
    cancelled = resolved(Priority.P3)
    assert report(cancelled, FIRST_CALLBACK, "reached", NOW).refusal == CaseConflict(
        f"callback {FIRST_CALLBACK} was cancelled"
    )


def test_a_reschedule_moves_the_call_to_the_time_asked_for() -> None:
    later = NOW + timedelta(days=1)
    decision = report(opened(), FIRST_CALLBACK, "rescheduled", NOW, reschedule_at=later)
    after = written(decision)
    moved_id = after.callbacks[FIRST_CALLBACK].next_callback_id
    assert moved_id is not None
    assert (after.callbacks[moved_id].due_at, after.callbacks[moved_id].attempt) == (later, 1)


# --- survey answers -------------------------------------------------------------------


def test_a_satisfied_answer_closes_the_case_and_cancels_everything_left() -> None:
    case = resolved()
    decision = answer(case, NOW + timedelta(hours=2), csat=5, perceived=5)
    after = written(decision)
    assert names(decision) == ["survey.answered", "case.closed"]
    assert (after.status, after.outcome) == ("closed", "delighted")
    assert after.surveys[0].status == "answered" and after.surveys[0].answer is not None
    closed = decision.events[1].data
    assert (closed.csat, closed.expected, closed.perceived, closed.ratio) == (5, 4, 5, 1.25)
    # Everything but the promises' timers: a promise outlives the survey.
    (cancel,) = [c for c in decision.cancel if c.refs is None]
    assert cancel.kinds is not None and "callback" in cancel.kinds
    assert not set(cancel.kinds) & set(PROMISE_TIMERS)
    assert all(cb.status != "scheduled" for cb in after.callbacks.values())


def test_a_dissatisfied_answer_reopens_escalates_and_the_comment_comes_back() -> None:
    case = resolved()
    decision = answer(
        case, NOW + timedelta(hours=2), csat=2, expected=5, perceived=2, comment=" 还是没到 "
    )
    after = written(decision)
    assert names(decision) == [
        "survey.answered",
        "case.reopened",
        "case.escalated",
        "feedback.received",
    ]
    assert (after.status, after.reopen_count, after.resolved_at) == ("reopened", 1, None)
    escalated, feedback = decision.events[2].data, decision.events[3].data.feedback
    assert escalated.priority is Priority.P1 and escalated.reopen_count == 1
    assert feedback.text == "还是没到" and feedback.related_case_id == "case-1"
    sid = case.surveys[0].survey_id
    assert Cancel(("survey_reminder", "survey_timeout"), (sid,)) in decision.cancel
    assert after.priority is Priority.P2  # the router re-routes at the higher priority


def test_an_unsolved_problem_reopens_even_a_happy_customer_without_a_comment() -> None:
    decision = answer(resolved(), NOW + timedelta(hours=2), csat=5, perceived=5, solved=False)
    assert names(decision) == ["survey.answered", "case.reopened", "case.escalated"]
    assert decision.events[1].data.reason == "problem not solved"


def test_a_survey_answers_once_before_it_expires_and_only_while_the_case_waits() -> None:
    case = resolved()
    later = NOW + timedelta(hours=2)
    answered = written(answer(case, later))
    assert answer(answered, later).refusal == SurveyUnavailable("answered")
    expired = answer(case, NOW + timedelta(hours=73))
    assert expired.refusal == SurveyUnavailable("expired")
    assert answer(opened(), later).refusal == SurveyUnavailable("unknown")
    assert answer(case, later, survey_id="nope").refusal == SurveyUnavailable("unknown")
    reopened = written(answer(case, later, csat=1))
    sid = case.surveys[0].survey_id
    # Answered (and so reopened): the same survey cannot be answered again.
    assert answer(reopened, later, survey_id=sid).refusal == SurveyUnavailable("answered")
    assert SurveyUnavailable("superseded").message == "the case no longer waits for this survey"


# --- timers ---------------------------------------------------------------------------


def test_a_due_callback_goes_to_the_dialer_once() -> None:
    case = opened()
    at = NOW + timedelta(hours=4)
    decision = fire(case, "callback", FIRST_CALLBACK, at)
    after = written(decision)
    assert names(decision) == ["callback.due"]
    assert after.callbacks[FIRST_CALLBACK].status == "due"
    assert not fire(after, "callback", FIRST_CALLBACK, at).writes


def test_a_routing_callback_of_a_resolved_case_is_not_due_any_more() -> None:
    case = opened()
    case.status = "resolved"
    assert not fire(case, "callback", FIRST_CALLBACK, NOW + timedelta(hours=4)).writes


def test_the_sla_warning_comes_once_and_only_before_the_deadline() -> None:
    case = opened()
    at = NOW + timedelta(hours=3, minutes=12)
    decision = fire(case, "sla_warning", "first_response", at)
    assert names(decision) == ["sla.warning"]
    assert written(decision).sla.first_response.warned is True
    assert [m.metric for m in decision.measures] == ["sla_warnings"]
    assert not fire(written(decision), "sla_warning", "first_response", at).writes
    assert not fire(case, "sla_warning", "first_response", NOW + timedelta(hours=4)).writes
    assert not fire(case, "sla_warning", "first_response", at, generation=1).writes


def test_the_breach_comes_at_the_deadline_and_is_remembered_across_routings() -> None:
    case = opened()
    assert not fire(case, "sla_breach", "resolution", NOW + timedelta(hours=23)).writes
    decision = fire(case, "sla_breach", "resolution", NOW + timedelta(hours=24))
    after = written(decision)
    assert names(decision) == ["sla.breached"]
    assert after.sla.resolution.state == "breached" and after.sla_missed.resolution is True
    assert [m.metric for m in decision.measures] == ["sla_breaches"]


def test_the_survey_is_reminded_once_with_the_same_link() -> None:
    case = resolved()
    sid = case.surveys[0].survey_id
    at = NOW + timedelta(hours=25)
    decision = fire(case, "survey_reminder", sid, at)
    assert names(decision) == ["survey.requested"]
    request = decision.events[0].data
    assert request.reminder is True
    assert request.url == LINKS.url(SurveyTicket("case-1", sid, case.surveys[0].expires_at))
    after = written(decision)
    assert after.timeline[-1].event == "survey.reminded"
    assert not fire(after, "survey_reminder", sid, at).writes


def test_an_unanswered_survey_expires_and_closes_the_case_with_no_response() -> None:
    case = resolved()
    sid = case.surveys[0].survey_id
    assert not fire(case, "survey_timeout", sid, NOW + timedelta(hours=72)).writes
    decision = fire(case, "survey_timeout", sid, NOW + timedelta(hours=73))
    after = written(decision)
    assert names(decision) == ["case.closed"]
    assert decision.events[0].data.outcome == "no_response"
    assert (after.status, after.surveys[0].status) == ("closed", "expired")
    assert [e.event for e in after.timeline[-2:]] == ["survey.expired", "case.closed"]


# --- case.routed ----------------------------------------------------------------------


def test_a_new_case_is_opened_with_its_timers_and_its_callback_announced() -> None:
    decision = decide_routed(None, routed(), NOW, POLICY, OUTREACH)
    case = written(decision)
    assert decision.base is None and decision.writes
    assert sorted(i.kind for i in decision.schedule) == [
        "callback",
        "silence",
        "sla_breach",
        "sla_breach",
        "sla_warning",
        "sla_warning",
    ]
    reply, ack = decision.replies
    assert reply.name == "callback.scheduled" and reply.data.callback_id == FIRST_CALLBACK
    assert ack.name == "customer.notify" and ack.data.kind == "acknowledgement"
    assert decision.events == () and case.status == "open"


def test_a_redelivery_repeats_the_callback_and_restores_the_timers_without_a_change() -> None:
    case = opened()
    decision = decide_routed(case, routed(), NOW + timedelta(minutes=5), POLICY, OUTREACH)
    assert not decision.writes
    first = decide_routed(None, routed(), NOW, POLICY, OUTREACH)
    assert [e.id for e in decision.replies] == [e.id for e in first.replies]
    assert {i.id for i in decision.schedule} == {i.id for i in first.schedule}


def test_a_reroute_replaces_owner_deadlines_and_the_pending_callback() -> None:
    case = opened()
    later = NOW + timedelta(hours=5)
    again = routed(
        Priority.P1,
        reroute_count=1,
        reroute_reason="sla_breached",
        team="escalations",
        agent="agent-boss",
        routed_at=later,
        first_response_due=later + timedelta(hours=1),
        resolution_due=later + timedelta(hours=8),
    )
    decision = decide_routed(case, again, later, POLICY, OUTREACH)
    after = written(decision)
    assert (after.priority, after.team, after.generation) == (Priority.P1, "escalations", 1)
    assert after.callbacks[FIRST_CALLBACK].status == "cancelled"
    (reply,) = decision.replies
    assert reply.data.callback_id == routing_callback_id("case-1", 1)
    assert reply.data.due_at == later + timedelta(hours=1)
    assert Cancel(("sla_warning", "sla_breach"), generation_below=1) in decision.cancel
    assert Cancel(("callback",), (FIRST_CALLBACK,)) in decision.cancel


def test_an_assignment_from_the_queue_sets_the_agent() -> None:
    case = opened(agent=None, queued=True)
    decision = decide_routed(case, routed(agent="agent-emma-jones"), NOW, POLICY, OUTREACH)
    after = written(decision)
    assert (after.agent, after.queued) == ("agent-emma-jones", False)
    assert after.timeline[-1].event == "case.assigned"
    assert decision.replies == () and decision.schedule == ()


def test_linked_feedback_is_kept_once_and_raises_the_priority() -> None:
    case = opened(Priority.P3)
    urgent = routed(Priority.P1).model_copy(update={"linked_to": "case-1"})
    linked = written(decide_routed(case, urgent, NOW, POLICY, OUTREACH))
    assert linked.priority is Priority.P1
    assert [f.feedback_id for f in linked.linked_feedback] == [urgent.feedback.feedback_id]
    assert len(linked.callbacks) == 1
    assert not decide_routed(linked, urgent, NOW, POLICY, OUTREACH).writes


def test_feedback_linked_to_a_case_not_stored_yet_is_refused() -> None:
    linked = routed().model_copy(update={"linked_to": "case-1"})
    decision = decide_routed(None, linked, NOW, POLICY, OUTREACH)
    assert decision.refusal == NotFound("feedback linked to unknown case case-1")


@pytest.mark.parametrize("kind", ["sla_warning", "sla_breach", "survey_timeout", "callback"])
def test_timers_of_a_closed_case_do_nothing(kind: Any) -> None:
    closed = written(answer(resolved(), NOW + timedelta(hours=2)))
    ref = {"callback": FIRST_CALLBACK, "survey_timeout": closed.surveys[0].survey_id}
    assert not fire(closed, kind, ref.get(kind, "resolution"), NOW + timedelta(days=9)).writes
