"""The satisfaction page as customers meet it: Debian's chromium, headless, on a phone-sized
screen, opened from the link in survey.requested.

Followup runs in this process on real ports against the real broker and database, with a
clock the tests move; the case arrives as the router sends it (case.routed on Kafka), an
agent responds and resolves it over the case API, and what the customer does on the page
comes out on case.lifecycle. The browser is never downloaded: CLOSELOOP_CHROMIUM, else
/usr/bin/chromium (Debian's package; `make test` installs it when missing).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from pymongo import AsyncMongoClient

from services.followup.app import build
from services.followup.page import SurveyPages, SurveyTexts
from shared.clock import utcnow
from shared.contracts import Priority, Topic
from shared.db import Document
from shared.envelope import Event, new_event
from tests.conftest import Infra
from tests.e2e.conftest import WAIT_MS
from tests.integration.followup.test_store import API_KEY, FakeClock, followup_settings
from tests.integration.running import running
from tests.support import TopicReader, a_case_routed, a_feedback, a_routing, eventually, produce

# A phone: what most customers open the link on.
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
TEXTS = SurveyPages().catalog
ZH, EN = TEXTS.zh, TEXTS.en


@asynccontextmanager
async def phone(browser: Browser, locale: str) -> AsyncIterator[Page]:
    """A fresh phone browser whose language is ``locale`` (its Accept-Language)."""
    context = await browser.new_context(locale=locale, **PHONE)
    context.set_default_timeout(WAIT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@dataclass
class Followup:
    """The running service, an agent's API client and case.lifecycle as downstream reads it."""

    infra: Infra
    clock: FakeClock
    agent: httpx.AsyncClient
    lifecycle: TopicReader

    async def route(self, text: str, *, language: str) -> str:
        """A case as the router publishes it; returns its id once followup holds it."""
        now = self.clock.now
        routed = a_case_routed(Priority.P3, at=now).model_copy(
            update={
                "feedback": a_feedback(text, at=now, language=language),
                "routing": a_routing(Priority.P3, at=now),
            }
        )
        event = new_event(routed, source="/router", cause=uuid.uuid4().hex)
        await produce(self.infra.bootstrap, [event])

        async def held() -> bool:
            return (await self.agent.get(f"/v1/cases/{routed.case_id}")).status_code == 200

        await eventually(held, timeout=60)
        return routed.case_id

    async def respond_and_resolve(self, case_id: str) -> Event[Any]:
        """The agent answers, later resolves; returns the survey.requested that follows."""
        self.clock.advance(minutes=20)
        responded = await self.agent.post(
            f"/v1/cases/{case_id}/responses",
            json={"responded_by": "agent-wang-fang", "message": "We are on it"},
        )
        assert responded.status_code == 200, responded.text
        self.clock.advance(hours=3)
        resolved = await self.agent.post(
            f"/v1/cases/{case_id}/resolve",
            json={"resolved_by": "agent-wang-fang", "solution": "re-sent the parcel by express"},
        )
        assert resolved.status_code == 200, resolved.text
        return await self.next(case_id, "survey.requested")

    async def next(self, case_id: str, name: str) -> Event[Any]:
        return await self.lifecycle.wait_for(
            lambda e: e.subject == case_id and e.name == name, timeout=30
        )


@pytest.fixture
async def followup(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Followup]:
    clock = FakeClock(utcnow())
    settings = followup_settings(infra, database_name)
    async with (
        running(build(settings, clock=clock)),
        TopicReader(infra.bootstrap, Topic.CASE_LIFECYCLE, Topic.FEEDBACK_RECEIVED) as lifecycle,
        httpx.AsyncClient(
            base_url=settings.public_url, headers={"X-API-Key": API_KEY}, timeout=10
        ) as agent,
    ):
        yield Followup(infra, clock, agent, lifecycle)


async def open_link(page: Page, url: str, status: int) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == status, url


async def shows_language(page: Page, t: SurveyTexts) -> None:
    await expect(page.locator("html")).to_have_attribute("lang", t.html_lang)
    await expect(page.get_by_role("heading", level=1)).to_have_text(t.title)


