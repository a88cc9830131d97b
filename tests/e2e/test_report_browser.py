"""The weekly report page as people read it: Debian's chromium, headless, on a laptop
screen, signed in with an insights API key as HTTP Basic's password.

insights runs in this process on real ports against the real broker and database; two
weeks of cases arrive as the router and followup publish them. The page must show the
week's figures against the week before, three charts drawn on the server (inline SVG,
Chinese labels as text), the team and cause getting worse, the top issue with links to
its cases' reviews, the lessons, and links a browser can follow with the same key; no
script anywhere. Chinese is drawn with the CJK fonts `make test` installs
(fonts-noto-cjk); a screenshot of each language is kept under pytest's tmp_path.
"""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, expect

from services.insights.app import build
from services.insights.page import ReportPages
from services.insights.weekly import week_name
from shared.contracts import (
    CaseFirstResponse,
    CaseResolved,
    CaseRouted,
    RootCause,
    SurveyAnswered,
    SurveyRequested,
)
from shared.envelope import Event, new_event
from tests.conftest import Infra
from tests.e2e.conftest import WAIT_MS
from tests.integration.insights.test_service import KEY, WRITE_KEY, settings_for
from tests.integration.running import running
from tests.support import a_classification, a_customer, a_feedback, a_routing, eventually, produce

TEXTS = ReportPages().catalog
ZH, EN = TEXTS.zh, TEXTS.en
# A week no other test has cases in, and the week before it.
MONDAY = date(2025, 3, 10)
BEFORE = MONDAY - timedelta(days=7)
LAPTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
PARCEL = "包裹一直没有送到，物流信息三天没有更新"


def cjk_fonts() -> list[str]:
    """The fonts fontconfig offers for Chinese; none fails the test (never skips it)."""
    found = subprocess.run(
        ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    families = [line for line in found if line.strip()]
    if not families:
        pytest.fail(
            "no font for Chinese: the report page is checked with CJK fonts. Run `make test` "
            "(as root it installs Debian's fonts-noto-cjk) or `apt-get install fonts-noto-cjk`."
        )
    return families


def routed(
    team: str, at: datetime, cause: RootCause, text: str, *, language: str = "zh"
) -> CaseRouted:
    return CaseRouted(
        case_id=f"case-{uuid.uuid4().hex[:12]}",
        feedback=a_feedback(text, at=at, customer=a_customer(), language=language),
        classification=a_classification(cause),
        routing=a_routing(at=at, team=team),
    )


def handled(case: CaseRouted, *, csat: int, in_time: bool) -> list[Event[Any]]:
    """The case answered, resolved and surveyed, the survey answered with ``csat``."""
    at = case.routing.routed_at
    common = {"case_id": case.case_id, "customer_key": case.feedback.customer_key}
    survey = f"{case.case_id}-s1"
    verdict = "dissatisfied" if csat <= 2 else "delighted" if csat == 5 else "satisfied"
    data = [
        CaseFirstResponse(
            **common,
            occurred_at=at + timedelta(hours=1 if in_time else 12),
            responded_by="agent-a",
            within_sla=in_time,
        ),
        CaseResolved(
            **common,
            occurred_at=at + timedelta(hours=20),
            resolved_by="agent-a",
            solution="re-sent by express",
            within_sla=True,
        ),
        SurveyRequested(
            **common,
            occurred_at=at + timedelta(hours=21),
            survey_id=survey,
            channel="sms",
            expires_at=at + timedelta(days=4),
        ),
        SurveyAnswered(
            **common,
            occurred_at=at + timedelta(hours=30),
            survey_id=survey,
            csat=csat,
            expected=4,
            perceived=csat,
            ratio=csat / 4,
            solved=csat > 2,
            verdict=verdict,
        ),
    ]
    return [
        new_event(item, source="/closeloop/followup", cause=f"{case.case_id}/{index}")
        for index, item in enumerate(data)
    ]


@dataclass
class Weeks:
    """Two weeks of cases: the page's week, worse for ``team`` than the one before."""

    team: str
    other: str
    parcels: list[CaseRouted]
    bills: list[CaseRouted]


def two_weeks() -> tuple[Weeks, list[Event[Any]]]:
    suffix = uuid.uuid4().hex[:6]
    team, other = f"logistics-{suffix}", f"billing-{suffix}"
    before = [
        routed(team, datetime.combine(BEFORE, datetime.min.time(), UTC) + timedelta(hours=9 + i),
               "delivery", f"快递第{i}次延误，请尽快处理")
        for i in range(4)
    ]  # fmt: skip
    start = datetime.combine(MONDAY, datetime.min.time(), UTC)
    parcels = [
        routed(team, start + timedelta(hours=9 + 3 * i), "delivery", f"{PARCEL}（{i}）")
        for i in range(12)
    ]
    bills = [
        routed(other, start + timedelta(days=1, hours=10 + i), "billing",
               "I was charged twice for one order", language="en")
        for i in range(3)
    ]  # fmt: skip
    events: list[Event[Any]] = [
        new_event(case, source="/closeloop/router", cause=case.feedback.feedback_id)
        for case in before + parcels + bills
    ]
    for case in before:
        events += handled(case, csat=5, in_time=True)
    for index, case in enumerate(parcels):
        events += handled(case, csat=2 if index % 2 else 3, in_time=index % 3 == 0)
    for case in bills:
        events += handled(case, csat=4, in_time=True)
    return Weeks(team, other, parcels, bills), events


@dataclass
class Insights:
    url: str
    api: httpx.AsyncClient
    weeks: Weeks


@pytest.fixture(scope="module")
async def insights(infra: Infra) -> AsyncIterator[Insights]:
    settings = settings_for(infra)
    weeks, events = two_weeks()
    url = f"http://127.0.0.1:{settings.http_port}"
    async with (
        running(build(settings)),
        httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as api,
    ):
        await produce(infra.bootstrap, events)
        params = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()}

        earlier = {"from": BEFORE.isoformat(), "to": (BEFORE + timedelta(days=6)).isoformat()}

        async def folded() -> bool:
            """Every case of both weeks in, its survey answer too (the events of different
            cases arrive in any order)."""
            for period, cases in ((params, 12), (earlier, 4)):
                summary = (
                    await api.get("/v1/reports/summary", params={**period, "team": weeks.team})
                ).json()["total"]
                if summary["cases"] != cases or summary["survey_response_rate"] != 1.0:
                    return False
            return True

        await eventually(folded, timeout=60)
        lesson = {"lesson": "Ask the courier for a photo at the door", "by": "lead-li"}
        recorded = await api.put(
            f"/v1/reviews/{weeks.parcels[0].case_id}/lesson",
            json=lesson,
            headers={"X-API-Key": WRITE_KEY},
        )
        assert recorded.status_code == 200, recorded.text
        yield Insights(url, api, weeks)


