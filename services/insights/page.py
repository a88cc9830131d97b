"""The report page, ``GET /reports``: a week's review on one screen, in Chinese or
English, with charts drawn on the server and no JavaScript.

The week is ``?week=2026-W48`` (ISO weeks, Monday to Sunday, UTC), by default the last
finished one, as report.weekly publishes it. The language is ``?lang=``, else the
browser's Accept-Language, else English. The page needs an insights API key: a browser
is asked for it as the password of HTTP Basic (any user name), and then sends it to the
cases and CSV links the page leads to as well.

Reading is :func:`week_data` (the store's rollups, top issues and lessons); shaping and
drawing is :func:`render_report`, pure, run in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from services.insights import charts
from services.insights.api import issues_by_cause, now_of
from services.insights.customers import Customers
from services.insights.reports import figures, interval_start, rising, trend
from services.insights.store import InsightsStore
from services.insights.weekly import last_finished_week, week_name, weekly_report
from shared.auth import browser_client
from shared.config import load_yaml
from shared.http import page_route
from shared.pages import Catalog, browser_language, templates

HERE = Path(__file__).parent
TEXTS_FILE = HERE / "report_texts.yaml"
REALM = "closeloop insights"
WEEKS_SHOWN = 8
ISSUES_PER_CAUSE = 3
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")

# No scripts at all; the charts are inline SVG, the styles inline.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class ReportTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    html_lang: str
    language_name: str
    switch_to: str
    switch_lang: str
    title: str
    week_heading: str
    in_progress: str
    previous_week: str
    next_week: str
    against_previous: str
    no_cases: str
    figures_heading: str
    figure: str
    this_week: str
    last_week: str
    change: str
    cases: str
    first_response_p90: str
    resolve_p90: str
    first_response_deadline_met: str
    resolution_deadline_met: str
    reopen_rate: str
    escalation_rate: str
    survey_response_rate: str
    csat_mean: str
    satisfaction_index: str
    dissatisfied: str
    not_known: str
    points: str
    minutes: str
    hours: str
    days: str
    at_least: str
    charts_heading: str
    volume_chart: str
    deadlines_chart: str
    first_response: str
    resolution: str
    satisfaction_chart: str
    csat_label: str
    index_label: str
    nothing_yet: str
    worse_heading: str
    worse_rule: str
    none_worse: str
    team: str
    root_cause: str
    what_rose: str
    cases_now: str
    cases_before: str
    see_cases: str
    top_heading: str
    top_intro: str
    terms: str
    count: str
    last_period: str
    examples: str
    no_issues: str
    lessons_heading: str
    no_lessons: str
    lesson_by: str
    exports_heading: str
    all_cases: str
    csv_export: str
    unauthorized_title: str
    unauthorized: str
    forbidden_title: str
    too_many_title: str
    too_many: str
    bad_week_title: str
    bad_week: str
    try_later_title: str
    try_later: str
    at_risk_heading: str
    at_risk_intro: str
    at_risk_now: str
    week_col: str
    told_at_risk: str
    told_recovered: str
    top_reasons: str
    customers_count: str
    no_at_risk: str
    worklist: str
    worklist_csv: str
    promise_kept_rate: str
    expectation_met_rate: str
    promises_heading: str
    promises_intro: str
    promises_made: str
    promises_kept: str
    promises_broken: str
    promises_overdue: str
    kept_rate: str
    no_promises: str
    expectations_heading: str
    expectations_intro: str
    expected_outcome: str
    answers_asked: str
    met_rate: str
    no_expectations: str
    causes: dict[str, str]
    figure_names: dict[str, str]
    score_parts: dict[str, str]
    outcomes: dict[str, str]

    def cause(self, value: str) -> str:
        return self.causes.get(value, value)


ReportCatalog = Catalog[ReportTexts]


def parse_week(text: str) -> date:
    """The Monday of an ISO week written ``2026-W48``."""
    found = WEEK.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not an ISO week such as 2026-W48")
    return date.fromisocalendar(int(found[1]), int(found[2]), 1)


@dataclass(frozen=True)
class WeekData:
    """What the page of the week starting ``monday`` shows, as read from the store."""

    monday: date
    today: date
    report: dict[str, Any]  # report.weekly's fields for this week
    previous: dict[str, Any]  # and for the week before
    volume: dict[str, list[int]]  # cases per root cause, one per week shown
    weekly: list[dict[str, Any]]  # the trend rows of the weeks shown
    issues: list[dict[str, Any]]  # top issues per cause
    signals: dict[str, list[int]]  # customer.at_risk and .recovered, one per week shown
    at_risk_now: int  # customers at risk as last told
    top_reasons: list[tuple[str, int]]  # score parts most at-risk customers have, with counts


def weeks_shown(monday: date) -> list[date]:
    return [monday - timedelta(days=7 * back) for back in range(WEEKS_SHOWN - 1, -1, -1)]


TOP_REASONS = 5


async def week_data(
    store: InsightsStore, customers: Customers, monday: date, today: date
) -> WeekData:
    report = await weekly_report(store, monday)
    previous = await weekly_report(store, monday - timedelta(days=7))
    weeks = weeks_shown(monday)
    end = monday + timedelta(days=7)
    per_day = await store.rollups_per_day_by(weeks[0], end, {}, "root_cause")
    volume: dict[str, list[int]] = {}
    for day, groups in per_day.items():
        at = (day - weeks[0]).days // 7
        for cause, sums in groups.items():
            counts = volume.setdefault(cause, [0] * len(weeks))
            counts[at] += int(sums.get("cases", 0))
    volume = {cause: counts for cause, counts in volume.items() if any(counts)}
    daily = await store.rollups_per_day(weeks[0] - timedelta(days=7), end, {})
    weekly = trend(daily, weeks[0], monday + timedelta(days=6), "week")
    start_at = datetime.combine(monday, time(), UTC)
    issues = await issues_by_cause(
        store, start_at, start_at + timedelta(days=7), {}, ISSUES_PER_CAUSE
    )
    signals = {"customer.at_risk": [0] * len(weeks), "customer.recovered": [0] * len(weeks)}
    first_at = datetime.combine(weeks[0], time(), UTC)
    for doc in await customers.signals_between(first_at, start_at + timedelta(days=7)):
        signals[doc["event"]][(doc["at"].date() - weeks[0]).days // 7] += 1
    return WeekData(
        monday=monday,
        today=today,
        report=report.model_dump(mode="json"),
        previous=previous.model_dump(mode="json"),
        volume=volume,
        weekly=weekly,
        issues=[cause for cause in issues if cause["issues"]],
        signals=signals,
        at_risk_now=await customers.at_risk_count(),
        top_reasons=top_reasons(await customers.at_risk_reasons()),
    )


def top_reasons(reasons: list[list[dict[str, Any]]]) -> list[tuple[str, int]]:
    """The parts that take points from the most at-risk customers, with how many."""
    counts: dict[str, int] = {}
    for customer in reasons:
        for part in {reason["part"] for reason in customer if reason["points"] < 0}:
            counts[part] = counts.get(part, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:TOP_REASONS]


# --- shaping (pure) ----------------------------------------------------------------------

# Each headline figure: its name in figures(), how it is written, and whether a rise is
# good news (True), bad news (False).
HEADLINE: tuple[tuple[str, str, bool], ...] = (
    ("cases", "count", False),
    ("first_response_p90_s", "duration", False),
    ("resolve_p90_s", "duration", False),
    ("first_response_deadline_met", "share", True),
    ("resolution_deadline_met", "share", True),
    ("reopen_rate", "share", False),
    ("escalation_rate", "share", False),
    ("survey_response_rate", "share", True),
    ("csat_mean", "score", True),
    ("satisfaction_index", "index", True),
    ("dissatisfied", "share", False),
    ("promise_kept_rate", "share", True),
    ("expectation_met_rate", "share", True),
)
LABELS = {
    "first_response_p90_s": "first_response_p90",
    "resolve_p90_s": "resolve_p90",
}


def duration(seconds: float, t: ReportTexts) -> str:
    if seconds < 3_600:
        return f"{seconds / 60:.0f} {t.minutes}"
    if seconds < 86_400:
        return f"{seconds / 3_600:.1f} {t.hours}"
    return f"{seconds / 86_400:.1f} {t.days}"


def written(kind: str, value: float | None, t: ReportTexts, *, at_least: bool = False) -> str:
    """A figure as the page writes it."""
    if value is None:
        return t.not_known
    if kind == "count":
        return f"{int(value):,}"
    if kind == "duration":
        return (f"{t.at_least} " if at_least else "") + duration(value, t)
    if kind == "share":
        return f"{100 * value:.0f}%"
    if kind == "score":
        return f"{value:.2f}"
    return f"{value:.1f}"


def change(kind: str, now: float | None, before: float | None, t: ReportTexts) -> str:
    """How a figure moved from last week: counts in cases and percent, shares in points,
    times in their unit, scores and the index in their own scale."""
    if now is None or before is None:
        return ""
    delta = now - before
    if delta == 0:
        return "0"
    if kind == "count":
        share = f" ({100 * delta / before:+.0f}%)" if before else ""
        return f"{int(delta):+,}{share}"
    if kind == "share":
        return f"{100 * delta:+.0f} {t.points}"
    if kind == "duration":
        sign = "+" if delta >= 0 else "-"
        return sign + duration(abs(delta), t)
    if kind == "score":
        return f"{delta:+.2f}"
    return f"{delta:+.1f}"


def headline(
    total: dict[str, Any], previous: dict[str, Any], t: ReportTexts
) -> list[dict[str, str]]:
    rows = []
    for name, kind, rise_is_good in HEADLINE:
        now, before = total.get(name), previous.get(name)
        tone = ""
        if now is not None and before is not None and now != before:
            tone = "better" if (now > before) == rise_is_good else "worse"
        at_least = bool(total.get(name.removesuffix("_s") + "_at_least"))
        rows.append(
            {
                "label": getattr(t, LABELS.get(name, name)),
                "now": written(kind, now, t, at_least=at_least),
                "before": written(kind, before, t),
                "change": change(kind, now, before, t),
                "tone": tone,
            }
        )
    return rows


def getting_worse(
    current: list[dict[str, Any]], previous: list[dict[str, Any]], by: str
) -> list[dict[str, Any]]:
    """The groups of ``by`` whose figures rose enough to matter since last week
    (reports.rising), most cases first."""
    before = {row[by]: row for row in previous}
    worse = []
    for row in current:
        earlier = before.get(row[by], figures({}))
        rose = rising(row, earlier)
        if rose:
            worse.append(
                {"value": row[by], "rose": rose, "cases": row["cases"], "before": earlier["cases"]}
            )
    return worse


def cases_link(monday: date, **filters: str) -> str:
    """The cases behind a figure of the week: the API, relative to the page."""
    query = {"from": monday.isoformat(), "to": (monday + timedelta(days=6)).isoformat()}
    return "v1/reports/cases?" + urlencode({**query, **filters})


def csv_link(monday: date) -> str:
    query = {"from": monday.isoformat(), "to": (monday + timedelta(days=6)).isoformat()}
    return "v1/reports/cases.csv?" + urlencode(query)


def page_link(monday: date, lang: str) -> str:
    return "reports?" + urlencode({"week": week_name(monday), "lang": lang})


def worse_rows(data: WeekData, t: ReportTexts) -> list[dict[str, Any]]:
    """The teams and causes whose figures got worse than the week before, with links."""
    report, previous = data.report, data.previous
    worse = []
    for by, label in (("team", t.team), ("root_cause", t.root_cause)):
        key = "by_team" if by == "team" else "by_root_cause"
        for row in getting_worse(report[key], previous[key], by):
            name = t.cause(row["value"]) if by == "root_cause" else row["value"]
            worse.append(
                {
                    "kind": label,
                    "name": name,
                    "rose": [t.figure_names.get(figure, figure) for figure in row["rose"]],
                    "cases": row["cases"],
                    "before": row["before"],
                    "link": cases_link(data.monday, **{by: row["value"]}),
                }
            )
    return worse


def promise_rows(data: WeekData, t: ReportTexts) -> list[dict[str, Any]]:
    """Each team and root cause whose cases of the week had promises: how many were
    made, kept, broken and overdue, and the kept rate (reports.promise_kept_rate), most
    promises first."""
    rows = []
    for by, label in (("team", t.team), ("root_cause", t.root_cause)):
        key = "by_team" if by == "team" else "by_root_cause"
        found = [row for row in data.report[key] if row.get("promises_made")]
        for row in sorted(found, key=lambda row: (-row["promises_made"], str(row[by]))):
            rows.append(
                {
                    "kind": label,
                    "name": t.cause(row[by]) if by == "root_cause" else row[by],
                    "made": row["promises_made"],
                    "kept": row["promises_kept"],
                    "broken": row["promises_broken"],
                    "overdue": row["promises_overdue"],
                    "rate": written("share", row.get("promise_kept_rate"), t),
                    "link": cases_link(data.monday, **{by: row[by]}),
                }
            )
    return rows


def expectation_rows(total: Mapping[str, Any], t: ReportTexts) -> list[dict[str, Any]]:
    """Per outcome customers asked for, the survey answers asked whether they got it and
    the share that said yes, most answers first."""
    asked = [
        (outcome, figures_of["asked"], figures_of["rate"])
        for outcome, figures_of in (total.get("expectation_met_by_outcome") or {}).items()
        if figures_of["asked"]
    ]
    return [
        {
            "outcome": t.outcomes.get(outcome, outcome),
            "asked": count,
            "rate": written("share", rate, t),
        }
        for outcome, count, rate in sorted(asked, key=lambda item: (-item[1], item[0]))
    ]


def week_charts(data: WeekData, t: ReportTexts, weeks: list[date]) -> dict[str, str]:
    """The page's three charts: volume by cause, deadlines by team, satisfaction."""
    teams = [row for row in data.report["by_team"] if row["cases"] > 0]
    return {
        "volume_chart": charts.volume_by_cause(
            weeks,
            data.volume,
            t.causes,
            title=t.volume_chart,
            empty=t.nothing_yet,
        ),
        "deadlines_chart": charts.deadlines_by_team(
            [row["team"] for row in teams],
            [row["first_response_deadline_met"] for row in teams],
            [row["resolution_deadline_met"] for row in teams],
            labels=(t.first_response, t.resolution),
            title=t.deadlines_chart,
            empty=t.nothing_yet,
        ),
        "satisfaction_chart": charts.satisfaction_over_time(
            weeks,
            [row["csat_mean"] for row in data.weekly],
            [row["satisfaction_index"] for row in data.weekly],
            labels=(t.csat_label, t.index_label),
            title=t.satisfaction_chart,
        ),
    }


