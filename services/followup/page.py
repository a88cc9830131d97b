"""The satisfaction page customers open from their survey link (Chinese and English).

No login: the signed link is the credential, good for one answer until it expires. A
link that is not valid counts as a failed attempt of the address that opened it
(shared/auth.py): past the limit, that address gets a 429 page until its window ends.
The page works without JavaScript and on small screens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.followup.decisions import SurveyAnswer
from services.followup.domain import (
    Case,
    Refused,
    SurveyState,
    SurveyUnavailable,
    closes_case,
    survey_state,
)
from services.followup.flows import Followup
from services.followup.links import InvalidLink, SurveyTicket
from shared.auth import Gate
from shared.config import load_yaml
from shared.contracts import ExpectedOutcome
from shared.http import page_route
from shared.pages import Catalog, browser_language, templates

HERE = Path(__file__).parent
TEXTS_FILE = HERE / "survey_texts.yaml"


def _try_again_later(request: Request) -> Response:
    """The page while the database is unreachable; the link stays good."""
    pages: SurveyPages = request.app.state.pages
    lang = pages.language(request, request.query_params.get("lang"), None)
    t = pages.catalog.get(lang)
    return pages.render("message.html", 503, lang, heading=t.try_later_title, message=t.try_later)


class TooManyGuesses(Exception):
    """The address is over the limit on failed attempts (guessed links among them)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


async def _within_failure_limit(request: Request) -> None:
    gate: Gate = request.app.state.gate
    wait = await gate.failures.retry_after(gate.address(request))
    if wait is not None:
        raise TooManyGuesses(wait)


async def too_many_guesses(request: Request, exc: Exception) -> Response:
    """The page for an address over the limit; installed by the app for TooManyGuesses."""
    assert isinstance(exc, TooManyGuesses)
    pages: SurveyPages = request.app.state.pages
    lang = pages.language(request, request.query_params.get("lang"), None)
    t = pages.catalog.get(lang)
    page = pages.render(
        "message.html", 429, lang, heading=t.unavailable_title, message=t.too_many_attempts
    )
    page.headers["Retry-After"] = str(exc.retry_after)
    return page


router = APIRouter(
    tags=["survey page"],
    include_in_schema=False,
    route_class=page_route(_try_again_later),
    dependencies=[Depends(_within_failure_limit)],
)

# The page has no scripts; the link must not leak through the Referer header.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class SurveyTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    html_lang: str
    language_name: str
    title: str
    intro: str
    csat_question: str
    csat_low: str
    csat_high: str
    expected_question: str
    expected_low: str
    expected_high: str
    perceived_question: str
    perceived_low: str
    perceived_high: str
    solved_question: str
    solved_yes: str
    solved_no: str
    expectation_question: str = Field(description="{outcome} is the name of what was asked for")
    expectation_yes: str
    expectation_no: str
    outcomes: dict[ExpectedOutcome, str] = Field(description="The name of every outcome")
    comment_question: str
    comment_hint: str
    submit: str
    required_error: str
    thanks_title: str
    thanks_closed: str
    thanks_reopened: str
    answered: str
    expired: str
    superseded: str
    invalid: str
    unavailable_title: str
    too_many_attempts: str
    try_later_title: str
    try_later: str
    switch_to: str
    switch_lang: str

    @field_validator("outcomes")
    @classmethod
    def _every_outcome(cls, value: dict[ExpectedOutcome, str]) -> dict[ExpectedOutcome, str]:
        missing = [o.value for o in ExpectedOutcome if o not in value]
        if missing:
            raise ValueError(f"outcomes needs a name for {', '.join(missing)}")
        return value


SurveyCatalog = Catalog[SurveyTexts]


