from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.followup.decisions import Decision, decide_routed
from services.followup.domain import (
    Callback,
    CallbackDecision,
    Cancel,
    Case,
    Clock,
    OutcomeRejected,
    StoredAnswer,
    cancel_scheduled_callbacks,
    closed_summary,
    deadline_met,
    decide_next_callback,
    judge_satisfaction,
    meaning_of_routed,
    new_case,
    new_survey,
    reentry_feedback,
    resolution_callback,
    sla_timers,
    survey_state,
    survey_timers,
    warning_is_useful,
    warning_time,
)
from services.followup.outreach import load_outreach
from services.followup.policy import (
    CallbackPolicy,
    FollowupPolicy,
    RetryBackoff,
    SatisfactionPolicy,
    SurveyPolicy,
)
from shared.contracts import (
    CaseRouted,
    Channel,
    Priority,
    Urgency,
    raise_priority,
)
from shared.envelope import derive_id
from tests.support import a_classification, a_feedback, a_routing

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

OUTREACH = load_outreach()
POLICY = FollowupPolicy(
    callbacks=CallbackPolicy(
        after_routing_hours={Priority.P1: 1, Priority.P2: 4, Priority.P3: 24, Priority.P4: 48},
        after_resolution_hours={Priority.P2: 24},
        max_attempts=3,
        retry=RetryBackoff(first_minutes=30, factor=2, max_minutes=45),
    ),
    survey=SurveyPolicy(reminder_after_hours=24, expires_after_hours=72),
)


def judge(csat: int, expected: int, perceived: int, solved: bool = True):  # type: ignore[no-untyped-def]
    return judge_satisfaction(
        csat=csat,
        expected=expected,
        perceived=perceived,
        solved=solved,
        policy=SatisfactionPolicy(satisfied_ratio=0.9, delighted_ratio=1.2, dissatisfied_csat=2),
    )


@pytest.mark.parametrize(
    ("csat", "expected", "perceived", "solved", "verdict", "closes"),
    [
        (4, 4, 4, True, "satisfied", True),
        (5, 4, 5, True, "delighted", True),
        (3, 5, 3, True, "dissatisfied", False),
        (2, 3, 3, True, "dissatisfied", False),
        (5, 4, 5, False, "delighted", False),
        (3, 5, 5, False, "satisfied", False),
    ],
)
def test_satisfaction_is_perceived_over_expected_and_only_solved_and_satisfied_closes(
    csat: int, expected: int, perceived: int, solved: bool, verdict: str, closes: bool
) -> None:
    result = judge(csat, expected, perceived, solved)
    assert result.ratio == round(perceived / expected, 3)
    assert (result.verdict, result.closes_case) == (verdict, closes)


def routed(priority: Priority = Priority.P2, **routing: Any) -> CaseRouted:
    return CaseRouted(
        case_id="case-1",
        feedback=a_feedback(channel=Channel.SMS, at=NOW, language="zh"),
        classification=a_classification("delivery", Urgency.HIGH),
        routing=a_routing(
            priority,
            at=NOW,
            **{
                "first_response_due": NOW + timedelta(hours=4),
                "resolution_due": NOW + timedelta(hours=24),
                **routing,
            },
        ),
    )


def test_a_new_case_schedules_its_callback_by_priority_and_both_sla_timers() -> None:
    case, items = new_case(routed(), NOW, POLICY)
    assert case.status == "open"
    (callback,) = case.callbacks.values()
    assert callback.due_at == NOW + timedelta(hours=4)
    assert [entry.event for entry in case.timeline] == ["case.routed", "callback.scheduled"]
    assert sorted((i.kind, i.ref, i.due_at) for i in items) == [
        ("callback", callback.callback_id, NOW + timedelta(hours=4)),
        ("sla_breach", "first_response", NOW + timedelta(hours=4)),
        ("sla_breach", "resolution", NOW + timedelta(hours=24)),
        ("sla_warning", "first_response", NOW + timedelta(hours=3, minutes=12)),
        ("sla_warning", "resolution", NOW + timedelta(hours=19, minutes=12)),
    ]
    again, again_items = new_case(routed(), NOW, POLICY)
    assert again.callbacks.keys() == case.callbacks.keys()
    assert [i.id for i in again_items] == [i.id for i in items]


