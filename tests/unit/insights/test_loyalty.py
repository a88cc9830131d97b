"""The customer health score: decay, parts, reasons, thresholds and crossings, as pure
functions over case facts."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.insights.domain import CaseFacts, PromiseFacts, PromiseOutcome
from services.insights.loyalty import (
    Standing,
    churn_probability,
    crossing,
    decay,
    decide_signal,
    features,
    health,
    policy_from_logit,
    settled_score,
    standing_after,
)
from services.insights.policy import PARTS, load_policy
from shared.contracts import (
    Customer,
    CustomerAtRisk,
    CustomerRecovered,
    CustomerTier,
    Urgency,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = Customer(email="ana@example.com").key
POLICY = load_policy()


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def a_case(case_id: str, opened_days_ago: float, **fields: Any) -> CaseFacts:
    opened = days_ago(opened_days_ago)
    values: dict[str, Any] = {
        "case_id": case_id,
        "customer_key": KEY,
        "opened_at": opened,
        "root_cause": "delivery",
        "urgency": Urgency.MEDIUM,
        "resolution_due": opened + timedelta(days=3),
        "first_response_due": opened + timedelta(hours=8),
        "customer": Customer(email="ana@example.com"),
        "customer_stamp": (opened, case_id),
        **fields,
    }
    return CaseFacts(**values)


def closed_well(case_id: str, opened_days_ago: float, **fields: Any) -> CaseFacts:
    """Solved within its deadlines and answered satisfied, a day after it was opened."""
    opened = days_ago(opened_days_ago)
    return a_case(
        case_id,
        opened_days_ago,
        resolved_at=opened + timedelta(days=1),
        closed_at=opened + timedelta(days=1, hours=2),
        first_response_sla_met=True,
        resolution_sla_met=True,
        csat=5,
        expected=4,
        perceived=5,
        ratio=1.25,
        verdict="satisfied",
        solved=True,
        answer_stamp=(opened + timedelta(days=1, hours=1), f"answer-{case_id}"),
        **fields,
    )


def left_unhappy(case_id: str, opened_days_ago: float, **fields: Any) -> CaseFacts:
    """Late, reopened, answered dissatisfied, closed."""
    opened = days_ago(opened_days_ago)
    return a_case(
        case_id,
        opened_days_ago,
        resolved_at=opened + timedelta(days=5),
        closed_at=opened + timedelta(days=6),
        first_response_sla_met=True,
        resolution_sla_met=False,
        reopen_count=1,
        csat=2,
        expected=4,
        perceived=2,
        ratio=0.5,
        verdict="dissatisfied",
        solved=False,
        answer_stamp=(opened + timedelta(days=5, hours=3), f"answer-{case_id}"),
        **fields,
    )


def test_decay_halves_after_each_half_life() -> None:
    assert decay(timedelta(0), 90) == 1.0
    assert decay(timedelta(days=90), 90) == pytest.approx(0.5)
    assert decay(timedelta(days=180), 90) == pytest.approx(0.25)
    assert decay(timedelta(days=400), None) == 1.0
    # An item stamped after the score's time (clocks apart) counts as new, not more.
    assert decay(timedelta(days=-3), 90) == 1.0


def test_a_customer_without_cases_has_the_base_score() -> None:
    result = health([], NOW, POLICY)
    assert result.score == POLICY.base
    assert result.parts == ()
    assert result.tier is CustomerTier.STANDARD


def test_a_complaint_solved_well_costs_little_and_fades() -> None:
    fresh = health([closed_well("a", 2)], NOW, POLICY)
    parts = {part.part: part.points for part in fresh.parts}
    # A good recovery counters most of a complaint, not all of it.
    assert parts["complaints"] < 0 < parts["recovered"] < -parts["complaints"]
    assert POLICY.base - 2 < fresh.score < POLICY.base
    # Eighteen months later the complaint counts for almost nothing.
    later = health([closed_well("a", 540)], NOW, POLICY)
    assert abs(later.score - POLICY.base) < abs(fresh.score - POLICY.base)


def test_an_unhappy_customer_falls_below_the_threshold_with_every_reason() -> None:
    cases = [
        left_unhappy("a", 20),
        a_case(
            "b",
            3,
            churn_evidence="I will never buy from you again",
            signals=frozenset({"churn_intent"}),
        ),
    ]
    result = health(cases, NOW, POLICY)
    assert result.score < POLICY.at_risk_below
    reasons = {part.part: part.reason for part in result.parts}
    assert set(reasons) >= {
        "complaints", "deadlines_missed", "reopened", "dissatisfied", "churn_intent", "open_cases",
    }  # fmt: skip
    assert "2 complaints in the last 20 days (delivery 2)" in reasons["complaints"]
    assert "last survey dissatisfied (ratio 0.50)" in reasons["dissatisfied"]
    assert "churn intent 'I will never buy from you again'" in reasons["churn_intent"]
    assert reasons["open_cases"].endswith(": 1 open case")
    assert result.open_case_ids == ("b",)
    # Each reason starts with what it adds; the largest first; they add up to the score.
    points = [part.points for part in result.parts]
    assert points == sorted(points, key=lambda p: -abs(p))
    assert all(part.reason.startswith(f"{part.points:+.1f}: ") for part in result.parts)
    assert result.score == pytest.approx(POLICY.base + sum(points), abs=0.1)


def test_a_score_taken_in_the_past_counts_only_what_had_happened_by_then() -> None:
    case = left_unhappy("a", 20)
    opened = case.opened_at
    assert opened is not None
    # A day after opening: no answer yet, deadline not yet due, not yet closed.
    early = features([case], opened + timedelta(days=1), POLICY)
    assert early["complaints"] == pytest.approx(1.0, rel=0.01)
    assert early["dissatisfied"] == 0.0
    assert early["deadlines_missed"] == 0.0
    assert early["open_cases"] == 1.0
    late = features([case], NOW, POLICY)
    assert late["dissatisfied"] > 0 and late["deadlines_missed"] > 0
    assert late["open_cases"] == 0.0
    # Before the case was opened, nothing counts.
    before = features([case], opened - timedelta(seconds=1), POLICY)
    assert all(value == 0.0 for value in before.values())


def test_cases_beyond_the_horizon_count_no_more() -> None:
    old = left_unhappy("a", POLICY.horizon_days + 1)
    assert health([old], NOW, POLICY).score == POLICY.base


def test_the_tier_of_the_latest_feedback_counts() -> None:
    first = a_case("a", 30, customer=Customer(email="ana@example.com"))
    vip = Customer(email="ana@example.com", tier=CustomerTier.VIP)
    second = a_case("b", 5, customer=vip, customer_stamp=(days_ago(5), "b"))
    result = health([second, first], NOW, POLICY)
    assert result.tier is CustomerTier.VIP
    assert {part.part: part.points for part in result.parts}["tier"] == POLICY.tiers[
        CustomerTier.VIP
    ]


def test_scores_stay_within_0_and_100() -> None:
    many = [left_unhappy(f"c{i}", i + 1, urgency=Urgency.CRITICAL) for i in range(12)]
    assert health(many, NOW, POLICY).score == 0.0
    rewarded = POLICY.parts["recovered"].model_copy(update={"points": 20.0})
    generous = POLICY.model_copy(update={"parts": {**POLICY.parts, "recovered": rewarded}})
    happy = [closed_well(f"c{i}", i + 1) for i in range(12)]
    assert health(happy, NOW, generous).score == 100.0


def test_crossings_need_the_gap_between_the_thresholds() -> None:
    low, high = POLICY.at_risk_below, POLICY.recovered_above
    assert crossing(False, low - 0.1, POLICY) == "at_risk"
    assert crossing(False, low, POLICY) is None
    assert crossing(True, low - 5, POLICY) is None  # told already
    # Between the thresholds an at-risk customer stays at risk: no flapping.
    assert crossing(True, (low + high) / 2, POLICY) is None
    assert crossing(True, high, POLICY) is None
    assert crossing(True, high + 0.1, POLICY) == "recovered"
    assert crossing(False, high + 10, POLICY) is None


def test_a_crossing_makes_one_signal_and_the_standing_after_it() -> None:
    unhappy = health([left_unhappy("a", 10), left_unhappy("b", 2)], NOW, POLICY)
    signal = decide_signal(KEY, Standing(), unhappy, POLICY)
    assert isinstance(signal, CustomerAtRisk)
    assert signal.crossing == 1
    assert signal.score == unhappy.score
    assert signal.threshold == POLICY.at_risk_below
    assert [reason.part for reason in signal.reasons] == [part.part for part in unhappy.parts]
    standing = standing_after(Standing(), signal)
    assert standing == Standing(at_risk=True, crossing=1)
    # Scored again at the same score (a redelivery, another copy): no second signal.
    assert decide_signal(KEY, standing, unhappy, POLICY) is None
    recovered = health([], NOW, POLICY)
    back = decide_signal(KEY, standing, recovered, POLICY)
    assert isinstance(back, CustomerRecovered)
    assert back.crossing == 2
    assert back.threshold == POLICY.recovered_above
    assert standing_after(standing, back) == Standing(at_risk=False, crossing=2)


def test_a_score_at_the_base_needs_no_rescoring() -> None:
    assert settled_score(POLICY.base, POLICY)
    assert not settled_score(POLICY.base - 1, POLICY)


def test_a_logistic_fit_is_a_policy_with_the_same_probabilities() -> None:
    coefficients = {name: 0.1 * (i + 1) for i, name in enumerate(PARTS)}
    coefficients["recovered"] = -0.5
    fitted = policy_from_logit(POLICY, -2.0, coefficients, {CustomerTier.VIP: -0.4})
    cases = [left_unhappy("a", 30), closed_well("b", 10)]
    values = features(cases, NOW, fitted)
    logit = -2.0 + sum(coefficients[name] * values[name] for name in PARTS)
    expected = 1 / (1 + pow(2.718281828459045, -logit))
    score = health(cases, NOW, fitted).score
    # Points are rounded to 0.01 and the score to 0.1: a tenth of a point of log-odds.
    assert churn_probability(score, fitted) == pytest.approx(expected, abs=0.01)
    assert fitted.parts["recovered"].points == 5.0
    assert fitted.tiers[CustomerTier.VIP] == 4.0
    assert fitted.parts["complaints"].half_life_days == POLICY.parts["complaints"].half_life_days


# --- promises -----------------------------------------------------------------------


def a_promise(
    promise_id: str,
    *,
    overdue_days_ago: float | None = None,
    outcome: PromiseOutcome | None = None,
    outcome_days_ago: float | None = None,
    late: bool = False,
) -> PromiseFacts:
    return PromiseFacts(
        promise_id=promise_id,
        what="call back with the courier's answer",
        due_at=days_ago(10),
        made_by="agent-1",
        team="logistics",
        details_stamp=(days_ago(12), promise_id),
        made_at=days_ago(12),
        overdue_at=None if overdue_days_ago is None else days_ago(overdue_days_ago),
        outcome=outcome,
        late=late,
        outcome_at=None if outcome_days_ago is None else days_ago(outcome_days_ago),
        outcome_stamp=None if outcome_days_ago is None else (days_ago(outcome_days_ago), "o"),
    )


def with_promises(*promises: PromiseFacts) -> CaseFacts:
    return a_case("a", 14, promises=promises)


def parts_of(cases: list[CaseFacts], at: datetime = NOW) -> dict[str, tuple[float, str]]:
    return {part.part: (part.points, part.reason) for part in health(cases, at, POLICY).parts}


def test_a_broken_promise_takes_points_from_when_it_was_recorded_and_fades() -> None:
    broken = POLICY.parts["promises_broken"]
    case = with_promises(a_promise("p", outcome="broken", outcome_days_ago=3))
    points, reason = parts_of([case])["promises_broken"]
    assert points == pytest.approx(broken.points * decay(timedelta(days=3), broken.half_life_days))
    assert reason == f"{points:+.1f}: 1 broken promise in the last 3 days"
    assert "promises_overdue" not in parts_of([case])
    # Before it was recorded broken, it took nothing.
    assert "promises_broken" not in parts_of([case], days_ago(4))
    later = features([case], NOW + timedelta(days=broken.half_life_days or 0), POLICY)
    assert later["promises_broken"] == pytest.approx(
        0.5 * features([case], NOW, POLICY)["promises_broken"]
    )


def test_a_promise_overdue_then_broken_counts_once_as_broken() -> None:
    case = with_promises(a_promise("p", overdue_days_ago=8, outcome="broken", outcome_days_ago=2))
    now = features([case], NOW, POLICY)
    assert now["promises_broken"] == pytest.approx(
        decay(timedelta(days=2), POLICY.parts["promises_broken"].half_life_days)
    )
    assert now["promises_overdue"] == 0.0
    # Between going overdue and being recorded broken, it was overdue.
    between = features([case], days_ago(5), POLICY)
    assert between["promises_overdue"] > 0 and between["promises_broken"] == 0.0


def test_a_promise_overdue_then_kept_late_counts_as_overdue_less_than_broken() -> None:
    late = with_promises(
        a_promise("p", overdue_days_ago=8, outcome="kept", outcome_days_ago=7, late=True)
    )
    points, reason = parts_of([late])["promises_overdue"]
    assert reason == f"{points:+.1f}: 1 overdue promise in the last 8 days (1 kept late)"
    broken = with_promises(a_promise("p", overdue_days_ago=8, outcome="broken", outcome_days_ago=7))
    assert health([broken], NOW, POLICY).score < health([late], NOW, POLICY).score
    waiting = with_promises(a_promise("p", overdue_days_ago=1), a_promise("q", overdue_days_ago=2))
    assert parts_of([waiting])["promises_overdue"][1].endswith(
        ": 2 overdue promises in the last 2 days"
    )


def test_a_promise_kept_in_time_or_not_yet_due_costs_nothing() -> None:
    kept = a_promise("p", outcome="kept", outcome_days_ago=11)
    open_ = a_promise("q")
    parts = parts_of([with_promises(kept, open_)])
    assert "promises_broken" not in parts and "promises_overdue" not in parts
    assert (
        health([with_promises(kept, open_)], NOW, POLICY).score
        == health([with_promises()], NOW, POLICY).score
    )


def test_a_customer_whose_promises_are_broken_is_told_at_risk() -> None:
    escalated = frozenset({"e-1", "e-2"})
    kept = a_case(
        "a",
        14,
        escalation_ids=escalated,
        escalation_count=2,
        promises=(a_promise("p", outcome="kept", outcome_days_ago=11),),
    )
    before = health([kept], NOW, POLICY)
    assert before.score >= POLICY.at_risk_below
    assert decide_signal(KEY, Standing(), before, POLICY) is None
    broken = kept.model_copy(
        update={
            "promises": (
                a_promise("p", outcome="broken", outcome_days_ago=2),
                a_promise("q", overdue_days_ago=1),
            )
        }
    )
    after = health([broken], NOW, POLICY)
    signal = decide_signal(KEY, Standing(), after, POLICY)
    assert isinstance(signal, CustomerAtRisk)
    assert {"promises_broken", "promises_overdue"} <= {reason.part for reason in signal.reasons}
