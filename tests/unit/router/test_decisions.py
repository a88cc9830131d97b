"""The router's decisions, without a database: opening, linking, redelivery, re-routes
after a reopen, an escalation or a breach, queue assignment, the end of a case, and the
at-risk raise. Each takes a case and what happened and returns the case after the change
and the events it emits, or nothing with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.router.decisions import (
    Decision,
    Rerouting,
    decide_assignment,
    decide_link,
    decide_open,
    decide_reroute,
    decide_settle,
    handled_before,
    plan_open,
    plan_reroute,
)
from services.router.domain import (
    AT_RISK_REASON,
    ROUTE_KEY,
    Agent,
    Case,
    RerouteFor,
    breach_reroute,
    escalation_reroute,
    link_rule,
    queue_eligibility,
    reopen_reroute,
)
from services.router.policy import RoutingPolicy
from shared.contracts import (
    Classification,
    CustomerTier,
    Feedback,
    FeedbackClassified,
    Priority,
    SlaBreached,
    SlaKind,
    Urgency,
)
from shared.envelope import derive_id
from tests.support import a_classification, a_customer, a_feedback

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALWAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def a_policy(*, retention: bool = False) -> RoutingPolicy:
    """A front desk that escalates to experts; optionally a retention team that takes
    at-risk customers' new cases one priority higher."""
    matrix = {
        "critical": {"standard": "P1", "premium": "P1", "vip": "P1"},
        "high": {"standard": "P2", "premium": "P2", "vip": "P1"},
        "medium": {"standard": "P3", "premium": "P3", "vip": "P2"},
        "low": {"standard": "P4", "premium": "P4", "vip": "P3"},
    }
    teams = [
        {
            "id": "desk",
            "name": "Front desk",
            "calendar": "always",
            "escalation_team": "experts",
            "escalation_lead": "expert-lead",
            "agents": [
                {"id": f"desk-{i:02d}", "languages": ["en"], "capacity": 2} for i in range(2)
            ],
        },
        {
            "id": "experts",
            "name": "Experts",
            "calendar": "always",
            "agents": [
                {"id": "expert-lead", "languages": ["en"], "capacity": 2},
                {"id": "expert-2", "languages": ["en"], "capacity": 2},
            ],
        },
    ]
    rules: list[dict[str, object]] = [{"name": "everything-to-desk", "when": {}, "team": "desk"}]
    if retention:
        teams.append(
            {
                "id": "retention",
                "name": "Retention",
                "calendar": "always",
                "agents": [{"id": "keeper-1", "languages": ["en"], "capacity": 5}],
            }
        )
        rules.insert(
            0,
            {
                "name": "at-risk-to-retention",
                "when": {"at_risk": True},
                "team": "retention",
                "raise_priority": 1,
            },
        )
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
            "teams": teams,
            "rules": rules,
            "linking": {"window_days": 7},
        }
    )


POLICY = a_policy()


def an_agent(agent_id: str = "desk-00", team: str = "desk", load: int = 1) -> Agent:
    """An agent right after taking a case."""
    return Agent(id=agent_id, team=team, languages=("en",), capacity=2, load=load, available=True)


def classified(
    feedback: Feedback | None = None, classification: Classification | None = None
) -> FeedbackClassified:
    return FeedbackClassified(
        feedback=feedback or a_feedback(), classification=classification or a_classification()
    )


def stored(decision: Decision) -> Case:
    """The case as the store leaves it after applying ``decision``."""
    assert decision.case is not None
    return decision.case.model_copy(update={"rev": decision.case.rev + 1})


def an_open_case(
    data: FeedbackClassified | None = None, agent: Agent | None = None, at: datetime = NOW
) -> Case:
    data = data or classified()
    opening = plan_open(POLICY, data, at_risk=False)
    return stored(decide_open(opening, agent or an_agent(), at, POLICY))


# --- opening --------------------------------------------------------------------------