def changed(decision: Decision) -> Case:
    assert decision.refusal is None and decision.case is not None
    return decision.case


def test_the_warning_comes_at_the_configured_share_of_the_time_to_the_deadline() -> None:
    assert warning_time(NOW, NOW + timedelta(hours=10), 0.8) == NOW + timedelta(hours=8)
    assert warning_time(NOW, NOW + timedelta(hours=10), 0.5) == NOW + timedelta(hours=5)
    assert warning_time(NOW, NOW - timedelta(hours=1), 0.8) == NOW


def test_a_warning_after_the_deadline_or_a_second_warning_is_not_given() -> None:
    clock = Clock(due_at=NOW, state="running", warned=False)
    assert warning_is_useful(clock, NOW - timedelta(minutes=1))
    assert not warning_is_useful(clock, NOW)
    warned = clock.model_copy(update={"warned": True})
    assert not warning_is_useful(warned, NOW - timedelta(minutes=1))
    met = clock.model_copy(update={"state": "met"})
    assert not warning_is_useful(met, NOW - timedelta(minutes=1))


def test_a_deadline_is_met_only_in_time_and_never_after_it_was_declared_breached() -> None:
    clock = Clock(due_at=NOW, state="running", warned=False)
    assert deadline_met(clock, NOW)
    assert not deadline_met(clock, NOW + timedelta(milliseconds=1))
    breached = clock.model_copy(update={"state": "breached"})
    assert not deadline_met(breached, NOW - timedelta(hours=1))


def test_only_running_deadlines_get_timers() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    case.sla.first_response.state = "met"
    assert {(i.kind, i.ref) for i in sla_timers("case-1", case.sla, 0.8)} == {
        ("sla_warning", "resolution"),
        ("sla_breach", "resolution"),
    }


def callback(attempt: int = 1) -> Callback:
    case, _ = new_case(routed(), NOW, POLICY)
    (first,) = case.callbacks.values()
    return first.model_copy(update={"attempt": attempt})


def decided(outcome: CallbackDecision | OutcomeRejected) -> CallbackDecision:
    assert isinstance(outcome, CallbackDecision), outcome
    return outcome


def test_no_answer_is_retried_with_growing_capped_backoff_until_the_attempts_run_out() -> None:
    first = decided(
        decide_next_callback(callback(1), "no_answer", now=NOW, policy=POLICY.callbacks)
    )
    assert first.next_callback is not None and not first.gave_up
    assert first.next_callback.attempt == 2
    assert first.next_callback.due_at == NOW + timedelta(minutes=30)
    second = decided(
        decide_next_callback(first.next_callback, "no_answer", now=NOW, policy=POLICY.callbacks)
    )
    assert second.next_callback is not None
    assert second.next_callback.due_at == NOW + timedelta(minutes=45)  # 60, capped
    assert second.next_callback.callback_id != first.next_callback.callback_id
    third = decided(
        decide_next_callback(second.next_callback, "no_answer", now=NOW, policy=POLICY.callbacks)
    )
    assert third.next_callback is None and third.gave_up


def test_a_reschedule_moves_the_call_without_using_up_an_attempt() -> None:
    later = NOW + timedelta(days=1)
    moved = decided(
        decide_next_callback(
            callback(2), "rescheduled", now=NOW, policy=POLICY.callbacks, reschedule_at=later
        )
    )
    assert moved.next_callback is not None
    assert (moved.next_callback.due_at, moved.next_callback.attempt) == (later, 2)
    rejected = decide_next_callback(
        callback(), "rescheduled", now=NOW, policy=POLICY.callbacks, reschedule_at=NOW
    )
    assert isinstance(rejected, OutcomeRejected)


