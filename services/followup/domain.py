"""Followup decisions: callbacks, satisfaction and case outcomes. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.contracts import (
    CaseClosed,
    CaseOutcome,
    CaseRouted,
    Priority,
    SatisfactionVerdict,
)
from shared.envelope import derive_id

OPEN_STATUSES = ("open", "reopened")


@dataclass(frozen=True)
class Satisfaction:
    ratio: float
    verdict: SatisfactionVerdict
    closes_case: bool


def judge_satisfaction(
    *,
    csat: int,
    expected: int,
    perceived: int,
    solved: bool,
    satisfied_ratio: float,
    delighted_ratio: float,
) -> Satisfaction:
    """satisfaction = perceived / expected: below ``satisfied_ratio`` the customer is
    dissatisfied, from ``delighted_ratio`` delighted. A CSAT of 1-2 is dissatisfied
    whatever the ratio; an unsolved problem never closes the case."""
    ratio = round(perceived / expected, 3)
    verdict: SatisfactionVerdict
    if ratio < satisfied_ratio or csat <= 2:
        verdict = "dissatisfied"
    elif ratio >= delighted_ratio:
        verdict = "delighted"
    else:
        verdict = "satisfied"
    return Satisfaction(
        ratio=ratio, verdict=verdict, closes_case=solved and verdict != "dissatisfied"
    )


def first_callback(
    case_id: str, priority: Priority, routed_at: datetime, hours_by_priority: dict[Priority, float]
) -> dict[str, Any]:
    due_at = routed_at + timedelta(hours=hours_by_priority[priority])
    return {
        "callback_id": derive_id("callback", case_id, "1"),
        "due_at": due_at,
        "attempt": 1,
        "reason": "first contact after routing",
        "status": "scheduled",
    }


def new_case(
    routed: CaseRouted, now: datetime, hours_by_priority: dict[Priority, float]
) -> dict[str, Any]:
    """The case document created when a case is first routed."""
    routing = routed.routing
    callback = first_callback(
        routed.case_id, routing.priority, routing.routed_at, hours_by_priority
    )
    return {
        "_id": routed.case_id,
        "feedback_id": routed.feedback.feedback_id,
        "customer_key": routed.feedback.customer_key,
        "status": "open",
        "priority": routing.priority.value,
        "team": routing.team,
        "agent": routing.agent,
        "feedback": routed.feedback.model_dump(mode="json"),
        "classification": routed.classification.model_dump(mode="json"),
        "routing": routing.model_dump(mode="json"),
        "opened_at": routing.routed_at,
        "first_response_due": routing.first_response_due,
        "resolution_due": routing.resolution_due,
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "reopen_count": 0,
        "callbacks": [callback],
        "callbacks_made": 0,
        "resolutions": [],
        "surveys": [],
        "outcome": None,
        "timeline": [
            {"at": now, "event": "case.routed", "detail": routing.reason},
            {
                "at": now,
                "event": "callback.scheduled",
                "detail": f"due {callback['due_at'].isoformat()}",
            },
        ],
        "outbox": [],
        "created_at": now,
    }


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _met(at: datetime | None, due: datetime | None) -> bool | None:
    if at is None or due is None:
        return None
    return at <= due


def closed_summary(
    case: dict[str, Any], *, outcome: CaseOutcome, closed_at: datetime
) -> CaseClosed:
    """case.closed: what downstream needs to know about the finished case."""
    survey = case["surveys"][-1] if case.get("surveys") else {}
    feedback, classification = case["feedback"], case["classification"]
    first_response_at = case.get("first_response_at")
    resolved_at = case.get("resolved_at")
    return CaseClosed(
        case_id=case["_id"],
        customer_key=case["customer_key"],
        occurred_at=closed_at,
        outcome=outcome,
        feedback_id=case["feedback_id"],
        channel=feedback["channel"],
        customer_tier=feedback["customer"]["tier"],
        root_cause=classification["root_cause"],
        urgency=classification["urgency"],
        priority=case["priority"],
        team=case["team"],
        agent=case.get("agent"),
        opened_at=case["opened_at"],
        first_response_at=first_response_at,
        resolved_at=resolved_at,
        closed_at=closed_at,
        time_to_first_response_s=_seconds(case["opened_at"], first_response_at),
        time_to_resolve_s=_seconds(case["opened_at"], resolved_at),
        first_response_sla_met=_met(first_response_at, case.get("first_response_due")),
        resolution_sla_met=_met(resolved_at, case.get("resolution_due")),
        callbacks_made=int(case.get("callbacks_made", 0)),
        reopen_count=int(case.get("reopen_count", 0)),
        csat=survey.get("csat"),
        expected=survey.get("expected"),
        perceived=survey.get("perceived"),
        ratio=survey.get("ratio"),
    )
