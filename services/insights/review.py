"""The review of a case: the handbook's questions at the end of every complaint,
answered from the case's facts (pure).

- Was it answered in time? (the first response against its deadline)
- Was it resolved in time? (the resolution against its deadline)
- Did the customer accept the solution? (the survey's "solved")
- Was the customer satisfied? (the survey's verdict: satisfied or delighted)
- Did it have to be reopened, or escalated?
- Were the promises made to the customer kept? (every promise with a result kept: none
  broken, none overdue without an outcome; the counts as the reports count them)
- Did the customer get what they asked for? (the survey's answer, with the outcome asked)

An answer is ``None`` where the facts do not tell (no survey answer, no deadline yet).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.insights.domain import CaseFacts, PromiseFacts
from services.insights.reports import promise_kept_rate


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def review(facts: CaseFacts) -> dict[str, Any]:
    satisfied = None if facts.verdict is None else facts.verdict in ("satisfied", "delighted")
    return {
        "case_id": facts.case_id,
        "closed": facts.closed_at is not None,
        "outcome": facts.outcome,
        "root_cause": facts.root_cause,
        "team": facts.team,
        "agent": facts.agent,
        "answered_in_time": {
            "answer": facts.first_response_sla_met,
            "took_s": _seconds(facts.opened_at, facts.first_response_at),
            "allowed_s": _seconds(facts.opened_at, facts.first_response_due),
        },
        "resolved_in_time": {
            "answer": facts.resolution_sla_met,
            "took_s": _seconds(facts.opened_at, facts.resolved_at),
            "allowed_s": _seconds(facts.opened_at, facts.resolution_due),
        },
        "solution_accepted": facts.solved,
        "customer_satisfied": satisfied,
        "csat": facts.csat,
        "reopened": facts.reopen_count > 0,
        "reopen_count": facts.reopen_count,
        "escalated": facts.escalation_count > 0,
        "promise_kept": _promise_kept(facts),
        "promises": {
            "made": facts.promises_made,
            "kept": facts.promises_kept,
            "broken": facts.promises_broken,
            "overdue": facts.promises_overdue,
            "kept_rate": promise_kept_rate(
                facts.promises_kept, facts.promises_broken, facts.promises_overdue_open
            ),
            "each": [_promise(promise) for promise in facts.promises],
        },
        "expected_outcome": facts.expected_outcome,
        "expectation_met": facts.expectation_met,
    }


def _promise_kept(facts: CaseFacts) -> bool | None:
    """True when every promise with a result was kept, False when one was broken or is
    overdue without an outcome, None when none has a result yet."""
    if facts.promises_kept + facts.promises_broken + facts.promises_overdue_open == 0:
        return None
    return facts.promises_broken == 0 and facts.promises_overdue_open == 0


def _promise(promise: PromiseFacts) -> dict[str, Any]:
    return {
        "promise_id": promise.promise_id,
        "what": promise.what,
        "due_at": promise.due_at,
        "made_by": promise.made_by,
        "team": promise.team,
        "outcome": promise.outcome,
        "late": promise.late if promise.outcome == "kept" else None,
        "overdue": promise.overdue_at is not None,
    }
