"""insights' HTTP API: reports over the cases' projection, every figure leading to its
cases, and the review of each case. Every route needs an API key (shared/auth.py); only
recording a lesson needs the write scope.

Periods are days in UTC: ``from`` and ``to`` are both included. Filters are the
dimensions by name, each any number of times (``team=billing&team=logistics``); a report
counts the cases opened in the period.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from services.insights.domain import CaseFacts
from services.insights.reports import Interval, figures, interval_start, trend
from services.insights.review import review
from services.insights.settings import InsightsSettings
from services.insights.store import InsightsStore, decode_cursor
from services.insights.top_issues import MAX_TEXTS, Complaint, top_issues
from shared.auth import api_client
from shared.http import PROBLEM_JSON

PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 429: PROBLEM}

router = APIRouter(prefix="/v1/reports", dependencies=[Depends(api_client)], responses=AUTH_ERRORS)
reviews = APIRouter(prefix="/v1/reviews", dependencies=[Depends(api_client)], responses=AUTH_ERRORS)

Dimension = Literal[
    "root_cause", "team", "agent", "channel", "priority", "language", "customer_tier"
]
# The columns of the CSV export, one row per case, in this order.
CSV_COLUMNS = (
    "case_id", "customer_key", "feedback_id", "channel", "language", "customer_tier",
    "root_cause", "secondary_cause", "urgency", "priority", "team", "agent",
    "opened_at", "first_response_due", "first_response_at", "resolution_due", "resolved_at",
    "closed_at", "outcome", "first_response_sla_met", "resolution_sla_met", "sla_breached",
    "reopen_count", "escalation_count", "callbacks_scheduled", "surveys_sent",
    "csat", "expected", "perceived", "ratio", "verdict", "solved",
    "expected_outcome", "expectation_met",
    "promises_made", "promises_kept", "promises_broken", "promises_overdue", "text",
)  # fmt: skip
# What a case folded before a column existed shows for it.
COLUMN_DEFAULTS: dict[str, Any] = {
    "promises_made": 0, "promises_kept": 0, "promises_broken": 0, "promises_overdue": 0,
}  # fmt: skip


class Period(BaseModel):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to", description="Included")


def _settings(request: Request) -> InsightsSettings:
    settings: InsightsSettings = request.app.state.settings
    return settings


def _store(request: Request) -> InsightsStore:
    store: InsightsStore = request.app.state.store
    return store


def now_of(request: Request) -> datetime:
    """Now by the service's clock: the real one, but in tests that move it on."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def period(
    request: Request,
    start: Annotated[
        date | None, Query(alias="from", description="First day (UTC); default: 29 days ago")
    ] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (UTC), included")] = None,
) -> Period:
    today = now_of(request).date()
    end = end or today
    start = start or end - timedelta(days=29)
    if start > end:
        raise HTTPException(422, "from is after to")
    longest = _settings(request).max_report_days
    if (end - start).days + 1 > longest:
        raise HTTPException(422, f"a report covers at most {longest} days")
    return Period(start=start, end=end)


def filters(
    root_cause: Annotated[list[str] | None, Query()] = None,
    team: Annotated[list[str] | None, Query()] = None,
    agent: Annotated[list[str] | None, Query()] = None,
    channel: Annotated[list[str] | None, Query()] = None,
    priority: Annotated[list[str] | None, Query()] = None,
    language: Annotated[list[str] | None, Query()] = None,
    customer_tier: Annotated[list[str] | None, Query()] = None,
) -> dict[str, list[str]]:
    """The dimensions filtered on, each with the values it may take."""
    given = {
        "root_cause": root_cause,
        "team": team,
        "agent": agent,
        "channel": channel,
        "priority": priority,
        "language": language,
        "customer_tier": customer_tier,
    }
    return {name: values for name, values in given.items() if values}


PeriodQuery = Annotated[Period, Depends(period)]
FiltersQuery = Annotated[dict[str, list[str]], Depends(filters)]


def _bounds(p: Period) -> tuple[datetime, datetime]:
    return (
        datetime.combine(p.start, time(), UTC),
        datetime.combine(p.end + timedelta(days=1), time(), UTC),
    )