async def signed_in(browser: Browser, locale: str) -> Page:
    context = await browser.new_context(
        locale=locale, http_credentials={"username": "ops", "password": KEY}, **LAPTOP
    )
    context.set_default_timeout(WAIT_MS)
    return await context.new_page()


def not_blank(png: bytes) -> int:
    """The number of colours in a screenshot: a blank or unstyled page has a handful."""
    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None
    return len(colours)


async def test_the_week_s_review_in_chinese_with_its_charts_and_what_got_worse(
    insights: Insights, browser: Browser, tmp_path: Path
) -> None:
    assert cjk_fonts()
    page = await signed_in(browser, "zh-CN")
    try:
        response = await page.goto(f"{insights.url}/reports?week={week_name(MONDAY)}")
        assert response is not None and response.status == 200
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        await expect(page.locator("html")).to_have_attribute("lang", ZH.html_lang)
        await expect(page.get_by_role("heading", level=1)).to_have_text(ZH.title)
        await expect(page.locator("#week")).to_contain_text("2025-W11")
        assert await page.locator("script").count() == 0

        # Three charts drawn on the server, their labels text in the browser's fonts.
        charts = page.locator("svg.chart")
        await expect(charts).to_have_count(3)
        for chart in await charts.all():
            box = await chart.bounding_box()
            assert box is not None and box["width"] > 500 and box["height"] > 100
        volume = page.locator("#volume-chart svg")
        await expect(volume).to_have_attribute("aria-label", ZH.volume_chart)
        await expect(volume.locator("text", has_text=ZH.causes["delivery"])).to_have_count(1)
        await expect(
            page.locator("#deadlines-chart svg text", has_text=insights.weeks.team)
        ).to_have_count(1)

        # The team whose cases rose from 4 to 12 and whose customers grew unhappy.
        worse = page.locator("#worse tr", has_text=insights.weeks.team)
        await expect(worse).to_have_count(1)
        await expect(worse).to_contain_text(ZH.figure_names["cases"])
        await expect(worse).to_contain_text(ZH.figure_names["dissatisfied"])
        await expect(page.locator("#worse tr", has_text=insights.weeks.other)).to_have_count(0)

        # The recurring parcel complaint, its terms in Chinese, leading to its reviews.
        issue = page.locator("#top-issues tr", has_text="包裹")
        await expect(issue.first).to_be_visible()
        example = issue.first.locator("a").first
        await example.click()
        await expect(page.locator("body")).to_contain_text('"answered_in_time"')
        await page.go_back()

        # The figures against last week: 15 cases against 4.
        cases_row = page.locator("#figures tr", has_text=ZH.cases)
        await expect(cases_row.locator("td.worse")).to_have_text("+11 (+275%)")

        shot = await page.screenshot(full_page=True)
        (tmp_path / "report-zh.png").write_bytes(shot)
        assert not_blank(shot) > 50
    finally:
        await page.context.close()