class SurveyPages:
    def __init__(self, texts_file: Path = TEXTS_FILE) -> None:
        self.catalog = load_yaml(texts_file, SurveyCatalog)
        self.env = templates(HERE / "templates")

    def language(self, request: Request, asked: str | None, case: Case | None) -> str:
        """?lang= first, then the language the customer wrote in, then the browser's."""
        languages = self.catalog.languages
        if asked in languages:
            return str(asked)
        written = case.feedback.language if case is not None else None
        if written in languages:
            return str(written)
        return browser_language(request, languages) or "en"

    def render(self, template: str, status: int, lang: str, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            t=self.catalog.get(lang), lang=lang, **context
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def unavailable(self, lang: str, state: SurveyState | str) -> HTMLResponse:
        t = self.catalog.get(lang)
        message, status = {
            "answered": (t.answered, 410),
            "expired": (t.expired, 410),
            "superseded": (t.superseded, 410),
        }.get(state, (t.invalid, 404))
        return self.render(
            "message.html", status, lang, heading=t.unavailable_title, message=message
        )


def _parts(request: Request) -> tuple[Followup, SurveyPages, Callable[[], datetime]]:
    state = request.app.state
    return state.followup, state.pages, state.clock


async def _open(
    request: Request, token: str, asked: str | None
) -> tuple[SurveyTicket | None, Case | None, str]:
    followup, pages, _ = _parts(request)
    try:
        ticket = followup.links.read(token)
    except InvalidLink:
        gate: Gate = request.app.state.gate
        await gate.failures.count(gate.address(request))
        return None, None, pages.language(request, asked, None)
    case = await followup.store.get(ticket.case_id)
    return ticket, case, pages.language(request, asked, case)


async def _survey(
    request: Request, token: str, asked: str | None
) -> tuple[SurveyTicket | None, Case | None, str, SurveyState]:
    """The link's survey, its case, the page's language and the survey's state
    (``unknown`` for a link that is not valid or a case that does not exist)."""
    _, _, clock = _parts(request)
    ticket, case, lang = await _open(request, token, asked)
    if ticket is None or case is None:
        return None, None, lang, "unknown"
    return ticket, case, lang, survey_state(case, ticket.survey_id, clock())


@router.get("/survey/{token}", response_class=HTMLResponse)
async def survey_page(token: str, request: Request, lang: str | None = None) -> HTMLResponse:
    _, pages, clock = _parts(request)
    ticket, case, lang, state = await _survey(request, token, lang)
    if ticket is not None and ticket.expired(clock()):
        state = "expired"
    if state != "open" or case is None:
        return pages.unavailable(lang, state)
    return pages.render(
        "survey.html",
        200,
        lang,
        case_ref=case.reference,
        asked=asked_for(case),
        form={},
        error=None,
    )


def asked_for(case: Case) -> ExpectedOutcome | None:
    """What the customer asked for, if anything says: the survey asks whether they got it."""
    expectation = case.classification.expectation
    return expectation.outcome if expectation is not None else None


SCALE = {str(number): number for number in range(1, 6)}


def _scale(value: Any) -> int | None:
    """An answer on a 1-5 scale: one ASCII digit, as the form's radio buttons send it
    (int() would also take "٥", "５" or " 5")."""
    return SCALE.get(value) if isinstance(value, str) else None


@router.post("/survey/{token}", response_class=HTMLResponse)
async def submit_survey(token: str, request: Request) -> Response:
    followup, pages, clock = _parts(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    ticket, case, lang = await _open(request, token, form.get("lang"))
    if ticket is None or case is None:
        return pages.unavailable(lang, "unknown")
    now = clock()
    if ticket.expired(now):
        return pages.unavailable(lang, "expired")
    csat, expected, perceived = (_scale(form.get(k)) for k in ("csat", "expected", "perceived"))
    solved = {"yes": True, "no": False}.get(form.get("solved", ""))
    comment = form.get("comment", "").strip()[:5000] or None
    got = {"yes": True, "no": False}.get(form.get("expectation_met", ""))
    if csat is None or expected is None or perceived is None or solved is None:
        return pages.render(
            "survey.html",
            422,
            lang,
            case_ref=case.reference,
            asked=asked_for(case),
            form=form,
            error=pages.catalog.get(lang).required_error,
        )
    answer = SurveyAnswer(
        csat=csat,
        expected=expected,
        perceived=perceived,
        solved=solved,
        comment=comment,
        expectation_met=got if asked_for(case) is not None else None,
    )
    try:
        await followup.answer_survey(
            ticket.case_id, answer, now=now, survey_id=ticket.survey_id, language=lang, via="page"
        )
    except Refused as refused:
        if not isinstance(refused.refusal, SurveyUnavailable):
            raise
        return pages.unavailable(lang, refused.refusal.state)
    # Post/redirect/get: reloading the thank-you page shows it again instead of sending
    # the answer a second time. Relative, so it works under any path prefix.
    return RedirectResponse(f"./{token}/thanks?lang={lang}", status_code=303)


@router.get("/survey/{token}/thanks", response_class=HTMLResponse)
async def survey_thanks(token: str, request: Request, lang: str | None = None) -> Response:
    """The thank-you page of an answered survey, as often as it is opened."""
    _, pages, _ = _parts(request)
    ticket, case, lang, state = await _survey(request, token, lang)
    if state == "open":  # not answered yet: the form
        return RedirectResponse(f"../{token}?lang={lang}", status_code=303)
    survey = case.survey(ticket.survey_id) if ticket is not None and case is not None else None
    answer = survey.answer if survey is not None else None
    if answer is None or state != "answered":
        return pages.unavailable(lang, state)
    t = pages.catalog.get(lang)
    closed = closes_case(answer.solved, answer.verdict)
    message = t.thanks_closed if closed else t.thanks_reopened
    return pages.render("message.html", 200, lang, heading=t.thanks_title, message=message)