def test_a_new_case_is_owned_by_the_agent_who_took_it_with_its_deadlines() -> None:
    data = classified(classification=a_classification(urgency=Urgency.HIGH))
    opening = plan_open(POLICY, data, at_risk=False)
    decision = decide_open(opening, an_agent(), NOW, POLICY)
    case = decision.case
    assert case is not None and case.rev == 0  # to insert
    [event] = decision.events
    routing = event.data.routing
    assert event.id == derive_id(f"{case.id}:{ROUTE_KEY}", "case.routed")
    assert (routing.priority, routing.team, routing.agent, routing.queued) == (
        Priority.P2,
        "desk",
        "desk-00",
        False,
    )
    assert routing.first_response_due == NOW + timedelta(hours=4)
    assert "agent desk-00: least loaded available desk agent" in routing.reason
    assert (case.status, case.agent, case.waiting_in, case.generation) == (
        "open",
        "desk-00",
        None,
        0,
    )
    assert case.history is not None and [e.key for e in case.history] == [ROUTE_KEY]


def test_a_new_case_nobody_can_take_waits_in_its_team_queue() -> None:
    opening = plan_open(POLICY, classified(), at_risk=False)
    decision = decide_open(opening, None, NOW, POLICY)
    assert decision.case is not None
    assert (decision.case.waiting_in, decision.case.queued_at) == ("desk", NOW)
    routing = decision.events[0].data.routing
    assert routing.queued and routing.agent is None
    assert "waiting in the team queue" in routing.reason


def test_an_at_risk_customer_s_new_case_goes_to_retention_one_priority_higher() -> None:
    policy = a_policy(retention=True)
    data = classified()
    usual = plan_open(policy, data, at_risk=False)
    risky = plan_open(policy, data, at_risk=True)
    assert (usual.placement.team, usual.placement.priority) == ("desk", Priority.P3)
    assert (risky.placement.team, risky.placement.rule, risky.placement.priority) == (
        "retention",
        "at-risk-to-retention",
        Priority.P2,
    )
    assert risky.eligibility.agent_ids == ("keeper-1",)
    decision = decide_open(risky, an_agent("keeper-1", "retention"), NOW, policy)
    routing = decision.events[0].data.routing
    assert AT_RISK_REASON in routing.reason
    assert "rule at-risk-to-retention raises 1, so P2" in routing.reason


def test_a_redelivered_feedback_says_again_what_it_caused() -> None:
    data = classified()
    case = an_open_case(data)
    again = handled_before(case, data.feedback.feedback_id)
    assert again is not None and not again.changes
    assert case.history is not None
    assert [e.id for e in again.events] == [case.history[0].event_id]
    assert handled_before(None, data.feedback.feedback_id) is None


# --- linking --------------------------------------------------------------------------


def test_the_link_rule_picks_the_most_recent_open_case_of_the_same_cause_in_the_window() -> None:
    customer = a_customer()
    older = an_open_case(classified(a_feedback(customer=customer)), at=NOW - timedelta(days=3))
    newer = an_open_case(classified(a_feedback(customer=customer)), at=NOW - timedelta(days=1))
    closed = an_open_case(classified(a_feedback(customer=customer))).model_copy(
        update={"status": "closed"}
    )
    too_old = an_open_case(classified(a_feedback(customer=customer)), at=NOW - timedelta(days=8))
    other_cause = an_open_case(
        classified(a_feedback(customer=customer), a_classification("billing"))
    )
    repeat = classified(a_feedback("still nothing", customer=customer))
    rule = link_rule(POLICY, repeat)
    assert rule.pick([older, closed, too_old, other_cause, newer]) == newer
    assert rule.pick([closed, too_old, other_cause]) is None
    assert "same customer and root cause delivery as case" in rule.why(newer, POLICY)