async def fits_the_phone(page: Page) -> None:
    """Nothing wider than the screen, fingertip-sized choices, the page's own styles
    applied under its Content-Security-Policy."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    choice = await page.locator(".scale span").first.bounding_box()
    assert choice is not None and choice["height"] >= 44
    send = page.get_by_role("button")
    assert await send.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(11, 107, 203)"
    box = await send.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390


async def answer(
    page: Page,
    t: SurveyTexts,
    *,
    csat: int,
    expected: int,
    perceived: int,
    solved: bool,
    comment: str,
) -> None:
    """Tap the answers as a customer does: on the visible buttons, not the inputs."""
    for question, value in (
        (t.csat_question, csat),
        (t.expected_question, expected),
        (t.perceived_question, perceived),
    ):
        group = page.get_by_role("radiogroup", name=question)
        await group.locator("span").get_by_text(str(value), exact=True).tap()
        await expect(group.get_by_role("radio", name=str(value))).to_be_checked()
    solved_group = page.get_by_role("radiogroup", name=t.solved_question)
    await solved_group.get_by_text(t.solved_yes if solved else t.solved_no, exact=True).tap()
    await page.get_by_role("textbox", name=t.comment_question).fill(comment)


async def test_a_customer_answers_on_a_phone_in_chinese_and_the_case_closes_once(
    browser: Browser, followup: Followup
) -> None:
    case_id = await followup.route("我的包裹一直没到，已经一个星期了", language="zh")
    requested = await followup.respond_and_resolve(case_id)
    link = requested.data.url
    posts: list[str] = []

    async with phone(browser, "zh-CN") as page, phone(browser, "zh-CN") as second_tab:
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        await open_link(page, link, 200)
        await shows_language(page, ZH)
        await expect(page.get_by_text(f"编号 {case_id[:8]}")).to_be_visible()
        await fits_the_phone(page)

        # The page's own link switches to English and back.
        await page.get_by_role("link", name=ZH.switch_to).tap()
        await shows_language(page, EN)
        await expect(page.get_by_role("radiogroup", name=EN.csat_question)).to_be_visible()
        await page.get_by_role("link", name=EN.switch_to).tap()
        await shows_language(page, ZH)

        # The browser does not send an unanswered form: it points at the first question.
        await page.get_by_role("button", name=ZH.submit).tap()
        await expect(page.locator('input[name="csat"]').first).to_be_focused()
        await expect(page.locator('input[name="csat"]:invalid')).to_have_count(5)

        await open_link(second_tab, link, 200)  # the customer also opened it in another tab

        await answer(page, ZH, csat=5, expected=4, perceived=5, solved=True, comment="快递员很客气")
        async with page.expect_response(lambda r: r.request.method == "POST") as posted:
            await page.get_by_role("button", name=ZH.submit).tap()
        assert (await posted.value).status == 303  # to the thank-you page
        await expect(page.get_by_role("heading", level=1)).to_have_text(ZH.thanks_title)
        await expect(page.get_by_role("status")).to_contain_text(ZH.thanks_closed)
        assert page.url.startswith(link + "/thanks")
        await page.reload()  # shows the thanks again and sends nothing
        await expect(page.get_by_role("status")).to_contain_text(ZH.thanks_closed)
        assert posts == [link + "?lang=zh"]  # one POST: the empty form never left the phone

        closed = await followup.next(case_id, "case.closed")
        assert closed.data.outcome == "delighted"
        assert (closed.data.csat, closed.data.expected, closed.data.perceived) == (5, 4, 5)
        assert closed.data.ratio == 1.25 and closed.data.reopen_count == 0
        # Responded 20 minutes and resolved 3 h 20 min after routing, well within the SLAs.
        assert (closed.data.time_to_first_response_s, closed.data.time_to_resolve_s) == (
            1200,
            12000,
        )
        assert closed.data.first_response_sla_met and closed.data.resolution_sla_met

        # Single use: the link again, and the form left open in the other tab.
        await open_link(page, link, 410)
        await expect(page.locator("#message")).to_have_text(ZH.answered)
        await answer(second_tab, ZH, csat=1, expected=5, perceived=1, solved=False, comment="x")
        async with second_tab.expect_response(lambda r: r.request.method == "POST") as late:
            await second_tab.get_by_role("button", name=ZH.submit).tap()
        assert (await late.value).status == 410
        await expect(second_tab.locator("#message")).to_have_text(ZH.answered)

        # An altered link is refused with a readable page.
        head, _, signature = link.rpartition(".")
        await open_link(page, f"{head}.{signature[::-1]}", 404)
        await expect(page.get_by_role("heading", level=1)).to_have_text(ZH.unavailable_title)
        await expect(page.locator("#message")).to_have_text(ZH.invalid)

        # After its expiry the link says so, in the customer's language.
        followup.clock.now = requested.data.expires_at + timedelta(seconds=1)
        await open_link(page, link, 410)
        await expect(page.locator("#message")).to_have_text(ZH.expired)
        await open_link(page, f"{link}?lang=en", 410)
        await expect(page.locator("#message")).to_have_text(EN.expired)

    case = (await followup.agent.get(f"/v1/cases/{case_id}")).json()
    assert case["status"] == "closed" and case["outcome"] == "delighted"
    assert [s["answer"]["via"] for s in case["surveys"]] == ["page"]
    assert case["surveys"][0]["answer"]["comment"] == "快递员很客气"


async def test_a_customer_who_is_not_helped_reopens_the_case_and_the_comment_comes_back(
    browser: Browser, followup: Followup
) -> None:
    # Feedback in no language the page has: the browser's Accept-Language decides.
    case_id = await followup.route("Parcel 4471 still missing", language="other")
    requested = await followup.respond_and_resolve(case_id)
    comment = "The new parcel did not come either. Please call me."

    async with phone(browser, "en-GB") as page:
        await open_link(page, requested.data.url, 200)
        await shows_language(page, EN)
        await fits_the_phone(page)
        await answer(page, EN, csat=2, expected=4, perceived=2, solved=False, comment=comment)
        async with page.expect_response(lambda r: r.request.method == "POST") as posted:
            await page.get_by_role("button", name=EN.submit).tap()
        assert (await posted.value).status == 303
        await expect(page.get_by_role("heading", level=1)).to_have_text(EN.thanks_title)
        await expect(page.get_by_role("status")).to_contain_text(EN.thanks_reopened)

    answered = await followup.next(case_id, "survey.answered")
    assert answered.data.verdict == "dissatisfied" and answered.data.solved is False
    reopened = await followup.next(case_id, "case.reopened")
    escalated = await followup.next(case_id, "case.escalated")
    assert reopened.data.reopen_count == escalated.data.reopen_count == 1
    assert escalated.data.priority == Priority.P2
    again = await followup.lifecycle.wait_for(
        lambda e: e.name == "feedback.received" and e.data.feedback.related_case_id == case_id,
        timeout=30,
    )
    assert again.data.feedback.text == comment
    assert again.data.feedback.customer_key == requested.data.customer_key
    case = (await followup.agent.get(f"/v1/cases/{case_id}")).json()
    assert case["status"] == "reopened" and case["reopen_count"] == 1