def customers_part(data: WeekData, t: ReportTexts, weeks: list[date]) -> dict[str, Any]:
    """The customers' part of the page: at risk now, signals per week, top reasons."""
    return {
        "at_risk_now": data.at_risk_now,
        "signal_weeks": [
            {
                "week": week_name(week),
                "at_risk": data.signals["customer.at_risk"][i],
                "recovered": data.signals["customer.recovered"][i],
            }
            for i, week in enumerate(weeks)
        ],
        "top_reasons": [
            {"part": t.score_parts.get(part, part), "customers": count}
            for part, count in data.top_reasons
        ],
        "worklist": "v1/customers?" + urlencode({"at_risk": "true"}),
        "worklist_csv": "v1/customers.csv?" + urlencode({"at_risk": "true"}),
    }


def view(data: WeekData, t: ReportTexts, lang: str) -> dict[str, Any]:
    """Everything the template writes, charts included."""
    monday = data.monday
    weeks = weeks_shown(monday)
    report, previous = data.report, data.previous
    this_week = interval_start(data.today, "week")
    return {
        "t": t,
        "lang": lang,
        "week": week_name(monday),
        "heading": t.week_heading.format(
            week=week_name(monday),
            start=monday.isoformat(),
            end=(monday + timedelta(days=6)).isoformat(),
        ),
        "in_progress": monday + timedelta(days=7) > data.today,
        "previous_link": page_link(monday - timedelta(days=7), lang),
        "next_link": page_link(monday + timedelta(days=7), lang) if monday < this_week else None,
        "switch_link": page_link(monday, t.switch_lang),
        "cases": report["total"]["cases"],
        "headline": headline(report["total"], previous["total"], t),
        **week_charts(data, t, weeks),
        "worse": worse_rows(data, t),
        "promises": promise_rows(data, t),
        "expectations": expectation_rows(report["total"], t),
        "issues": [
            {
                "cause": t.cause(cause["root_cause"]),
                "complaints": cause["complaints"],
                "link": cases_link(monday, root_cause=cause["root_cause"]),
                "issues": cause["issues"],
            }
            for cause in data.issues
        ],
        "lessons": [
            {"cause": t.cause(group["root_cause"]), "lessons": group["lessons"]}
            for group in report["lessons"]
        ],
        "all_cases": cases_link(monday),
        "csv": csv_link(monday),
        **customers_part(data, t, weeks),
    }