def test_a_more_urgent_repeat_links_to_the_case_and_raises_it_one_priority() -> None:
    customer = a_customer()
    case = an_open_case(classified(a_feedback(customer=customer)))
    repeat = classified(
        a_feedback("still nothing!", customer=customer), a_classification(urgency=Urgency.HIGH)
    )
    decision = decide_link(case, repeat, "why", NOW + timedelta(days=1))
    after = decision.case
    assert after is not None and decision.recorded[0].key == f"link:{repeat.feedback.feedback_id}"
    [event] = decision.events
    assert (event.data.case_id, event.data.linked_to) == (case.id, case.id)
    assert event.data.routing.rule == "link:same-customer-and-cause"
    assert (event.data.routing.priority, event.data.routing.agent) == (Priority.P2, "desk-00")
    assert (after.priority, after.urgency) == (Priority.P2, Urgency.HIGH)
    assert after.routing.priority is Priority.P2
    assert after.linked_feedback == (repeat.feedback.feedback_id,)


def test_a_redelivered_link_emits_the_same_event_and_a_closed_case_takes_no_link() -> None:
    customer = a_customer()
    case = an_open_case(classified(a_feedback(customer=customer)))
    repeat = classified(a_feedback("again", customer=customer))
    first = decide_link(case, repeat, "why", NOW)
    again = decide_link(stored(first), repeat, "why", NOW + timedelta(minutes=5))
    assert not again.changes and [e.id for e in again.events] == [e.id for e in first.events]
    closed = case.model_copy(update={"status": "closed"})
    refused = decide_link(closed, repeat, "why", NOW)
    assert not refused.changes and refused.events == []
    assert "closed" in refused.reason


def test_feedback_naming_its_case_links_as_a_related_case_at_the_same_priority() -> None:
    case = an_open_case()
    comment = classified(
        a_feedback("see my case", related_case_id=case.id),
        a_classification("product_quality", Urgency.LOW),
    )
    decision = decide_link(case, comment, f"the feedback continues case {case.id}", NOW)
    routing = decision.events[0].data.routing
    assert (routing.rule, routing.priority) == ("link:related-case", case.priority)
    assert decision.case is not None and decision.case.urgency == case.urgency


# --- re-routes ------------------------------------------------------------------------


def planned(case: Case, cause_for: RerouteFor) -> Rerouting:
    plan = plan_reroute(case, cause_for, POLICY)
    assert isinstance(plan, Rerouting), plan
    return plan


def test_a_reopened_case_goes_to_the_escalation_lead_one_priority_higher_once() -> None:
    resolved = an_open_case().model_copy(update={"status": "resolved"})
    plan = planned(resolved, reopen_reroute(1, "not satisfied"))
    assert (plan.placement.team, plan.placement.priority) == ("experts", Priority.P2)
    assert plan.eligibility.preferred == ("expert-lead",)
    later = NOW + timedelta(hours=2)
    decision = decide_reroute(resolved, plan, an_agent("expert-lead", "experts"), later, POLICY)
    after = decision.case
    assert after is not None
    routing = decision.events[0].data.routing
    assert (routing.reroute_count, routing.reroute_reason, routing.rule) == (
        1,
        "reopened",
        "reroute:reopened",
    )
    assert routing.first_response_due == later + timedelta(hours=4)
    assert "the escalation lead" in routing.reason and "priority P3 raised to P2" in routing.reason
    assert (after.status, after.team, after.agent, after.generation) == (
        "open",
        "experts",
        "expert-lead",
        1,
    )
    # The escalation of the same round is the same re-route: its event again.
    again = plan_reroute(stored(decision), reopen_reroute(1, "not satisfied"), POLICY)
    assert isinstance(again, Decision) and not again.changes
    assert [e.id for e in again.events] == [e.id for e in decision.events]


def test_a_standalone_escalation_moves_an_open_case_but_not_a_resolved_one() -> None:
    case = an_open_case()
    plan = planned(case, escalation_reroute("event-1", "asked for a manager"))
    decision = decide_reroute(case, plan, None, NOW, POLICY)
    assert decision.case is not None and decision.case.waiting_in == "experts"
    assert decision.events[0].data.routing.queued
    resolved = case.model_copy(update={"status": "resolved"})
    refused = plan_reroute(resolved, escalation_reroute("event-2", "again"), POLICY)
    assert isinstance(refused, Decision) and not refused.changes and refused.events == []
    closed = case.model_copy(update={"status": "closed"})
    assert isinstance(plan_reroute(closed, reopen_reroute(1, "x"), POLICY), Decision)