@router.get(
    "/summary",
    summary="Volume, speed, deadlines, reopens, escalations, satisfaction and promises kept",
    description="One row for all the cases opened in the period, and with `by` one per value "
    "of that dimension (largest first). The figures are defined in docs/insights.md.",
)
async def summary(
    request: Request,
    p: PeriodQuery,
    f: FiltersQuery,
    by: Annotated[Dimension | None, Query(description="Group by this dimension")] = None,
) -> dict[str, Any]:
    store = _store(request)
    end = p.end + timedelta(days=1)
    totals = await store.rollups(p.start, end, f, None)
    answer: dict[str, Any] = {
        **p.model_dump(by_alias=True, mode="json"),
        "filters": f,
        "total": figures(totals.get("all", {})),
    }
    if by is not None:
        groups = await store.rollups(p.start, end, f, by)
        rows = [{by: value, **figures(sums)} for value, sums in groups.items()]
        rows = [row for row in rows if row["cases"] > 0]
        answer["by"] = by
        answer["groups"] = sorted(rows, key=lambda row: (-row["cases"], str(row[by])))
    return answer


@router.get(
    "/trend",
    summary="The figures per day or week, with what rose enough to matter",
    description="One row per interval (weeks start on Monday), each with the change of its "
    "case count against the interval before and `rising`: the figures whose rise matters "
    "(a case count up 30% and by at least 5 cases; a reopen, escalation or dissatisfied "
    "rate up 5 points with at least 5 cases). docs/insights.md.",
)
async def trend_report(
    request: Request,
    p: PeriodQuery,
    f: FiltersQuery,
    interval: Annotated[Interval, Query()] = "day",
) -> dict[str, Any]:
    step = timedelta(days=7 if interval == "week" else 1)
    first = interval_start(p.start, interval) - step  # the interval compared with the first
    sums = await _store(request).rollups_per_day(first, p.end + timedelta(days=1), f)
    return {
        **p.model_dump(by_alias=True, mode="json"),
        "filters": f,
        "interval": interval,
        "rows": trend(sums, p.start, p.end, interval),
    }


@router.get(
    "/top-issues",
    summary="What exactly customers complain about, per cause, this period",
    description="Within each root cause, groups of similar complaints (by their words and "
    "Chinese character pairs), largest first, each with its top terms, its size, how many "
    "of the previous period's complaints (as long, just before) are nearest to it, and "
    "example case ids. The most recent 2,000 complaints of a cause are compared.",
)
async def top_issues_report(
    request: Request,
    p: PeriodQuery,
    f: FiltersQuery,
    limit: Annotated[int, Query(ge=1, le=50, description="Groups per cause")] = 10,
) -> dict[str, Any]:
    start, end = _bounds(p)
    causes = await issues_by_cause(_store(request), start, end, f, limit)
    return {**p.model_dump(by_alias=True, mode="json"), "filters": f, "causes": causes}


async def issues_by_cause(
    store: InsightsStore,
    start: datetime,
    end: datetime,
    f: Mapping[str, Sequence[str]],
    limit: int,
) -> list[dict[str, Any]]:
    """The top issues of each root cause from ``start`` to ``end``, the cause with the
    most complaints first, compared with the period as long just before."""
    before = start - (end - start)
    current = await store.texts(start, end, f, MAX_TEXTS)
    previous = await store.texts(before, start, f, MAX_TEXTS)
    causes = []
    for cause, texts in sorted(current.items(), key=lambda item: (-len(item[1]), item[0])):
        found = await run_in_threadpool(
            top_issues,
            [Complaint(*text) for text in texts],
            [Complaint(*text) for text in previous.get(cause, [])],
            limit=limit,
        )
        causes.append(
            {
                "root_cause": cause,
                "complaints": len(texts),
                "issues": [
                    {
                        "terms": issue.terms,
                        "count": issue.count,
                        "previous": issue.previous,
                        "change": issue.change,
                        "case_ids": issue.case_ids,
                    }
                    for issue in found
                ],
            }
        )
    return causes


