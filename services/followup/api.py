"""Followup's HTTP API for agents' tools and survey answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field

from services.followup.domain import OPEN_STATUSES, closed_summary, judge_satisfaction
from services.followup.outbox import publish_outbox
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import (
    CaseReopened,
    CaseResolved,
    Channel,
    Classification,
    Feedback,
    Routing,
    SurveyAnswered,
    SurveyRequested,
)
from shared.envelope import Event, derive_id, new_event
from shared.http import PROBLEM_JSON
from shared.logging import log_context
from shared.runtime import Service

SOURCE = "/closeloop/followup"
PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}

CASES_RESOLVED = Counter("closeloop_cases_resolved_total", "Cases resolved", ["team"])
CASES_CLOSED = Counter("closeloop_cases_closed_total", "Cases closed, by outcome", ["outcome"])
CASES_REOPENED = Counter("closeloop_cases_reopened_total", "Cases reopened by the customer")
SURVEY_ANSWERS = Counter(
    "closeloop_survey_answers_total", "Survey answers, by verdict", ["verdict"]
)
SATISFACTION_RATIO = Histogram(
    "closeloop_satisfaction_ratio",
    "perceived / expected of each survey answer",
    buckets=(0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0, 5.0),
)
CSAT = Histogram(
    "closeloop_csat", "CSAT score (1-5) of each survey answer", buckets=(1, 2, 3, 4, 5)
)

router = APIRouter(prefix="/v1", tags=["cases"])


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    detail: str | None = None


class CaseView(BaseModel):
    case_id: str
    status: Literal["open", "resolved", "reopened", "closed"]
    outcome: str | None
    feedback_id: str
    customer_key: str
    priority: str
    team: str
    agent: str | None
    feedback: Feedback
    classification: Classification
    routing: Routing
    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopen_count: int
    callbacks: list[dict[str, Any]]
    resolutions: list[dict[str, Any]]
    surveys: list[dict[str, Any]]
    timeline: list[TimelineEntry]

    @classmethod
    def of(cls, case: dict[str, Any]) -> CaseView:
        return cls.model_validate({**case, "case_id": case["_id"]})


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolved_by: str = Field(min_length=1, max_length=200, description="Agent id")
    solution: str = Field(min_length=1, max_length=5000, description="What was done")
    promise: str | None = Field(
        default=None, max_length=2000, description="What was promised to the customer, if anything"
    )


class SurveyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csat: int = Field(ge=1, le=5, description="Overall satisfaction, 1 (very bad) to 5 (very good)")
    expected: int = Field(ge=1, le=5, description="What the customer expected, 1 to 5")
    perceived: int = Field(ge=1, le=5, description="What the customer experienced, 1 to 5")
    solved: bool = Field(default=True, description="Whether the problem is solved")
    comment: str | None = Field(default=None, max_length=5000)


class SurveyResult(BaseModel):
    case_id: str
    ratio: float
    verdict: str
    status: str


def _deps(request: Request) -> tuple[Service, FollowupStore, FollowupSettings]:
    return request.app.state.service, request.app.state.store, request.app.state.settings


async def _case_or_404(store: FollowupStore, case_id: str) -> dict[str, Any]:
    case = await store.get(case_id)
    if case is None:
        raise HTTPException(404, f"no case {case_id}")
    return case


class CasePage(BaseModel):
    items: list[CaseView]
    total: int
    limit: int
    offset: int


@router.get("/cases", response_model=CasePage)
async def list_cases(
    request: Request,
    status: Literal["open", "resolved", "reopened", "closed"] | None = None,
    team: str | None = None,
    agent: str | None = None,
    feedback_id: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> CasePage:
    """Cases, newest first, filtered by status, team, agent or the feedback that opened them."""
    _, store, _ = _deps(request)
    filters = {"status": status, "team": team, "agent": agent, "feedback_id": feedback_id}
    cases, total = await store.find_cases(
        {k: v for k, v in filters.items() if v is not None}, limit=limit, offset=offset
    )
    return CasePage(items=[CaseView.of(c) for c in cases], total=total, limit=limit, offset=offset)


@router.get("/cases/{case_id}", response_model=CaseView, responses={404: PROBLEM})
async def get_case(case_id: str, request: Request) -> CaseView:
    _, store, _ = _deps(request)
    return CaseView.of(await _case_or_404(store, case_id))


@router.post(
    "/cases/{case_id}/resolve",
    response_model=CaseView,
    responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
async def resolve_case(case_id: str, body: ResolveIn, request: Request) -> CaseView:
    """Record the solution; the customer is then asked for the satisfaction check."""
    service, store, settings = _deps(request)
    case = await _case_or_404(store, case_id)
    now = utcnow()
    round_ = str(case.get("reopen_count", 0))
    within_sla = now <= case["resolution_due"]
    resolved = CaseResolved(
        case_id=case_id,
        customer_key=case["customer_key"],
        occurred_at=now,
        resolved_by=body.resolved_by,
        solution=body.solution,
        promise=body.promise,
        within_sla=within_sla,
    )
    survey_id = derive_id("survey", case_id, round_)
    survey = SurveyRequested(
        case_id=case_id,
        customer_key=case["customer_key"],
        occurred_at=now,
        survey_id=survey_id,
        channel=Channel(case["feedback"]["channel"]),
        expires_at=now + timedelta(hours=settings.survey_expiry_hours),
    )
    events: list[Event[Any]] = [
        new_event(resolved, source=SOURCE, cause=f"{case_id}:resolve:{round_}", time=now),
        new_event(survey, source=SOURCE, cause=f"{case_id}:survey:{round_}", time=now),
    ]
    set_fields: dict[str, Any] = {"status": "resolved", "resolved_at": now}
    if case.get("first_response_at") is None:
        set_fields["first_response_at"] = now
    with log_context(case_id=case_id):
        updated = await store.transition(
            case_id,
            from_statuses=OPEN_STATUSES,
            set_fields=set_fields,
            push={
                "resolutions": {
                    "at": now,
                    "by": body.resolved_by,
                    "solution": body.solution,
                    "promise": body.promise,
                    "survey_id": survey_id,
                }
            },
            timeline=[
                {"at": now, "event": "case.resolved", "detail": f"by {body.resolved_by}"},
                {"at": now, "event": "survey.requested", "detail": f"survey {survey_id}"},
            ],
            events=events,
            now=now,
        )
        if updated is None:
            raise HTTPException(
                409,
                f"case {case_id} is {case['status']}; only open or reopened cases can be resolved",
            )
        CASES_RESOLVED.labels(updated["team"]).inc()
        await publish_outbox(service.producer, store, updated)
    return CaseView.of(updated)


@router.post(
    "/cases/{case_id}/survey",
    response_model=SurveyResult,
    responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM},
)
async def answer_survey(case_id: str, body: SurveyIn, request: Request) -> SurveyResult:
    """The customer's satisfaction check: closes the case, or reopens it when the
    customer is not satisfied or the problem is not solved."""
    service, store, settings = _deps(request)
    case = await _case_or_404(store, case_id)
    if case["status"] != "resolved":
        raise HTTPException(
            409, f"case {case_id} is {case['status']}; the survey follows a resolution"
        )
    now = utcnow()
    round_ = str(case.get("reopen_count", 0))
    survey_id = (
        case["resolutions"][-1]["survey_id"]
        if case.get("resolutions")
        else derive_id("survey", case_id, round_)
    )
    judged = judge_satisfaction(
        csat=body.csat,
        expected=body.expected,
        perceived=body.perceived,
        solved=body.solved,
        satisfied_ratio=settings.satisfied_ratio,
        delighted_ratio=settings.delighted_ratio,
    )
    answered = SurveyAnswered(
        case_id=case_id,
        customer_key=case["customer_key"],
        occurred_at=now,
        survey_id=survey_id,
        csat=body.csat,
        expected=body.expected,
        perceived=body.perceived,
        ratio=judged.ratio,
        solved=body.solved,
        verdict=judged.verdict,
        comment=body.comment,
    )
    answer = {
        "at": now,
        "survey_id": survey_id,
        **body.model_dump(),
        "ratio": judged.ratio,
        "verdict": judged.verdict,
    }
    events: list[Event[Any]] = [
        new_event(answered, source=SOURCE, cause=f"{case_id}:answer:{round_}", time=now)
    ]
    timeline = [
        {
            "at": now,
            "event": "survey.answered",
            "detail": f"csat {body.csat}, ratio {judged.ratio}, {judged.verdict}",
        }
    ]
    inc: dict[str, int] | None = None
    if judged.closes_case:
        # The summary reads the case as it will be once this answer is recorded.
        closing = {**case, "surveys": [*case.get("surveys", []), answer]}
        closed = closed_summary(closing, outcome=judged.verdict, closed_at=now)
        events.append(new_event(closed, source=SOURCE, cause=f"{case_id}:close", time=now))
        timeline.append({"at": now, "event": "case.closed", "detail": f"outcome {judged.verdict}"})
        set_fields: dict[str, Any] = {
            "status": "closed",
            "closed_at": now,
            "outcome": judged.verdict,
        }
    else:
        reopen_count = int(case.get("reopen_count", 0)) + 1
        why = "problem not solved" if not body.solved else f"customer {judged.verdict}"
        reopened = CaseReopened(
            case_id=case_id,
            customer_key=case["customer_key"],
            occurred_at=now,
            reason=why,
            reopen_count=reopen_count,
        )
        events.append(
            new_event(reopened, source=SOURCE, cause=f"{case_id}:reopen:{round_}", time=now)
        )
        timeline.append({"at": now, "event": "case.reopened", "detail": why})
        set_fields = {"status": "reopened", "resolved_at": None}
        inc = {"reopen_count": 1}
    with log_context(case_id=case_id):
        updated = await store.transition(
            case_id,
            from_statuses=["resolved"],
            set_fields=set_fields,
            push={"surveys": answer},
            timeline=timeline,
            events=events,
            now=now,
            inc=inc,
        )
        if updated is None:
            raise HTTPException(
                409, f"case {case_id} changed meanwhile; the survey was already answered"
            )
        SURVEY_ANSWERS.labels(judged.verdict).inc()
        SATISFACTION_RATIO.observe(judged.ratio)
        CSAT.observe(body.csat)
        if judged.closes_case:
            CASES_CLOSED.labels(judged.verdict).inc()
        else:
            CASES_REOPENED.inc()
        await publish_outbox(service.producer, store, updated)
    return SurveyResult(
        case_id=case_id, ratio=judged.ratio, verdict=judged.verdict, status=updated["status"]
    )