@pytest.mark.parametrize("outcome", ["reached", "wrong_number"])
def test_reached_and_wrong_number_end_the_callback(outcome: Any) -> None:
    decision = decided(decide_next_callback(callback(), outcome, now=NOW, policy=POLICY.callbacks))
    assert decision.next_callback is None and not decision.gave_up


def test_the_return_visit_after_resolution_follows_the_policy_per_priority() -> None:
    visit = resolution_callback("case-1", Priority.P2, NOW, 0, POLICY.callbacks)
    assert visit is not None and visit.due_at == NOW + timedelta(hours=24)
    assert resolution_callback("case-1", Priority.P3, NOW, 0, POLICY.callbacks) is None
    again = resolution_callback("case-1", Priority.P2, NOW, 1, POLICY.callbacks)
    assert again is not None and again.callback_id != visit.callback_id


def test_callbacks_not_yet_due_are_cancelled_and_those_with_the_dialer_stay_open() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    (scheduled_id,) = case.callbacks
    case.callbacks["other"] = case.callbacks[scheduled_id].model_copy(
        update={"callback_id": "other", "status": "due"}
    )
    assert cancel_scheduled_callbacks(case, NOW) == [scheduled_id]
    cancelled, other = case.callbacks[scheduled_id], case.callbacks["other"]
    assert (cancelled.status, cancelled.outcome_at) == ("cancelled", NOW)
    assert (other.status, other.outcome_at) == ("due", None)


def test_case_routed_is_told_apart_new_reroute_assignment_link_and_repeat() -> None:
    first = routed(agent=None, queued=True)
    assert meaning_of_routed(None, first) == "new"
    case, _ = new_case(first, NOW, POLICY)
    assert meaning_of_routed(case, first) == "repeat"
    assert meaning_of_routed(case, routed(agent="agent-li-na")) == "assigned"
    assert meaning_of_routed(case, routed(reroute_count=1)) == "rerouted"
    linked = routed().model_copy(update={"linked_to": "case-1"})
    assert meaning_of_routed(case, linked) == "linked"
    case.agent = "agent-li-na"
    assert meaning_of_routed(case, routed(agent="agent-li-na")) == "repeat"
    case.status = "closed"
    assert meaning_of_routed(case, routed(reroute_count=1)) == "repeat"


def test_a_reroute_replaces_owner_deadlines_timers_and_the_pending_callback() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    (old_callback,) = case.callbacks
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
    change = decide_routed(case, again, later, POLICY, OUTREACH)
    after = changed(change)
    assert (after.priority, after.team, after.agent, after.generation) == (
        "P1",
        "escalations",
        "agent-boss",
        1,
    )
    assert after.sla.first_response.due_at == later + timedelta(hours=1)
    assert after.callbacks[old_callback].status == "cancelled"
    assert Cancel(("callback",), (old_callback,)) in change.cancel
    assert {i.generation for i in change.schedule if i.kind.startswith("sla")} == {1}
    new_callback = next(i for i in change.schedule if i.kind == "callback")
    assert new_callback.due_at == later + timedelta(hours=1)  # P1 calls back within an hour
    assert [e.event for e in after.timeline[len(case.timeline) :]] == [
        "case.rerouted",
        "callback.scheduled",
    ]


def test_a_reroute_of_a_resolved_case_changes_the_owner_but_starts_no_timers() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    case.status = "resolved"
    change = decide_routed(case, routed(reroute_count=1), NOW, POLICY, OUTREACH)
    assert change.schedule == () and changed(change).sla == case.sla


