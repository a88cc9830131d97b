"""Routing decisions: priority matrix, rules, skills, deadlines, re-routes and links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.config import load_policy
from services.router.domain import (
    case_id_for,
    deadlines,
    decide,
    decide_reroute,
    eligible_agents,
    escalation_lead,
    least_loaded,
    link_routing,
    priority_rank,
    raise_priority,
)
from shared.contracts import (
    Channel,
    Classification,
    Customer,
    CustomerTier,
    Feedback,
    Priority,
    RootCause,
    Urgency,
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
    decision = decide(POLICY, *case(RootCause.BILLING, urgency, tier=tier))
    assert decision.priority is priority
    assert f"urgency {urgency.value} for a {tier.value} customer" in decision.reason


def test_a_public_channel_raises_the_priority_and_says_so() -> None:
    decision = decide(POLICY, *case(RootCause.DELIVERY, Urgency.MEDIUM, channel=Channel.SOCIAL))
    assert decision.priority is Priority.P2
    assert "public channel social raises 1" in decision.reason


@pytest.mark.parametrize(
    ("cause", "urgency", "needs_review", "team", "rule"),
    [
        (RootCause.DELIVERY, Urgency.MEDIUM, False, "logistics", "delivery"),
        (RootCause.BILLING, Urgency.LOW, False, "billing", "billing"),
        (RootCause.POLICY, Urgency.LOW, False, "billing", "billing"),
        (RootCause.DELIVERY, Urgency.CRITICAL, False, "escalations", "critical-to-escalations"),
        (RootCause.DELIVERY, Urgency.MEDIUM, True, "triage", "unsure-to-triage"),
        (RootCause.OTHER, Urgency.LOW, False, "triage", "fallback"),
    ],
)
def test_the_first_matching_rule_picks_the_team_and_is_named(
    cause: RootCause, urgency: Urgency, needs_review: bool, team: str, rule: str
) -> None:
    decision = decide(POLICY, *case(cause, urgency, needs_review=needs_review))
    assert (decision.team, decision.rule) == (team, rule)
    assert f"rule {rule} sends it to {team}" in decision.reason


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
    chinese = eligible_agents(POLICY, "service", "zh", RootCause.STAFF_ATTITUDE)
    assert chinese.agent_ids == ("agent-chen-jie",)
    communication = eligible_agents(POLICY, "service", "zh", RootCause.COMMUNICATION)
    assert communication.agent_ids == ("agent-sun-li",)
    english = eligible_agents(POLICY, "service", "en", RootCause.AFTER_SALES)
    assert english.agent_ids == ("agent-tom-baker", "agent-sun-li")


def test_language_alone_decides_when_nobody_handles_the_cause() -> None:
    eligibility = eligible_agents(POLICY, "service", "zh", RootCause.BILLING)
    assert eligibility.agent_ids == ("agent-chen-jie", "agent-sun-li")
    assert "nobody handles billing" in eligibility.note


def test_every_agent_is_eligible_when_nobody_speaks_the_language() -> None:
    eligibility = eligible_agents(POLICY, "logistics", "fr", RootCause.DELIVERY)
    assert eligibility.agent_ids == ("agent-wang-fang", "agent-emma-jones")
    assert "nobody speaks fr" in eligibility.note


def test_excluded_agents_are_not_eligible_and_the_lead_comes_first() -> None:
    eligibility = eligible_agents(
        POLICY,
        "escalations",
        "en",
        RootCause.DELIVERY,
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
    decision = decide_reroute(POLICY, current, "reopened", "round 1: not solved")
    assert (decision.priority, decision.team, decision.rule) == (
        Priority.P2,
        "escalations",
        "reroute:reopened",
    )
    assert "priority P3 raised to P2" in decision.reason
    assert "team logistics escalates to escalations" in decision.reason


def test_a_reroute_of_p1_stays_p1_and_a_team_without_escalation_keeps_the_case() -> None:
    current = a_routing(Priority.P1, team="escalations", agent="agent-priya-shah")
    decision = decide_reroute(POLICY, current, "sla_breached", "first response missed")
    assert (decision.priority, decision.team) == (Priority.P1, "escalations")
    assert "priority stays P1" in decision.reason
    assert "sla breached (first response missed)" in decision.reason


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