# --- the route ---------------------------------------------------------------------------


class ReportPages:
    def __init__(self, texts_file: Path = TEXTS_FILE) -> None:
        self.catalog = load_yaml(texts_file, ReportCatalog)
        self.env = templates(HERE / "templates")

    def language(self, request: Request, asked: str | None) -> str:
        languages = self.catalog.languages
        if asked in languages:
            return str(asked)
        return browser_language(request, languages) or "en"

    def html(self, template: str, status: int, **context: Any) -> HTMLResponse:
        markup = self.env.get_template(template).render(**context)
        return HTMLResponse(markup, status_code=status, headers=HEADERS)

    def message(
        self, lang: str, status: int, heading: str, message: str, headers: Mapping[str, str] | None
    ) -> HTMLResponse:
        page = self.html(
            "message.html", status, t=self.catalog.get(lang), heading=heading, message=message
        )
        page.headers.update(headers or {})
        return page

    def refused(self, lang: str, exc: HTTPException) -> HTMLResponse:
        """The page for a request without a good key: why, and the challenge that makes
        the browser ask for one."""
        t = self.catalog.get(lang)
        heading, message = {
            401: (t.unauthorized_title, t.unauthorized),
            429: (t.too_many_title, t.too_many),
        }.get(exc.status_code, (t.forbidden_title, str(exc.detail)))
        return self.message(lang, exc.status_code, heading, message, exc.headers)

    def report(self, data: WeekData, lang: str) -> HTMLResponse:
        return self.html("report.html", 200, **view(data, self.catalog.get(lang), lang))


def _try_again_later(request: Request) -> Response:
    pages: ReportPages = request.app.state.report_pages
    lang = pages.language(request, request.query_params.get("lang"))
    t = pages.catalog.get(lang)
    return pages.message(lang, 503, t.try_later_title, t.try_later, None)


router = APIRouter(
    tags=["report page"], include_in_schema=False, route_class=page_route(_try_again_later)
)


@router.get("/reports", response_class=HTMLResponse)
async def report_page(
    request: Request, week: str | None = None, lang: str | None = None
) -> HTMLResponse:
    pages: ReportPages = request.app.state.report_pages
    lang = pages.language(request, lang)
    try:
        await browser_client(request, REALM)
    except HTTPException as exc:
        return pages.refused(lang, exc)
    now = now_of(request)
    if week is None:
        monday = last_finished_week(now, timedelta())
    else:
        try:
            monday = parse_week(week)
        except ValueError:
            t = pages.catalog.get(lang)
            return pages.message(lang, 422, t.bad_week_title, t.bad_week, None)
    store: InsightsStore = request.app.state.store
    customers: Customers = request.app.state.customers
    data = await week_data(store, customers, monday, now.date())
    return await run_in_threadpool(pages.report, data, lang)
