"""insights' customer API: each customer's profile and health score, and the retention
worklist (docs/loyalty.md). Behind the API key like every insights route: profiles hold
the identifiers of the customer's latest feedback, which events never carry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from services.insights.api import AUTH_ERRORS, csv_row, now_of, text_cell
from services.insights.customers import Customers, decode_worklist_cursor
from services.insights.domain import CHURN_SIGNAL, CaseFacts
from services.insights.loyalty import churn_probability, health
from services.insights.store import InsightsStore
from shared.auth import api_client

customers = APIRouter(prefix="/v1", dependencies=[Depends(api_client)], responses=AUTH_ERRORS)

Order = Literal["score", "key"]
# The columns of the worklist CSV, one row per customer, in this order.
WORKLIST_COLUMNS = (
    "customer_key", "score", "at_risk", "since", "tier", "open_cases", "reasons",
    "customer_id", "name", "email", "phone", "handle", "scored_at",
)  # fmt: skip


def _customers(request: Request) -> Customers:
    found: Customers = request.app.state.customers
    return found


def _store(request: Request) -> InsightsStore:
    found: InsightsStore = request.app.state.store
    return found


@customers.get(
    "/customers",
    summary="The retention worklist: customers by health score, lowest first",
    description="`at_risk=true` gives the customers insights last told at risk "
    "(customer.at_risk without a customer.recovered since). Scores are as last taken, on "
    "the customer's latest event or the daily rescoring. `next_cursor`, when present, "
    "gives the next page (pagination by key).",
)
async def worklist(
    request: Request,
    at_risk: bool | None = None,
    order: Order = "score",
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    after = None
    if cursor is not None:
        try:
            after = decode_worklist_cursor(cursor, order)
        except ValueError as exc:
            raise HTTPException(422, f"cursor: {exc}") from exc
    page = await _customers(request).worklist(at_risk, order, after, limit)
    return {
        "at_risk": at_risk,
        "order": order,
        "customers": [_listed(doc) for doc in page.customers],
        "next_cursor": page.next_cursor,
    }


@customers.get(
    "/customers.csv",
    summary="The worklist as CSV, one row per customer, lowest score first",
    description="UTF-8 with a byte-order mark; streamed. The customer's identifiers are "
    "those of their latest feedback.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def worklist_csv(request: Request, at_risk: bool | None = None) -> StreamingResponse:
    rows = _customers(request).stream(at_risk)
    name = "closeloop-customers-at-risk.csv" if at_risk else "closeloop-customers.csv"
    return StreamingResponse(
        _worklist_lines(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _worklist_lines(rows: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[bytes]:
    yield "\ufeff".encode() + csv_row(WORKLIST_COLUMNS)
    async for doc in rows:
        listed = _listed(doc)
        identity = listed["customer"] or {}
        values = {
            **listed,
            "open_cases": " ".join(listed["open_case_ids"]),
            "reasons": "; ".join(reason["reason"] for reason in listed["reasons"]),
            "customer_id": identity.get("id"),
            **{k: identity.get(k) for k in ("name", "email", "phone", "handle")},
        }
        yield csv_row([text_cell(values.get(column)) for column in WORKLIST_COLUMNS])


@customers.get(
    "/customers/{customer_key}",
    summary="A customer's profile, health score with its reasons, and history",
    description="The score is taken now from every case insights has of the customer; "
    "`standing` is what insights last published (at risk or not, since when, the "
    "crossings), and `signals` every customer.signals event it published for them.",
    responses={404: {"description": "No case of this customer"}},
)
async def profile(
    request: Request, customer_key: Annotated[str, Path(max_length=200)]
) -> dict[str, Any]:
    cases = await _store(request).customer_cases(customer_key)
    if not cases:
        raise HTTPException(404, f"insights knows no case of customer {customer_key}")
    policy = _customers(request).policy
    now = now_of(request)
    now_health = health(cases, now, policy)
    standing = await _customers(request).standing(customer_key)
    signals = await _customers(request).signals_of(customer_key)
    latest = max(
        (case for case in cases if case.customer is not None),
        key=lambda case: case.customer_stamp or (now, ""),
        default=None,
    )
    return {
        "customer_key": customer_key,
        "customer": latest.customer.model_dump(mode="json") if latest and latest.customer else None,
        "tier": now_health.tier.value,
        "score": now_health.score,
        "churn_probability": round(churn_probability(now_health.score, policy), 4),
        "scored_at": _iso(now),
        "reasons": [reason.model_dump() for reason in now_health.reasons()],
        "open_case_ids": list(now_health.open_case_ids),
        "standing": _standing(standing),
        "summary": _summary(cases),
        "cases": [_history_row(case) for case in reversed(cases)],
        "signals": [_signal(doc) for doc in signals],
    }


def _listed(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "customer_key": doc["_id"],
        "score": doc.get("score"),
        "at_risk": bool(doc.get("at_risk")),
        "since": _iso(doc.get("since")) if doc.get("at_risk") else None,
        "tier": doc.get("tier"),
        "reasons": list(doc.get("reasons", []))[:5],
        "open_case_ids": list(doc.get("open_case_ids", [])),
        "customer": doc.get("customer"),
        "scored_at": _iso(doc.get("scored_at")),
    }


def _standing(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {
        "at_risk": bool(doc.get("at_risk")),
        "since": _iso(doc.get("since")),
        "crossings": int(doc.get("crossing", 0)),
        "score": doc.get("score"),
        "scored_at": _iso(doc.get("scored_at")),
    }


def _summary(cases: Sequence[CaseFacts]) -> dict[str, Any]:
    answered = [case for case in cases if case.csat is not None]
    by_cause: dict[str, int] = {}
    for case in cases:
        cause = str(case.root_cause or "none")
        by_cause[cause] = by_cause.get(cause, 0) + 1
    return {
        "cases": len(cases),
        "open_cases": sum(1 for case in cases if case.closed_at is None),
        "by_root_cause": dict(sorted(by_cause.items())),
        "reopens": sum(case.reopen_count for case in cases),
        "escalations": sum(case.escalation_count for case in cases),
        "deadlines_missed": sum(_missed(case) for case in cases),
        "surveys_answered": len(answered),
        "csat_mean": round(sum(c.csat or 0 for c in answered) / len(answered), 2)
        if answered
        else None,
        "churn_intent_cases": sum(1 for case in cases if _churn(case)),
        "promises_made": sum(case.promises_made for case in cases),
        "promises_broken": sum(case.promises_broken for case in cases),
        "promises_overdue": sum(case.promises_overdue for case in cases),
    }


def _missed(case: CaseFacts) -> int:
    return int(case.first_response_sla_met is False) + int(case.resolution_sla_met is False)


def _churn(case: CaseFacts) -> bool:
    return case.churn_evidence is not None or CHURN_SIGNAL in case.signals


def _history_row(case: CaseFacts) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "opened_at": _iso(case.opened_at),
        "closed_at": _iso(case.closed_at),
        "channel": case.channel,
        "root_cause": case.root_cause,
        "secondary_cause": case.secondary_cause,
        "urgency": case.urgency,
        "priority": case.priority,
        "team": case.team,
        "outcome": case.outcome,
        "csat": case.csat,
        "ratio": case.ratio,
        "verdict": case.verdict,
        "solved": case.solved,
        "reopen_count": case.reopen_count,
        "escalation_count": case.escalation_count,
        "deadlines_missed": _missed(case),
        "promises_made": case.promises_made,
        "promises_kept": case.promises_kept,
        "promises_broken": case.promises_broken,
        "promises_overdue": case.promises_overdue,
        "churn_intent": case.churn_evidence if _churn(case) else None,
        "text": case.text,
    }


def _signal(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event_id": doc["_id"],
        "event": doc["event"],
        "at": _iso(doc["at"]),
        "crossing": doc["crossing"],
        "score": doc["score"],
        "reasons": doc.get("reasons", []),
        "open_case_ids": doc.get("open_case_ids", []),
    }


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).isoformat()
