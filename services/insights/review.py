"""The review of a case: the handbook's questions at the end of every complaint,
answered from the case's facts (pure).

- Was it answered in time? (the first response against its deadline)
- Was it resolved in time? (the resolution against its deadline)
- Did the customer accept the solution? (the survey's "solved")
- Was the customer satisfied? (the survey's verdict: satisfied or delighted)
- Did it have to be reopened, or escalated?
- Was the promise made to the customer kept? closeloop records promises with a
  resolution but does not track whether they are kept yet: always unknown.

An answer is ``None`` where the facts do not tell (no survey answer, no deadline yet).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.insights.domain import CaseFacts


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
        "promise_kept": None,
    }