@router.get(
    "/cases",
    summary="The cases behind any figure: the same period and filters, page by page",
    description="Cases by opening time. `next_cursor`, when present, gives the next page "
    "(pagination by key: every page costs the same, and a case opened meanwhile is not "
    "shown twice).",
)
async def cases(
    request: Request,
    p: PeriodQuery,
    f: FiltersQuery,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except ValueError as exc:
            raise HTTPException(422, f"cursor: {exc}") from exc
    start, end = _bounds(p)
    page = await _store(request).case_page(start, end, f, after, limit)
    return {
        **p.model_dump(by_alias=True, mode="json"),
        "filters": f,
        "cases": [_public(facts) for facts in page.cases],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/cases.csv",
    summary="Every case of the period as one CSV row",
    description="UTF-8 with a byte-order mark, so that spreadsheets in any locale (Chinese "
    "included) open it correctly; streamed, so any range can be exported.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def cases_csv(request: Request, p: PeriodQuery, f: FiltersQuery) -> StreamingResponse:
    start, end = _bounds(p)
    rows = _store(request).stream_cases(start, end, f)
    name = f"closeloop-cases-{p.start.isoformat()}-{p.end.isoformat()}.csv"
    return StreamingResponse(
        csv_lines(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def csv_lines(rows: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[bytes]:
    """The CSV file, a header and then a line per case, as it is read."""
    yield "\ufeff".encode() + csv_row(CSV_COLUMNS)
    async for facts in rows:
        yield csv_row([text_cell(_column(facts, column)) for column in CSV_COLUMNS])


def csv_row(values: Sequence[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue().encode()


def text_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    text = str(value)
    # A cell a spreadsheet would run as a formula is kept as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column(facts: Mapping[str, Any], column: str) -> Any:
    return facts.get(column, COLUMN_DEFAULTS.get(column))


def _public(facts: Mapping[str, Any]) -> dict[str, Any]:
    return {column: _column(facts, column) for column in CSV_COLUMNS}


# --- reviews ----------------------------------------------------------------------------


class LessonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lesson: str = Field(min_length=1, max_length=2_000, description="What should change")
    by: str = Field(min_length=1, max_length=200, description="Who draws the lesson")


async def _facts(request: Request, case_id: str) -> CaseFacts:
    facts = await _store(request).facts(case_id)
    if facts is None or facts.opened_at is None:
        raise HTTPException(404, f"insights knows no case {case_id}")
    return facts


@reviews.get(
    "/{case_id}",
    summary="The review of a case: the handbook's questions answered from its facts",
    description="Answered in time, resolved in time, solution accepted, customer satisfied, "
    "reopened, escalated, promises kept (with each promise and its result), whether the "
    "customer got what they asked for, and the lesson recorded for it, if any.",
)
async def case_review(
    request: Request, case_id: Annotated[str, Path(max_length=200)]
) -> dict[str, Any]:
    facts = await _facts(request, case_id)
    lesson = await _store(request).lesson(case_id)
    return {**review(facts), "lesson": _lesson(lesson) if lesson else None}


@reviews.put(
    "/{case_id}/lesson",
    summary="Record the lesson of a case (replaces an earlier one); needs the write scope",
    description="Lessons are listed per cause in the lessons report and the weekly report.",
)
async def record_lesson(
    request: Request, case_id: Annotated[str, Path(max_length=200)], body: LessonIn
) -> dict[str, Any]:
    facts = await _facts(request, case_id)
    doc = await _store(request).record_lesson(facts, body.lesson, body.by, now_of(request))
    return _lesson(doc)


@router.get(
    "/lessons",
    summary="The lessons recorded in the period, per cause",
)
async def lessons_report(request: Request, p: PeriodQuery, f: FiltersQuery) -> dict[str, Any]:
    start, end = _bounds(p)
    docs = await _store(request).lessons_between(start, end, f)
    return {**p.model_dump(by_alias=True, mode="json"), "filters": f, "causes": by_cause(docs)}


def by_cause(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    causes: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        causes.setdefault(doc["root_cause"], []).append(_lesson(doc))
    return [{"root_cause": cause, "lessons": items} for cause, items in causes.items()]


def _lesson(doc: Mapping[str, Any]) -> dict[str, Any]:
    recorded: datetime = doc["recorded_at"]
    return {
        "case_id": doc["_id"],
        "lesson": doc["lesson"],
        "by": doc["by"],
        "recorded_at": recorded.astimezone(UTC).isoformat(),
        "root_cause": doc["root_cause"],
        "team": doc["team"],
    }
