from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.router.config import Agent, load_policy
from services.router.domain import candidate_agents, deadlines, decide, raise_priority
from shared.config import ConfigError
from shared.contracts import (
    Classification,
    Customer,
    CustomerTier,
    Feedback,
    Priority,
    RootCause,
    Urgency,
)
from tests.support import a_classification, a_feedback

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = load_policy()


def case(
    cause: RootCause,
    urgency: Urgency,
    *,
    tier: CustomerTier = CustomerTier.STANDARD,
    needs_review: bool = False,
) -> tuple[Feedback, Classification]:
    feedback = a_feedback(customer=Customer(id="C-1", tier=tier))
    classification = a_classification(
        cause, urgency, needs_review=needs_review, confidence=0.3 if needs_review else 0.8
    )
    return feedback, classification


@pytest.mark.parametrize(
    ("urgency", "tier", "priority"),
    [
        (Urgency.CRITICAL, CustomerTier.STANDARD, Priority.P1),
        (Urgency.HIGH, CustomerTier.STANDARD, Priority.P2),
        (Urgency.MEDIUM, CustomerTier.STANDARD, Priority.P3),
        (Urgency.LOW, CustomerTier.STANDARD, Priority.P4),
        (Urgency.MEDIUM, CustomerTier.VIP, Priority.P2),
        (Urgency.CRITICAL, CustomerTier.VIP, Priority.P1),
    ],
)
def test_priority_from_urgency_and_tier(
    urgency: Urgency, tier: CustomerTier, priority: Priority
) -> None:
    assert decide(POLICY, *case(RootCause.BILLING, urgency, tier=tier)).priority is priority


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
def test_first_matching_rule_picks_the_team(
    cause: RootCause, urgency: Urgency, needs_review: bool, team: str, rule: str
) -> None:
    decision = decide(POLICY, *case(cause, urgency, needs_review=needs_review))
    assert (decision.team, decision.rule) == (team, rule)
    assert rule in decision.reason


def test_deadlines_follow_the_sla_targets() -> None:
    first, resolution = deadlines(POLICY, Priority.P1, NOW)
    assert first == NOW + timedelta(hours=1)
    assert resolution == NOW + timedelta(hours=8)


def test_priority_cannot_rise_above_p1_or_fall_below_p4() -> None:
    assert raise_priority(Priority.P2, 5) is Priority.P1
    assert raise_priority(Priority.P4, 0) is Priority.P4
    assert raise_priority(Priority.P3, -3) is Priority.P4


def test_least_loaded_agent_speaking_the_language_comes_first() -> None:
    agents = [
        Agent(id="a", languages=["en"], capacity=5),
        Agent(id="b", languages=["zh"], capacity=5),
        Agent(id="c", languages=["zh", "en"], capacity=5),
    ]
    loads = {"a": 1, "b": 3, "c": 2}
    assert [a.id for a in candidate_agents(agents, "zh", loads)] == ["c", "b", "a"]
    assert [a.id for a in candidate_agents(agents, "en", loads)] == ["a", "c", "b"]


def test_agents_at_capacity_are_not_candidates() -> None:
    agents = [
        Agent(id="a", languages=["en"], capacity=2),
        Agent(id="b", languages=["en"], capacity=9),
    ]
    assert [a.id for a in candidate_agents(agents, "en", {"a": 2, "b": 8})] == ["b"]


def test_a_policy_naming_an_unknown_team_fails_naming_the_rule(tmp_path: Path) -> None:
    text = (Path(__file__).parents[3] / "services/router/routing.yaml").read_text()
    bad = tmp_path / "routing.yaml"
    bad.write_text(text.replace("team: logistics", "team: nowhere"))
    with pytest.raises(ConfigError, match=r"rules\.\d+\.team: unknown team 'nowhere'"):
        load_policy(bad)
