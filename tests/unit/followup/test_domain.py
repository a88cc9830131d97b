from datetime import UTC, datetime, timedelta

import pytest

from services.followup.domain import closed_summary, judge_satisfaction, new_case
from shared.contracts import (
    CaseRouted,
    Channel,
    Priority,
    RootCause,
    Urgency,
)
from tests.support import a_classification, a_feedback, a_routing

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOURS = {Priority.P1: 1.0, Priority.P2: 4.0, Priority.P3: 24.0, Priority.P4: 48.0}


def judge(csat: int, expected: int, perceived: int, solved: bool = True):  # type: ignore[no-untyped-def]
    return judge_satisfaction(
        csat=csat,
        expected=expected,
        perceived=perceived,
        solved=solved,
        satisfied_ratio=0.9,
        delighted_ratio=1.2,
    )


@pytest.mark.parametrize(
    ("csat", "expected", "perceived", "solved", "verdict", "closes"),
    [
        (4, 4, 4, True, "satisfied", True),
        (5, 4, 5, True, "delighted", True),
        (3, 5, 3, True, "dissatisfied", False),
        (2, 3, 3, True, "dissatisfied", False),
        (5, 4, 5, False, "delighted", False),
    ],
)
def test_satisfaction_is_perceived_over_expected(
    csat: int, expected: int, perceived: int, solved: bool, verdict: str, closes: bool
) -> None:
    result = judge(csat, expected, perceived, solved)
    assert result.ratio == round(perceived / expected, 3)
    assert (result.verdict, result.closes_case) == (verdict, closes)


def routed() -> CaseRouted:
    return CaseRouted(
        case_id="case-1",
        feedback=a_feedback(channel=Channel.SMS, at=NOW),
        classification=a_classification(RootCause.DELIVERY, Urgency.HIGH),
        routing=a_routing(
            Priority.P2,
            at=NOW,
            first_response_due=NOW + timedelta(hours=4),
            resolution_due=NOW + timedelta(hours=24),
        ),
    )


def test_a_new_case_is_open_with_its_first_callback_scheduled_by_priority() -> None:
    case = new_case(routed(), NOW, HOURS)
    assert case["status"] == "open"
    assert case["callbacks"][0]["due_at"] == NOW + timedelta(hours=4)
    assert [entry["event"] for entry in case["timeline"]] == ["case.routed", "callback.scheduled"]
    assert (
        new_case(routed(), NOW, HOURS)["callbacks"][0]["callback_id"]
        == case["callbacks"][0]["callback_id"]
    )


def test_case_closed_carries_times_sla_flags_and_satisfaction() -> None:
    case = new_case(routed(), NOW, HOURS)
    case.update(
        first_response_at=NOW + timedelta(hours=1),
        resolved_at=NOW + timedelta(hours=30),
        reopen_count=1,
        callbacks_made=2,
        surveys=[{"csat": 4, "expected": 4, "perceived": 4, "ratio": 1.0}],
    )
    closed = closed_summary(case, outcome="satisfied", closed_at=NOW + timedelta(hours=31))
    assert closed.time_to_first_response_s == 3600
    assert closed.time_to_resolve_s == 30 * 3600
    assert closed.first_response_sla_met is True
    assert closed.resolution_sla_met is False
    assert (closed.csat, closed.ratio, closed.reopen_count, closed.callbacks_made) == (4, 1.0, 1, 2)
    assert closed.channel is Channel.SMS and closed.priority is Priority.P2