async def test_in_english_the_links_lead_to_the_cases_with_the_same_key(
    insights: Insights, browser: Browser, tmp_path: Path
) -> None:
    page = await signed_in(browser, "en-GB")
    try:
        response = await page.goto(f"{insights.url}/reports?week={week_name(MONDAY)}")
        assert response is not None and response.status == 200
        await expect(page.locator("html")).to_have_attribute("lang", EN.html_lang)
        await expect(page.locator("#volume-chart svg text", has_text="Delivery")).to_have_count(1)
        shot = await page.screenshot(full_page=True)
        (tmp_path / "report-en.png").write_bytes(shot)

        await page.locator("#previous-week").click()
        await expect(page.locator("#week")).to_contain_text(week_name(BEFORE))
        await page.locator("#next-week").click()
        await expect(page.locator("#week")).to_contain_text(week_name(MONDAY))

        await page.locator("#switch-language").click()
        await expect(page.locator("html")).to_have_attribute("lang", ZH.html_lang)
        await page.locator("#switch-language").click()

        # The week's cases, the browser sending the key it was given for the page.
        await page.locator("#all-cases").click()
        await expect(page.locator("body")).to_contain_text(insights.weeks.parcels[0].case_id)
    finally:
        await page.context.close()


async def test_the_page_asks_for_the_key_and_says_what_is_wrong(insights: Insights) -> None:
    async with httpx.AsyncClient(base_url=insights.url, timeout=30) as anonymous:
        asked = await anonymous.get("/reports", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert asked.status_code == 401
        assert asked.headers["www-authenticate"].startswith('Basic realm="closeloop insights"')
        assert ZH.unauthorized in asked.text
        wrong = await anonymous.get("/reports?lang=en", auth=("ops", "not-the-key-at-all"))
        assert wrong.status_code == 401 and EN.unauthorized in wrong.text
        # The API takes the same key as HTTP Basic's password.
        summary = await anonymous.get("/v1/reports/summary", auth=("ops", KEY))
        assert summary.status_code == 200
        bad_week = await anonymous.get("/reports?week=2025-53&lang=en", auth=("ops", KEY))
        assert bad_week.status_code == 422 and EN.bad_week in bad_week.text
        # Without ?week= it is the last finished week.
        latest = await anonymous.get("/reports?lang=en", auth=("ops", KEY))
        assert latest.status_code == 200
        today = datetime.now(UTC).date()
        last_monday = today - timedelta(days=today.weekday() + 7)
        assert week_name(last_monday) in latest.text


async def test_this_week_lists_the_lesson_just_recorded(insights: Insights) -> None:
    today = datetime.now(UTC).date()
    week = week_name(today - timedelta(days=today.weekday()))
    async with httpx.AsyncClient(base_url=insights.url, timeout=30) as client:
        page = await client.get(f"/reports?week={week}&lang=en", auth=("ops", KEY))
    assert page.status_code == 200
    assert EN.in_progress in page.text
    assert "Ask the courier for a photo at the door" in page.text
    assert insights.weeks.parcels[0].case_id[:12] in page.text
