"""Routing decisions: priority matrix, rules, skills, deadlines, re-routes and links, and
the customers' standing from customer.signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from services.router.domain import (
    case_id_for,
    deadlines,
    eligible_agents,
    escalation_lead,
    least_loaded,
    link_routing,
    place,
    place_reroute,
    rule_matches,
    standing_from_signal,
)
from services.router.policy import RoutingPolicy, Rule, load_policy
from shared.contracts import (
    Channel,
    Classification,
    Customer,
    CustomerAtRisk,
    CustomerRecovered,
    CustomerTier,
    ExpectedOutcome,
    Feedback,
    Priority,
    RootCause,
    ScoreReason,
    Urgency,
    priority_rank,
    raise_priority,
)
from shared.envelope import derive_id
from tests.support import a_classification, a_feedback, a_routing

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 2 March 2026, 10:00 in Shanghai: an ordinary working morning.
MONDAY_10AM = datetime(2026, 3, 2, 10, tzinfo=SHANGHAI).astimezone(UTC)
POLICY = load_policy()


def case(
    cause: RootCause,
    urgency: Urgency,
    *,
    tier: CustomerTier = CustomerTier.STANDARD,
    channel: Channel = Channel.WEB,
    language: str = "en",
    needs_review: bool = False,
) -> tuple[Feedback, Classification]:
    feedback = a_feedback(
        customer=Customer(id="C-1", tier=tier), channel=channel, language=language
    )
    classification = a_classification(
        cause, urgency, needs_review=needs_review, confidence=0.3 if needs_review else 0.8
    )
    return feedback, classification


@pytest.mark.parametrize(
    ("urgency", "tier", "priority"),
    [
        (Urgency.CRITICAL, CustomerTier.STANDARD, Priority.P1),
        (Urgency.HIGH, CustomerTier.STANDARD, Priority.P2),
        (Urgency.HIGH, CustomerTier.VIP, Priority.P1),
        (Urgency.MEDIUM, CustomerTier.STANDARD, Priority.P3),
        (Urgency.MEDIUM, CustomerTier.PREMIUM, Priority.P3),
        (Urgency.MEDIUM, CustomerTier.VIP, Priority.P2),
        (Urgency.LOW, CustomerTier.STANDARD, Priority.P4),
        (Urgency.LOW, CustomerTier.VIP, Priority.P3),
    ],
)
def test_priority_comes_from_the_urgency_and_tier_matrix(
    urgency: Urgency, tier: CustomerTier, priority: Priority
) -> None:
    placement = place(POLICY, *case("billing", urgency, tier=tier))
    assert placement.priority is priority
    assert f"urgency {urgency.value} for a {tier.value} customer" in placement.reason


def test_a_public_channel_raises_the_priority_and_says_so() -> None:
    placement = place(POLICY, *case("delivery", Urgency.MEDIUM, channel=Channel.SOCIAL))
    assert placement.priority is Priority.P2
    assert "public channel social raises 1" in placement.reason


@pytest.mark.parametrize(
    ("cause", "urgency", "needs_review", "team", "rule"),
    [
        ("delivery", Urgency.MEDIUM, False, "logistics", "delivery"),
        ("billing", Urgency.LOW, False, "billing", "billing"),
        ("policy", Urgency.LOW, False, "billing", "billing"),
        ("delivery", Urgency.CRITICAL, False, "escalations", "critical-to-escalations"),
        ("delivery", Urgency.MEDIUM, True, "triage", "unsure-to-triage"),
        ("other", Urgency.LOW, False, "triage", "fallback"),
    ],
)
def test_the_first_matching_rule_picks_the_team_and_is_named(
    cause: RootCause, urgency: Urgency, needs_review: bool, team: str, rule: str
) -> None:
    placement = place(POLICY, *case(cause, urgency, needs_review=needs_review))
    assert (placement.team, placement.rule) == (team, rule)
    assert f"rule {rule} sends it to {team}" in placement.reason


def test_deadlines_are_counted_in_the_team_business_hours() -> None:
    first, resolution = deadlines(POLICY, "billing", Priority.P2, MONDAY_10AM)
    # 4 business hours from 10:00 with lunch 12-13 is 15:00; 24 hours is three working
    # days of eight hours: Thursday 10:00.
    assert first == datetime(2026, 3, 2, 15, tzinfo=SHANGHAI)
    assert resolution == datetime(2026, 3, 5, 10, tzinfo=SHANGHAI)


def test_a_round_the_clock_team_counts_elapsed_hours() -> None:
    friday_night = datetime(2026, 3, 6, 23, tzinfo=SHANGHAI)
    first, resolution = deadlines(POLICY, "escalations", Priority.P1, friday_night)
    assert first - friday_night == timedelta(hours=1)
    assert resolution - friday_night == timedelta(hours=8)


def test_priority_cannot_rise_above_p1_or_fall_below_p4() -> None:
    assert raise_priority(Priority.P2, 5) is Priority.P1
    assert raise_priority(Priority.P4, 0) is Priority.P4
    assert raise_priority(Priority.P3, -3) is Priority.P4
    assert [priority_rank(p) for p in Priority] == [0, 1, 2, 3]


def test_agents_whose_language_and_causes_match_are_eligible() -> None:
    chinese = eligible_agents(POLICY, "service", "zh", "staff_attitude")
    assert chinese.agent_ids == ("agent-chen-jie",)
    communication = eligible_agents(POLICY, "service", "zh", "communication")
    assert communication.agent_ids == ("agent-sun-li",)
    english = eligible_agents(POLICY, "service", "en", "after_sales")
    assert english.agent_ids == ("agent-tom-baker", "agent-sun-li")


def test_language_alone_decides_when_nobody_handles_the_cause() -> None:
    eligibility = eligible_agents(POLICY, "service", "zh", "billing")
    assert eligibility.agent_ids == ("agent-chen-jie", "agent-sun-li")
    assert "nobody handles billing" in eligibility.note


def test_every_agent_is_eligible_when_nobody_speaks_the_language() -> None:
    eligibility = eligible_agents(POLICY, "logistics", "fr", "delivery")
    assert eligibility.agent_ids == ("agent-wang-fang", "agent-emma-jones")
    assert "nobody speaks fr" in eligibility.note


def test_excluded_agents_are_not_eligible_and_the_lead_comes_first() -> None:
    eligibility = eligible_agents(
        POLICY,
        "escalations",
        "en",
        "delivery",
        exclude=("agent-priya-shah",),
        preferred=escalation_lead(POLICY, "escalations"),
    )
    assert eligibility.agent_ids == ("agent-liu-yang",)
    assert eligibility.preferred == ("agent-liu-yang",)


def test_the_least_loaded_agent_is_chosen_and_ties_depend_only_on_the_case() -> None:
    assert least_loaded({"a": 3, "b": 1, "c": 2}, "case-1") == "b"
    tied = {"a": 1, "b": 1, "c": 1, "d": 5}
    picks = {least_loaded(tied, f"case-{i}") for i in range(50)}
    assert picks == {"a", "b", "c"}
    assert least_loaded(tied, "case-7") == least_loaded(dict(reversed(tied.items())), "case-7")


@given(
    agents=st.integers(1, 12),
    start=st.lists(st.integers(0, 3), min_size=12, max_size=12),
    cases=st.integers(0, 300),
)
def test_choosing_the_least_loaded_agent_evens_out_the_loads(
    agents: int, start: list[int], cases: int
) -> None:
    loads = {f"agent-{i}": start[i] for i in range(agents)}
    for n in range(cases):
        loads[least_loaded(loads, f"case-{n}")] += 1
    if cases >= sum(max(start[:agents]) - load for load in start[:agents]):
        assert max(loads.values()) - min(loads.values()) <= 1


def test_a_reroute_raises_priority_one_step_and_goes_to_the_escalation_team() -> None:
    current = a_routing(Priority.P3, team="logistics")
    placement = place_reroute(POLICY, current, "reopened", "round 1: not solved")
    assert (placement.priority, placement.team, placement.rule) == (
        Priority.P2,
        "escalations",
        "reroute:reopened",
    )
    assert "priority P3 raised to P2" in placement.reason
    assert "team logistics escalates to escalations" in placement.reason


def test_a_reroute_of_p1_stays_p1_and_a_team_without_escalation_keeps_the_case() -> None:
    current = a_routing(Priority.P1, team="escalations", agent="agent-priya-shah")
    placement = place_reroute(POLICY, current, "sla_breached", "first response missed")
    assert (placement.priority, placement.team) == (Priority.P1, "escalations")
    assert "priority stays P1" in placement.reason
    assert "sla breached (first response missed)" in placement.reason


def test_linked_feedback_more_urgent_than_the_case_raises_its_priority_one_step() -> None:
    current = a_routing(Priority.P3)
    link = link_routing(current, Urgency.MEDIUM, a_classification(urgency=Urgency.HIGH), "why")
    assert link.raised and link.routing.priority is Priority.P2
    assert link.routing.reroute_count == current.reroute_count
    assert "urgency high above medium raises P3 to P2" in link.reason


def test_linked_feedback_no_more_urgent_leaves_the_priority() -> None:
    current = a_routing(Priority.P3)
    link = link_routing(current, Urgency.HIGH, a_classification(urgency=Urgency.HIGH), "why")
    assert not link.raised and link.routing == current


def test_a_new_case_id_is_derived_from_the_feedback_id() -> None:
    assert case_id_for("f-1") == derive_id("case", "f-1") == case_id_for("f-1")


# --- customers at risk (customer.signals) ---------------------------------------------


def with_rules(*rules: dict[str, object]) -> RoutingPolicy:
    """The shipped policy with these rules before a catch-all to triage."""
    data = POLICY.model_dump(mode="json")
    data["rules"] = [*rules, {"name": "fallback", "when": {}, "team": "triage"}]
    return RoutingPolicy.model_validate(data)


@pytest.mark.parametrize(
    ("condition", "at_risk", "matches"),
    [
        (True, True, True),
        (True, False, False),
        (False, True, False),
        (False, False, True),
        (None, True, True),
        (None, False, True),
    ],
)
def test_an_at_risk_condition_matches_only_customers_of_that_standing(
    condition: bool | None, at_risk: bool, matches: bool
) -> None:
    rule = Rule.model_validate({"name": "r", "when": {"at_risk": condition}, "team": "triage"})
    assert rule_matches(rule, *case("billing", Urgency.LOW), at_risk=at_risk) is matches


def test_the_shipped_policy_sends_an_at_risk_customer_to_retention_one_priority_higher() -> None:
    feedback, classification = case("delivery", Urgency.MEDIUM)
    usual = place(POLICY, feedback, classification)
    at_risk = place(POLICY, feedback, classification, at_risk=True)
    assert (usual.team, usual.rule, usual.priority) == ("logistics", "delivery", Priority.P3)
    assert (at_risk.team, at_risk.rule, at_risk.priority) == (
        "retention",
        "at-risk-to-retention",
        Priority.P2,
    )
    assert at_risk.reason == (
        "priority P2: urgency medium for a standard customer gives P3, rule "
        "at-risk-to-retention raises 1, so P2; customer at risk (insights' health score): "
        "rule at-risk-to-retention sends it to retention"
    )
    assert "at risk" not in usual.reason


def test_an_at_risk_customer_unsure_classification_goes_to_retention_not_triage() -> None:
    placement = place(POLICY, *case("delivery", Urgency.LOW, needs_review=True), at_risk=True)
    assert (placement.team, placement.priority) == ("retention", Priority.P3)


def test_a_critical_complaint_of_an_at_risk_customer_still_goes_to_escalations_and_says_so() -> (
    None
):
    placement = place(POLICY, *case("billing", Urgency.CRITICAL), at_risk=True)
    assert (placement.team, placement.rule, placement.priority) == (
        "escalations",
        "critical-to-escalations",
        Priority.P1,
    )
    assert placement.reason.endswith(
        "rule critical-to-escalations sends it to escalations; customer at risk (insights' "
        "health score)"
    )
    assert "raises" not in placement.reason


@pytest.mark.parametrize(
    ("urgency", "tier", "steps", "priority"),
    [
        (Urgency.LOW, CustomerTier.STANDARD, 0, Priority.P4),
        (Urgency.LOW, CustomerTier.STANDARD, 1, Priority.P3),
        (Urgency.LOW, CustomerTier.STANDARD, 2, Priority.P2),
        (Urgency.LOW, CustomerTier.STANDARD, 3, Priority.P1),
        (Urgency.LOW, CustomerTier.STANDARD, 9, Priority.P1),
        (Urgency.HIGH, CustomerTier.VIP, 1, Priority.P1),
    ],
)
def test_a_rule_raises_the_priority_by_its_steps_and_never_past_p1(
    urgency: Urgency, tier: CustomerTier, steps: int, priority: Priority
) -> None:
    policy = with_rules({"name": "loud", "when": {}, "team": "billing", "raise_priority": steps})
    placement = place(policy, *case("billing", urgency, tier=tier))
    assert placement.priority is priority
    assert (f"rule loud raises {steps}" in placement.reason) is (steps > 0)
    # "so P.." only when the priority moved off the matrix cell: P1 raised stays P1.
    moved = priority is not POLICY.priority.matrix[urgency][tier]
    assert (f"so {priority.value}" in placement.reason) is moved


def test_the_rule_raise_adds_to_the_raise_by_channel() -> None:
    policy = with_rules(
        {"name": "kept", "when": {"at_risk": True}, "team": "billing", "raise_priority": 1}
    )
    placement = place(policy, *case("billing", Urgency.LOW, channel=Channel.SOCIAL), at_risk=True)
    assert placement.priority is Priority.P2
    assert "gives P4, public channel social raises 1, rule kept raises 1, so P2" in placement.reason


def test_the_shipped_policy_looks_at_the_standing_and_one_without_such_rules_does_not() -> None:
    assert POLICY.uses_at_risk
    assert not with_rules({"name": "loud", "when": {}, "team": "billing"}).uses_at_risk


def test_a_signal_gives_the_standing_with_its_crossing_and_top_reasons() -> None:
    reasons = [ScoreReason(part=f"p{i}", points=-10.0 + i, reason=f"r{i}") for i in range(5)]
    fields = {
        "customer_key": "c-1",
        "customer_tier": CustomerTier.PREMIUM,
        "score": 31.5,
        "threshold": 40,
        "crossing": 3,
        "reasons": reasons,
        "occurred_at": MONDAY_10AM,
    }
    at_risk = standing_from_signal(CustomerAtRisk.model_validate(fields), "e-1")
    assert (at_risk.customer_key, at_risk.at_risk, at_risk.crossing) == ("c-1", True, 3)
    assert (at_risk.since, at_risk.score, at_risk.signal_id) == (MONDAY_10AM, 31.5, "e-1")
    assert [r.part for r in at_risk.reasons] == ["p0", "p1", "p2"]
    recovered = standing_from_signal(
        CustomerRecovered.model_validate({**fields, "crossing": 4}), "e-2"
    )
    assert (recovered.at_risk, recovered.crossing) == (False, 4)


# --- what the customer asks for (classification.expectation) ------------------------

ROUTING_DOCS = Path(__file__).parents[3] / "docs" / "routing.md"


def expecting(
    outcome: ExpectedOutcome | None,
    *,
    tier: CustomerTier = CustomerTier.STANDARD,
    urgency: Urgency = Urgency.MEDIUM,
    source: str = "customer",
) -> tuple[Feedback, Classification]:
    """A delivery complaint whose customer asks for ``outcome`` (None: asks for nothing)."""
    feedback = a_feedback(customer=Customer(id="C-1", tier=tier))
    expectation = None if outcome is None else {"outcome": outcome, "source": source}
    return feedback, a_classification("delivery", urgency, expectation=expectation)


def the_documented_expectation_rules() -> list[dict[str, object]]:
    """The example rules of docs/routing.md that look at what the customer asks for."""
    chunks = ROUTING_DOCS.read_text(encoding="utf-8").split("```yaml\n")[1:]
    blocks = [chunk.split("```", 1)[0] for chunk in chunks]
    example = next(block for block in blocks if "expected_outcome" in block)
    rules: list[dict[str, object]] = yaml.safe_load(example)["rules"]
    return rules


@pytest.mark.parametrize(
    ("condition", "outcome", "matches"),
    [
        ([ExpectedOutcome.REFUND], ExpectedOutcome.REFUND, True),
        (
            [ExpectedOutcome.REFUND, ExpectedOutcome.COMPENSATION],
            ExpectedOutcome.COMPENSATION,
            True,
        ),
        ([ExpectedOutcome.REFUND], ExpectedOutcome.REPLACEMENT, False),
        ([ExpectedOutcome.REFUND], None, False),
        ([ExpectedOutcome.OTHER], None, False),
        ([ExpectedOutcome.OTHER], ExpectedOutcome.OTHER, True),
        ([], ExpectedOutcome.REFUND, False),
        (None, ExpectedOutcome.REFUND, True),
        (None, None, True),
    ],
)
def test_an_expected_outcome_condition_matches_what_the_customer_asks_for(
    condition: list[ExpectedOutcome] | None, outcome: ExpectedOutcome | None, matches: bool
) -> None:
    rule = Rule.model_validate(
        {"name": "r", "when": {"expected_outcome": condition}, "team": "billing"}
    )
    assert rule_matches(rule, *expecting(outcome)) is matches


def test_an_outcome_the_classifier_inferred_matches_like_one_the_customer_chose() -> None:
    rule = Rule.model_validate(
        {"name": "r", "when": {"expected_outcome": ["repair"]}, "team": "service"}
    )
    assert rule_matches(rule, *expecting(ExpectedOutcome.REPAIR, source="inferred"))


def test_an_expected_outcome_condition_combines_with_the_others() -> None:
    rule = Rule.model_validate(
        {"name": "r", "when": {"tier": ["vip"], "expected_outcome": ["refund"]}, "team": "billing"}
    )
    assert rule_matches(rule, *expecting(ExpectedOutcome.REFUND, tier=CustomerTier.VIP))
    assert not rule_matches(rule, *expecting(ExpectedOutcome.REFUND))
    assert not rule_matches(rule, *expecting(None, tier=CustomerTier.VIP))


def test_the_documented_rule_sends_a_vip_refund_request_to_billing_and_names_the_outcome() -> None:
    policy = with_rules(*the_documented_expectation_rules())
    placement = place(policy, *expecting(ExpectedOutcome.REFUND, tier=CustomerTier.VIP))
    assert (placement.team, placement.rule, placement.priority) == (
        "billing",
        "vip-refunds-to-billing",
        Priority.P2,
    )
    assert placement.reason == (
        "priority P2: urgency medium for a vip customer gives P2; rule vip-refunds-to-billing "
        "sends it to billing (expected outcome: refund)"
    )
    assert placement.reason in ROUTING_DOCS.read_text(encoding="utf-8").replace("\n", " ")


@pytest.mark.parametrize(
    ("outcome", "tier", "urgency", "rule"),
    [
        (ExpectedOutcome.REPLACEMENT, CustomerTier.VIP, Urgency.MEDIUM, "fallback"),
        (None, CustomerTier.VIP, Urgency.MEDIUM, "fallback"),
        (ExpectedOutcome.REFUND, CustomerTier.STANDARD, Urgency.MEDIUM, "fallback"),
        (ExpectedOutcome.REFUND, CustomerTier.VIP, Urgency.CRITICAL, "critical-to-escalations"),
    ],
)
def test_the_documented_rule_leaves_other_cases_to_the_rules_around_it(
    outcome: ExpectedOutcome | None, tier: CustomerTier, urgency: Urgency, rule: str
) -> None:
    policy = with_rules(*the_documented_expectation_rules())
    placement = place(policy, *expecting(outcome, tier=tier, urgency=urgency))
    assert placement.rule == rule
    assert "expected outcome" not in placement.reason


def test_a_rule_without_an_expected_outcome_condition_does_not_mention_the_expectation() -> None:
    placement = place(POLICY, *expecting(ExpectedOutcome.REFUND, tier=CustomerTier.VIP))
    assert (placement.team, placement.rule) == ("logistics", "delivery")
    assert "expected outcome" not in placement.reason


def test_the_shipped_policy_routes_by_cause_whatever_the_customer_asks_for() -> None:
    assert all(rule.when.expected_outcome is None for rule in POLICY.rules)
    asked_nothing = place(POLICY, *expecting(None))
    for outcome in ExpectedOutcome:
        assert place(POLICY, *expecting(outcome)) == asked_nothing