def test_linked_feedback_raises_the_priority_only_when_more_urgent() -> None:
    case, _ = new_case(routed(Priority.P3), NOW, POLICY)
    urgent = routed(Priority.P1).model_copy(update={"linked_to": "case-1"})
    linked = changed(decide_routed(case, urgent, NOW, POLICY, OUTREACH))
    assert linked.priority is Priority.P1
    assert [f.feedback_id for f in linked.linked_feedback] == [urgent.feedback.feedback_id]
    calm = routed(Priority.P4).model_copy(update={"linked_to": "case-1"})
    assert changed(decide_routed(case, calm, NOW, POLICY, OUTREACH)).priority is Priority.P3


def test_escalation_asks_for_one_step_higher_and_p1_stays_p1() -> None:
    assert raise_priority(Priority.P3) is Priority.P2
    assert raise_priority(Priority.P1) is Priority.P1


def test_a_survey_answers_once_before_it_expires_and_only_while_the_case_waits() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    survey = new_survey("case-1", 0, NOW, POLICY)
    case = case.model_copy(update={"status": "resolved", "surveys": [survey]})
    sid = survey.survey_id
    assert survey_state(case, sid, NOW + timedelta(hours=71)) == "open"
    assert survey_state(case, sid, NOW + timedelta(hours=72)) == "expired"
    assert survey_state(case, "nope", NOW) == "unknown"
    assert survey_state(case.model_copy(update={"status": "reopened"}), sid, NOW) == "superseded"
    answered = [survey.model_copy(update={"status": "answered"})]
    assert survey_state(case.model_copy(update={"surveys": answered}), sid, NOW) == "answered"
    remind, timeout = survey_timers("case-1", survey, POLICY)
    assert (remind.kind, remind.due_at) == ("survey_reminder", NOW + timedelta(hours=24))
    assert (timeout.kind, timeout.due_at) == ("survey_timeout", NOW + timedelta(hours=72))


def test_the_survey_comment_re_enters_as_feedback_linked_to_the_case() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    feedback = reentry_feedback(case, survey_id="s-1", comment="还是没到", language=None, now=NOW)
    assert feedback.feedback_id == derive_id("feedback", "survey", "s-1")
    assert feedback.related_case_id == "case-1"
    assert feedback.channel is Channel.SMS and feedback.language == "zh"
    assert feedback.customer_key == case.customer_key
    assert feedback.text == "还是没到"


def test_case_closed_carries_times_sla_flags_and_satisfaction() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    survey = new_survey("case-1", 0, NOW, POLICY).model_copy(
        update={
            "status": "answered",
            "answer": StoredAnswer(
                at=NOW,
                csat=4,
                expected=4,
                perceived=4,
                solved=True,
                ratio=1.0,
                verdict="satisfied",
                via="test",
            ),
        }
    )
    case.first_response_at = NOW + timedelta(hours=1)
    case.resolved_at = NOW + timedelta(hours=30)
    case.reopen_count, case.callbacks_made, case.surveys = 1, 2, [survey]
    case.sla.first_response.state = "met"
    case.sla.resolution.state = "met"
    case.sla_missed.resolution = True  # missed in an earlier routing
    closed = closed_summary(case, outcome="satisfied", closed_at=NOW + timedelta(hours=31))
    assert closed.time_to_first_response_s == 3600
    assert closed.time_to_resolve_s == 30 * 3600
    assert closed.first_response_sla_met is True
    assert closed.resolution_sla_met is False
    assert (closed.csat, closed.ratio, closed.reopen_count, closed.callbacks_made) == (4, 1.0, 1, 2)
    assert closed.channel is Channel.SMS and closed.priority is Priority.P2


def test_a_case_closed_without_an_answer_carries_no_scores() -> None:
    case, _ = new_case(routed(), NOW, POLICY)
    case.surveys = [new_survey("case-1", 0, NOW, POLICY).model_copy(update={"status": "expired"})]
    closed = closed_summary(case, outcome="no_response", closed_at=NOW)
    assert (closed.csat, closed.expected, closed.perceived, closed.ratio) == (None,) * 4
    assert closed.outcome == "no_response"