def test_the_previous_agent_keeps_a_case_nobody_else_can_take() -> None:
    case = an_open_case()
    plan = planned(case, escalation_reroute("event-1", "manager"))
    kept = an_agent("desk-00", load=1)
    decision = decide_reroute(case, plan, kept, NOW, POLICY, kept=True)
    assert (
        "agent desk-00 keeps it: no other experts agent" in decision.events[0].data.routing.reason
    )


def breach_of(case: Case, due: datetime, sla: SlaKind = "first_response") -> SlaBreached:
    return SlaBreached(
        case_id=case.id,
        customer_key=case.customer_key,
        occurred_at=due,
        sla=sla,
        due_at=due,
    )


def test_a_breach_routes_again_once_per_deadline_and_a_replaced_deadline_is_stale() -> None:
    case = an_open_case(classified(classification=a_classification(urgency=Urgency.HIGH)))
    due = case.routing.first_response_due
    plan = planned(case, breach_reroute(breach_of(case, due)))
    assert (plan.cause.key, plan.cause.generation) == ("breach:0:first_response", 0)
    decision = decide_reroute(case, plan, an_agent("expert-lead", "experts"), due, POLICY)
    assert decision.events[0].data.routing.priority is Priority.P1
    after = stored(decision)
    again = plan_reroute(after, breach_reroute(breach_of(case, due)), POLICY)
    assert isinstance(again, Decision) and [e.id for e in again.events] == [
        e.id for e in decision.events
    ]
    stale = breach_of(case, case.routing.resolution_due, "resolution")
    ignored = plan_reroute(after, breach_reroute(stale), POLICY)
    assert isinstance(ignored, Decision) and not ignored.changes and ignored.events == []
    assert "of another routing" in ignored.reason
    unknown = plan_reroute(after, breach_reroute(breach_of(case, due + timedelta(days=9))), POLICY)
    assert isinstance(unknown, Decision) and "stale" in unknown.reason


# --- the queue and the end of a case --------------------------------------------------


def test_a_queued_case_is_assigned_through_the_outbox_with_its_deadlines_kept() -> None:
    waiting = stored(decide_open(plan_open(POLICY, classified(), at_risk=False), None, NOW, POLICY))
    waiting = waiting.model_copy(update={"history": None})  # as a queue page reads it
    eligibility = queue_eligibility(waiting, POLICY)
    later = NOW + timedelta(minutes=30)
    decision = decide_assignment(waiting, an_agent("desk-01"), eligibility, later)
    after = decision.case
    assert after is not None and decision.through_outbox
    assert (after.agent, after.waiting_in, after.queued_at) == ("desk-01", None, None)
    [event] = decision.events
    assert decision.recorded[0].key == "assign:0"
    routing = event.data.routing
    assert (routing.agent, routing.queued) == ("desk-01", False)
    assert routing.first_response_due == waiting.routing.first_response_due
    assert "assigned from the queue after 30 min" in routing.reason
    taken = decide_assignment(after, an_agent("desk-00"), eligibility, later)
    assert not taken.changes and taken.events == []


def test_a_resolution_or_closure_applies_once_and_takes_the_case_off_the_queue() -> None:
    waiting = stored(decide_open(plan_open(POLICY, classified(), at_risk=False), None, NOW, POLICY))
    decision = decide_settle(waiting, "event-1", "closed")
    after = decision.case
    assert after is not None and (after.status, after.waiting_in) == ("closed", None)
    assert decision.events == []
    again = decide_settle(stored(decision), "event-1", "closed")
    assert not again.changes


def test_a_vip_customer_s_case_gets_its_tier_s_priority() -> None:
    vip = a_customer(tier=CustomerTier.VIP)
    opening = plan_open(POLICY, classified(a_feedback(customer=vip)), at_risk=False)
    assert opening.placement.priority is Priority.P2
