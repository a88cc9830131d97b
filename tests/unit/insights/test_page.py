"""The report page's pure parts: weeks, how figures are written and compared, which
groups got worse, the charts' markup, and the whole page from data without I/O."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from itertools import pairwise

import pytest

from services.insights import charts
from services.insights.page import (
    ReportPages,
    WeekData,
    change,
    expectation_rows,
    getting_worse,
    headline,
    parse_week,
    promise_rows,
    top_reasons,
    weeks_shown,
    written,
)
from services.insights.policy import PARTS
from services.insights.reports import RISES, figures
from services.insights.weekly import week_name
from shared.contracts import ExpectedOutcome, root_causes

PAGES = ReportPages()
ZH, EN = PAGES.catalog.zh, PAGES.catalog.en
MONDAY = date(2026, 11, 23)


def test_a_week_is_read_as_iso_writes_it() -> None:
    assert parse_week("2026-W48") == MONDAY
    assert parse_week("2021-W01") == date(2021, 1, 4)  # ISO week 1 holds the first Thursday
    assert week_name(parse_week("2020-W53")) == "2020-W53"
    for bad in ("2026-48", "2026-W5", "W48-2026", "2026-W54", "2025-W53", "2026-W00"):
        with pytest.raises(ValueError):
            parse_week(bad)


def test_the_weeks_shown_end_with_the_page_s_week() -> None:
    weeks = weeks_shown(MONDAY)
    assert len(weeks) == 8 and weeks[-1] == MONDAY
    assert all(later - earlier == timedelta(days=7) for earlier, later in pairwise(weeks))


def test_figures_are_written_in_their_units_and_changes_in_theirs() -> None:
    assert written("count", 12345, EN) == "12,345"
    assert written("duration", 1_800, EN) == "30 min"
    assert written("duration", 5_400, ZH) == "1.5 小时"
    assert written("duration", 604_800, EN, at_least=True) == "at least 7.0 d"
    assert written("share", 0.876, EN) == "88%"
    assert written("score", 4.25, EN) == "4.25"
    assert written("share", None, EN) == EN.not_known
    assert change("count", 15, 4, EN) == "+11 (+275%)"
    assert change("count", 3, 0, EN) == "+3"  # no share of growth from nothing
    assert change("share", 0.4, 0.5, ZH) == "-10 个百分点"
    assert change("duration", 1_800, 5_400, EN) == "-1.0 h"
    assert change("score", 2.8, 5, EN) == "-2.20"
    assert change("index", 70.0, 70.0, EN) == "0"
    assert change("share", None, 0.5, EN) == ""


def test_a_rise_is_bad_or_good_news_by_what_the_figure_measures() -> None:
    now = {**figures({}), "cases": 10, "csat_mean": 4.5, "reopen_rate": 0.2}
    before = {**figures({}), "cases": 5, "csat_mean": 4.0, "reopen_rate": 0.1}
    tones = {row["label"]: row["tone"] for row in headline(now, before, EN)}
    assert tones[EN.cases] == "worse"  # more complaints
    assert tones[EN.csat_mean] == "better"
    assert tones[EN.reopen_rate] == "worse"
    assert tones[EN.satisfaction_index] == ""  # not known in either week


def test_groups_get_worse_by_the_rule_of_the_trend_report() -> None:
    def row(team: str, cases: int, dissatisfied: float | None) -> dict[str, object]:
        return {**figures({}), "team": team, "cases": cases, "dissatisfied": dissatisfied}

    current = [row("grew", 12, 0.1), row("unhappier", 6, 0.5), row("steady", 6, 0.1),
               row("new", 4, 0.0)]  # fmt: skip
    previous = [row("grew", 4, 0.1), row("unhappier", 6, 0.2), row("steady", 5, 0.1)]
    worse = getting_worse(current, previous, "team")
    assert [(w["value"], w["rose"], w["cases"], w["before"]) for w in worse] == [
        ("grew", ["cases"], 12, 4),
        ("unhappier", ["dissatisfied"], 6, 6),
    ]  # "new" has 4 cases: fewer than a rise needs


def test_the_catalog_names_every_root_cause_and_every_rising_figure() -> None:
    for texts in (ZH, EN):
        assert set(texts.causes) == set(root_causes())
        assert set(texts.figure_names) == set(RISES)
        assert set(texts.score_parts) == {*PARTS, "tier"}
        assert set(texts.outcomes) == {outcome.value for outcome in ExpectedOutcome}


def test_charts_keep_their_labels_as_escaped_text() -> None:
    weeks = weeks_shown(MONDAY)
    svg = charts.volume_by_cause(
        weeks, {"delivery": [1] * 8}, ZH.causes, title="量 <&>", empty=ZH.nothing_yet
    )
    assert svg.startswith("<svg") and 'aria-label="量 &lt;&amp;>"' in svg
    assert re.search(r"<text[^>]*>[^<]*物流配送", svg)  # drawn by the browser, as text
    odd = charts.deadlines_by_team(
        ["<b>&team"], [0.5], [None], labels=("a", "b"), title="t", empty="none"
    )
    assert "&lt;b&gt;&amp;team" in odd and "<b>" not in odd


def empty_week(monday: date, today: date) -> WeekData:
    report = {"total": figures({}), "by_root_cause": [], "by_team": [], "lessons": []}
    return WeekData(
        monday=monday,
        today=today,
        report=report,
        previous=report,
        volume={},
        weekly=[{"csat_mean": None, "satisfaction_index": None}] * 8,
        issues=[],
        signals={"customer.at_risk": [0] * 8, "customer.recovered": [0] * 8},
        at_risk_now=0,
        top_reasons=[],
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_week_without_cases_is_a_whole_page_without_scripts(lang: str) -> None:
    t = PAGES.catalog.get(lang)
    page = PAGES.report(empty_week(MONDAY, MONDAY + timedelta(days=30)), lang)
    html = bytes(page.body).decode()
    assert page.status_code == 200 and f'<html lang="{t.html_lang}">' in html
    assert html.count("<svg") == 3 and "<script" not in html
    assert t.no_cases in html and t.none_worse in html and t.no_lessons in html
    assert t.no_at_risk in html
    assert 'href="reports?week=2026-W47' in html and 'href="reports?week=2026-W49' in html
    assert "script-src" not in page.headers["content-security-policy"]


def test_the_week_in_progress_says_so_and_has_no_next_week() -> None:
    html = bytes(PAGES.report(empty_week(MONDAY, MONDAY + timedelta(days=2)), "en").body).decode()
    assert EN.in_progress in html and "2026-W49" not in html


def test_the_at_risk_panel_counts_signals_per_week_and_names_the_top_reasons() -> None:
    week = empty_week(MONDAY, MONDAY + timedelta(days=30))
    at_risk = [0, 0, 0, 0, 0, 1, 0, 3]
    week = replace(
        week,
        signals={"customer.at_risk": at_risk, "customer.recovered": [0] * 7 + [1]},
        at_risk_now=3,
        top_reasons=top_reasons(
            [
                [{"part": "dissatisfied", "points": -12.0}, {"part": "recovered", "points": 6}],
                [{"part": "dissatisfied", "points": -9.1}, {"part": "churn_intent", "points": -15}],
                [{"part": "complaints", "points": -7.0}, {"part": "complaints", "points": -1}],
            ]
        ),
    )
    assert week.top_reasons == [("dissatisfied", 2), ("churn_intent", 1), ("complaints", 1)]
    html = bytes(PAGES.report(week, "zh").body).decode()
    panel = html[html.index('id="at-risk"') : html.index('id="exports"')]
    assert "<strong>3</strong>" in panel
    rows = re.findall(r"<tr><td>(2026-W\d\d)</td><td class=\"num\">(\d+)</td>", panel)
    assert [int(count) for _, count in rows] == at_risk
    assert rows[-1][0] == "2026-W48"
    assert panel.index(ZH.score_parts["dissatisfied"]) < panel.index(ZH.score_parts["churn_intent"])
    assert ZH.score_parts["recovered"] not in panel  # a part that gives points is no reason
    assert 'href="v1/customers?at_risk=true"' in panel


def a_row(by: str, value: str, **sums: float) -> dict[str, object]:
    return {by: value, **figures({"cases": 3, **sums})}


def test_the_promises_panel_shows_each_team_and_cause_with_promises_and_its_kept_rate() -> None:
    week = empty_week(MONDAY, MONDAY + timedelta(days=30))
    promised = {"promises_made": 4, "promises_kept": 2, "promises_broken": 1,
                "promises_overdue": 2, "promises_overdue_open": 1}  # fmt: skip
    report = {
        **week.report,
        "total": figures(promised),
        "by_team": [a_row("team", "quiet"), a_row("team", "logistics", **promised)],
        "by_root_cause": [a_row("root_cause", "delivery", **promised)],
    }
    week = replace(week, report=report)
    rows = promise_rows(week, EN)
    assert [(row["kind"], row["name"]) for row in rows] == [
        (EN.team, "logistics"),
        (EN.root_cause, EN.causes["delivery"]),
    ]  # a team without promises is left out
    first = rows[0]
    assert (first["made"], first["kept"], first["broken"], first["overdue"]) == (4, 2, 1, 2)
    assert first["rate"] == "50%"  # 2 kept of 2 kept + 1 broken + 1 overdue without outcome
    assert first["link"].endswith("team=logistics")
    html = bytes(PAGES.report(week, "zh").body).decode()
    panel = html[html.index('id="promises"') : html.index('id="expectations"')]
    assert "logistics" in panel and ZH.causes["delivery"] in panel and "50%" in panel
    assert ZH.no_promises not in panel
    figures_table = html[html.index('id="figures"') : html.index('id="charts"')]
    assert ZH.promise_kept_rate in figures_table


def test_the_expectations_panel_lists_the_outcomes_asked_for_most_answers_first() -> None:
    total = figures(
        {
            "expectations_asked": 4, "expectations_met": 2,
            "expectations_asked_refund": 3, "expectations_met_refund": 1,
            "expectations_asked_apology": 1, "expectations_met_apology": 1,
        }
    )  # fmt: skip
    rows = expectation_rows(total, ZH)
    assert rows == [
        {"outcome": ZH.outcomes["refund"], "asked": 3, "rate": "33%"},
        {"outcome": ZH.outcomes["apology"], "asked": 1, "rate": "100%"},
    ]
    assert expectation_rows(figures({}), ZH) == []
    week = empty_week(MONDAY, MONDAY + timedelta(days=30))
    week = replace(week, report={**week.report, "total": total})
    html = bytes(PAGES.report(week, "en").body).decode()
    panel = html[html.index('id="expectations"') : html.index('id="top-issues"')]
    assert EN.outcomes["refund"] in panel and "33%" in panel
    empty = bytes(PAGES.report(empty_week(MONDAY, MONDAY), "en").body).decode()
    assert EN.no_expectations in empty and EN.no_promises in empty
