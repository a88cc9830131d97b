"""Followup's case API for agents' tools (authenticated with an API key): cases and their
timeline, responses, notes, resolutions, callback outcomes, and survey answers that
arrive by SMS or IVR."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.followup.auth import agent_client
from services.followup.decisions import SurveyAnswer
from services.followup.domain import (
    Callback,
    CallbackOutcome,
    Case,
    CaseStatus,
    NotFound,
    OutcomeRejected,
    Promise,
    PromiseOutcome,
    Refusal,
    Refused,
    SurveyUnavailable,
)
from services.followup.flows import Followup
from services.followup.promises import MakePromise, SettlePromise
from shared.contracts import Classification, Feedback, Routing, UtcDatetime
from shared.http import PROBLEM_JSON, problem
from shared.outbox import Conflict

PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: PROBLEM,
    404: PROBLEM,
    409: PROBLEM,
    422: PROBLEM,
}

router = APIRouter(prefix="/v1", tags=["cases"], dependencies=[Depends(agent_client)])

# Skipping is linear in the database: deep pages cost as much as reading everything
# before them, and a number past 64 bits cannot be sent at all.
MAX_OFFSET = 100_000
Client = Annotated[str, Depends(agent_client)]


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    detail: str | None = None


class CallbackView(BaseModel):
    callback_id: str
    purpose: str
    due_at: datetime
    attempt: int
    reason: str
    status: Literal["scheduled", "due", "done", "cancelled"]
    scheduled_at: datetime
    outcome: CallbackOutcome | None = None
    outcome_at: datetime | None = None
    outcome_by: str | None = None
    note: str | None = None
    next_callback_id: str | None = None

    @classmethod
    def of(cls, callback: Callback) -> CallbackView:
        return cls.model_validate(callback.model_dump())


class PromiseView(BaseModel):
    promise_id: str
    what: str
    due_at: datetime
    due_in: str | None = None
    made_by: str
    made_at: datetime
    status: Literal["open", "kept", "broken"]
    overdue: bool = Field(description="Its deadline passed by the grace with no outcome")
    outcome_at: datetime | None = None
    outcome_by: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, promise: Promise) -> PromiseView:
        return cls.model_validate(promise.model_dump())


class CaseView(BaseModel):
    case_id: str
    status: CaseStatus
    outcome: str | None
    feedback_id: str
    customer_key: str
    priority: str
    team: str
    agent: str | None
    queued: bool = False
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
    sla: dict[str, Any]
    callbacks: list[CallbackView]
    callbacks_made: int
    responses: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    resolutions: list[dict[str, Any]]
    surveys: list[dict[str, Any]]
    linked_feedback: list[dict[str, Any]]
    promises: list[PromiseView] = Field(default_factory=list, description="Earliest due first")
    last_update_at: datetime | None = Field(
        default=None, description="When the customer was last told something"
    )
    timeline: list[TimelineEntry]

    @classmethod
    def of(cls, case: Case) -> CaseView:
        callbacks = sorted(case.callbacks.values(), key=lambda cb: cb.due_at)
        promises = sorted(case.promises.values(), key=lambda p: p.due_at)
        return cls.model_validate(
            {
                **case.model_dump(exclude={"callbacks", "outbox", "promises", "notices"}),
                "case_id": case.id,
                "callbacks": [CallbackView.of(cb) for cb in callbacks],
                "promises": [PromiseView.of(p) for p in promises],
            }
        )


class CasePage(BaseModel):
    items: list[CaseView]
    total: int
    limit: int
    offset: int


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responded_by: str = Field(min_length=1, max_length=200, description="Agent id")
    message: str | None = Field(
        default=None, max_length=5000, description="What the customer was told"
    )


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    author: str = Field(min_length=1, max_length=200, description="Agent id")
    text: str = Field(min_length=1, max_length=10000)


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
    solved: bool = Field(description="Whether the problem is solved")
    comment: str | None = Field(default=None, max_length=5000)
    language: str | None = Field(
        default=None, max_length=16, description="Language of the comment (zh, en, ...)"
    )
    survey_id: str | None = Field(
        default=None, description="The survey answered; the case's current one if left out"
    )
    expectation_met: bool | None = Field(
        default=None, description="Whether the customer got what they asked for, if asked"
    )


class SurveyResult(BaseModel):
    case_id: str
    ratio: float
    verdict: str
    status: str


class CallbackOutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: CallbackOutcome
    by: str = Field(min_length=1, max_length=200, description="Agent id or dialer name")
    note: str | None = Field(default=None, max_length=5000)
    reschedule_at: UtcDatetime | None = Field(
        default=None, description="Required for rescheduled: when to call again"
    )


class PromiseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    what: str = Field(min_length=1, max_length=2000, description="What was promised")
    due_at: UtcDatetime | None = Field(default=None, description="By when, as a time")
    due_in: str | None = Field(
        default=None,
        max_length=64,
        description="By when, as a duration: '3 working days' and '4 business hours' in the "
        "owner team's calendar, '2 days' and '90 minutes' of clock time, '3个工作日'",
    )
    by: str = Field(min_length=1, max_length=200, description="Agent id")


class PromiseOutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: PromiseOutcome
    by: str = Field(min_length=1, max_length=200, description="Agent id")
    note: str | None = Field(default=None, max_length=5000)


class PromiseOut(BaseModel):
    case_id: str
    promise: PromiseView


class CallbackOutcomeOut(BaseModel):
    case_id: str
    callback: CallbackView
    next_callback: CallbackView | None


def _followup(request: Request) -> tuple[Followup, Callable[[], datetime]]:
    return request.app.state.followup, request.app.state.clock


SURVEY_STATUS = {"answered": 410, "expired": 410, "superseded": 409, "unknown": 404}


def status_of(refusal: Refusal) -> int:
    if isinstance(refusal, NotFound):
        return 404
    if isinstance(refusal, SurveyUnavailable):
        return SURVEY_STATUS.get(refusal.state, 404)
    if isinstance(refusal, OutcomeRejected):
        return 422
    return 409


async def refused_problem(request: Request, exc: Exception) -> Response:
    """The RFC 9457 problem for a refused request (and for a case that kept changing
    under every attempt); installed by the app for ``Refused`` and ``Conflict``."""
    if isinstance(exc, Refused):
        status, detail = status_of(exc.refusal), exc.refusal.message
    else:
        assert isinstance(exc, Conflict)
        status, detail = 409, str(exc)
    return problem(status, HTTPStatus(status).phrase, detail)


@router.get("/cases", response_model=CasePage, responses=ERRORS)
async def list_cases(
    request: Request,
    status: CaseStatus | None = None,
    team: str | None = None,
    agent: str | None = None,
    feedback_id: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(
        default=0,
        ge=0,
        le=MAX_OFFSET,
        description="Cases to skip; beyond the first 100,000 narrow the list with the filters",
    ),
) -> CasePage:
    """Cases, newest first, filtered by status, team, agent or the feedback that opened them."""
    followup, _ = _followup(request)
    filters = {"status": status, "team": team, "agent": agent, "feedback_id": feedback_id}
    cases, total = await followup.store.find_cases(
        {k: v for k, v in filters.items() if v is not None}, limit=limit, offset=offset
    )
    return CasePage(items=[CaseView.of(c) for c in cases], total=total, limit=limit, offset=offset)


@router.get("/cases/{case_id}", response_model=CaseView, responses=ERRORS)
async def get_case(case_id: str, request: Request) -> CaseView:
    """One case with its full timeline."""
    followup, _ = _followup(request)
    case = await followup.store.get(case_id)
    if case is None:
        raise Refused(NotFound(f"no case {case_id}"))
    return CaseView.of(case)


@router.post("/cases/{case_id}/responses", response_model=CaseView, responses=ERRORS)
async def record_response(
    case_id: str, body: ResponseIn, request: Request, client: Client
) -> CaseView:
    """An agent answered the customer. The first answer after (re-)routing stops the
    first-response SLA timer and emits case.first_response."""
    followup, clock = _followup(request)
    case = await followup.respond(
        case_id, by=body.responded_by, message=body.message, client=client, now=clock()
    )
    return CaseView.of(case)


@router.post("/cases/{case_id}/notes", response_model=CaseView, responses=ERRORS)
async def add_note(case_id: str, body: NoteIn, request: Request, client: Client) -> CaseView:
    """An internal note on the case; the customer never sees it."""
    followup, clock = _followup(request)
    case = await followup.add_note(
        case_id, by=body.author, text=body.text, client=client, now=clock()
    )
    return CaseView.of(case)


@router.post("/cases/{case_id}/resolve", response_model=CaseView, responses=ERRORS)
async def resolve_case(case_id: str, body: ResolveIn, request: Request, client: Client) -> CaseView:
    """Record the solution and what was promised; the customer is then asked for the
    satisfaction check (survey.requested with a signed link) and a return visit is
    scheduled."""
    followup, clock = _followup(request)
    case = await followup.resolve(
        case_id,
        by=body.resolved_by,
        solution=body.solution,
        promise=body.promise,
        client=client,
        now=clock(),
    )
    return CaseView.of(case)


@router.post(
    "/cases/{case_id}/survey",
    response_model=SurveyResult,
    responses={**ERRORS, 410: PROBLEM},
)
async def answer_survey(
    case_id: str, body: SurveyIn, request: Request, client: Client
) -> SurveyResult:
    """The customer's satisfaction check as collected by SMS or IVR: closes the case, or
    reopens and escalates it when the customer is not satisfied or the problem is not
    solved. Each survey is answered once (410 afterwards or once it expired)."""
    followup, clock = _followup(request)
    answer = SurveyAnswer(
        csat=body.csat,
        expected=body.expected,
        perceived=body.perceived,
        solved=body.solved,
        comment=body.comment,
        expectation_met=body.expectation_met,
    )
    case, judged = await followup.answer_survey(
        case_id,
        answer,
        now=clock(),
        survey_id=body.survey_id,
        language=body.language,
        via=f"api:{client}",
    )
    return SurveyResult(
        case_id=case_id, ratio=judged.ratio, verdict=judged.verdict, status=case.status
    )


@router.post(
    "/callbacks/{callback_id}/outcome",
    response_model=CallbackOutcomeOut,
    responses=ERRORS,
    tags=["callbacks"],
)
async def record_callback_outcome(
    callback_id: str, body: CallbackOutcomeIn, request: Request
) -> CallbackOutcomeOut:
    """How a callback went: reached, no_answer (tried again with backoff up to the
    policy's attempts), wrong_number, or rescheduled (to ``reschedule_at``). Reporting
    the same outcome again changes nothing."""
    followup, clock = _followup(request)
    case, callback, following = await followup.record_callback_outcome(
        callback_id,
        outcome=body.outcome,
        by=body.by,
        note=body.note,
        reschedule_at=body.reschedule_at,
        now=clock(),
    )
    return CallbackOutcomeOut(
        case_id=case.id,
        callback=CallbackView.of(callback),
        next_callback=CallbackView.of(following) if following else None,
    )


@router.post(
    "/cases/{case_id}/promises",
    response_model=PromiseOut,
    status_code=201,
    responses={**ERRORS, 200: {"model": PromiseOut, "description": "The same promise again"}},
    tags=["promises"],
)
async def make_promise(
    case_id: str, body: PromiseIn, request: Request, response: Response, client: Client
) -> PromiseOut:
    """Record what was promised to the customer and by when (``due_at``, or ``due_in`` in
    the owner team's business calendar). The promise gets a warning before it is due,
    promise.due at its deadline and, with no outcome by the policy's grace, becomes
    overdue and escalates the case; the customer is told what was promised. The same
    promise posted again while it is open is the one promise (200)."""
    followup, clock = _followup(request)
    command = MakePromise(
        what=body.what, by=body.by, client=client, due_at=body.due_at, due_in=body.due_in
    )
    promise, created = await followup.make_promise(case_id, command, clock())
    if not created:
        response.status_code = 200
    return PromiseOut(case_id=case_id, promise=PromiseView.of(promise))


@router.post(
    "/cases/{case_id}/promises/{promise_id}/outcome",
    response_model=PromiseOut,
    responses=ERRORS,
    tags=["promises"],
)
async def record_promise_outcome(
    case_id: str, promise_id: str, body: PromiseOutcomeIn, request: Request
) -> PromiseOut:
    """Whether a promise was kept or broken. A broken promise escalates the case (unless
    its being overdue did already); the same outcome again changes nothing, another one
    is a conflict."""
    followup, clock = _followup(request)
    command = SettlePromise(promise_id, body.outcome, body.by, body.note)
    promise = await followup.settle_promise(case_id, command, clock())
    return PromiseOut(case_id=case_id, promise=PromiseView.of(promise))
