"""Followup's HTTP side over real HTTP, the real broker and the real database: the
authenticated case API for agent tools and the survey page customers open from their
signed link. The service runs in this process with a clock the tests move."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.followup.app import build
from services.followup.handlers import make_handlers
from services.followup.outreach import load_outreach
from services.followup.policy import load_policy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import CaseRouted, Priority, Topic
from shared.db import Document
from shared.envelope import Event, derive_id, new_event
from tests.conftest import Infra
from tests.integration.followup.test_store import API_KEY, FakeClock, followup_settings
from tests.integration.running import running
from tests.support import TopicReader, a_case_routed, a_feedback, a_routing, http_routes


@dataclass
class Api:
    http: httpx.AsyncClient
    clock: FakeClock
    store: FollowupStore
    lifecycle: TopicReader
    url: str

    async def open_case(self, *, language: str = "en", **routing: Any) -> CaseRouted:
        """A case as the router sends it (handled here, on the same database)."""
        now = self.clock.now
        base = a_case_routed(Priority.P3, at=now)
        routed = base.model_copy(
            update={
                "feedback": a_feedback(at=now, language=language),
                "routing": a_routing(Priority.P3, at=now, **routing),
            }
        )
        handler = make_handlers(self.store, load_policy(), load_outreach())["case.routed"]
        await handler(new_event(routed, source="/test", cause=routed.case_id))
        return routed

    async def wait_for(self, case_id: str, name: str, **fields: Any) -> Event[Any]:
        return await self.lifecycle.wait_for(
            lambda e: (
                e.subject == case_id
                and e.name == name
                and all(getattr(e.data, k) == v for k, v in fields.items())
            )
        )

    async def resolve(self, case_id: str) -> str:
        """Resolve the case; returns the survey link sent to the customer."""
        response = await self.http.post(
            f"/v1/cases/{case_id}/resolve",
            json={"resolved_by": "agent-wang-fang", "solution": "sent a new one"},
        )
        assert response.status_code == 200, response.text
        request = await self.wait_for(case_id, "survey.requested", reminder=False)
        return str(request.data.url)


@pytest.fixture
async def api(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Api]:
    clock = FakeClock(utcnow())
    settings = followup_settings(infra, database_name)
    store = FollowupStore(mongo_client[database_name])
    async with (
        running(build(settings, clock=clock)),
        TopicReader(infra.bootstrap, Topic.CASE_LIFECYCLE, Topic.FEEDBACK_RECEIVED) as lifecycle,
        httpx.AsyncClient(
            base_url=settings.public_url, headers={"X-API-Key": API_KEY}, timeout=10
        ) as http,
    ):
        yield Api(http, clock, store, lifecycle, settings.public_url)


async def test_the_case_api_needs_a_valid_api_key_or_bearer_token(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        refused = await anonymous.get("/v1/cases")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = await anonymous.get("/v1/cases", headers={"X-API-Key": "not-the-key-at-all"})
        assert wrong.status_code == 401
        outcome = await anonymous.post("/v1/callbacks/x/outcome", json={})
        assert outcome.status_code == 401
        bearer = await anonymous.get("/v1/cases", headers={"Authorization": f"Bearer {API_KEY}"})
        assert bearer.status_code == 200
        assert (await anonymous.get("/healthz")).status_code == 200
    assert (await api.http.get("/v1/cases")).status_code == 200


READ_KEY = "test-dashboard-read-key-0123"
PROXIES = ["127.0.0.1/32", "::1/128"]
# Served without a key: operations (bound or protected per deployment), the API's own
# description, and the survey page, whose signed link is the customer's credential.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


async def test_every_route_but_operations_docs_and_the_survey_page_needs_a_key(
    infra: Infra, database_name: str
) -> None:
    settings = followup_settings(infra, database_name)
    service = build(settings, clock=FakeClock(utcnow()))
    routes = http_routes(service.app.routes)
    guarded = [r for r in routes if r.path not in PUBLIC and not r.path.startswith("/survey/")]
    assert len(guarded) >= 7
    async with running(service), httpx.AsyncClient(base_url=settings.public_url) as anonymous:
        for route in guarded:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            for method in sorted(route.methods or ()):
                response = await anonymous.request(method, path, json={})
                assert response.status_code == 401, (method, route.path)


async def test_a_read_key_lists_cases_and_is_refused_changing_them_with_403(
    infra: Infra, database_name: str
) -> None:
    keys = {"test": API_KEY, "dashboard": {"key": READ_KEY, "scopes": ["read"]}}
    settings = followup_settings(infra, database_name, api_keys=keys)
    reader = {"X-API-Key": READ_KEY}
    async with (
        running(build(settings, clock=FakeClock(utcnow()))),
        httpx.AsyncClient(base_url=settings.public_url, headers=reader) as http,
    ):
        assert (await http.get("/v1/cases")).status_code == 200
        refused = await http.post("/v1/cases/x/notes", json={"author": "a", "text": "t"})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "dashboard" in refused.json()["detail"] and "write" in refused.json()["detail"]
        writer = await http.post(
            "/v1/cases/x/notes", json={"author": "a", "text": "t"}, headers={"X-API-Key": API_KEY}
        )
        assert writer.status_code == 404  # past authentication: there is no case x


async def test_wrong_keys_and_guessed_survey_links_get_429_for_that_address_only(
    infra: Infra, database_name: str
) -> None:
    settings = followup_settings(
        infra, database_name, auth_failure_limit="5/minute", trusted_proxies=PROXIES
    )
    async with (
        running(build(settings, clock=FakeClock(utcnow()))),
        httpx.AsyncClient(base_url=settings.public_url) as http,
    ):
        guesser = {"X-Forwarded-For": "198.51.100.7"}
        for attempt in range(5):
            wrong = await http.get(
                "/v1/cases", headers={**guesser, "X-API-Key": f"guess-{attempt}"}
            )
            assert wrong.status_code == 401
        blocked = await http.get("/v1/cases", headers={**guesser, "X-API-Key": API_KEY})
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        assert blocked.headers["content-type"] == "application/problem+json"
        other = {"X-Forwarded-For": "198.51.100.8", "X-API-Key": API_KEY}
        assert (await http.get("/v1/cases", headers=other)).status_code == 200

        customer = {"X-Forwarded-For": "198.51.100.9"}
        for attempt in range(5):
            guessed = await http.get(f"/survey/guessed-token-{attempt}", headers=customer)
            assert guessed.status_code == 404
        page = await http.get("/survey/another-guess", headers=customer)
        assert page.status_code == 429
        assert 1 <= int(page.headers["retry-after"]) <= 60
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        posted = await http.post("/survey/another-guess", data={"csat": "5"}, headers=customer)
        assert posted.status_code == 429


async def test_the_survey_form_takes_ascii_digits_only(api: Api) -> None:
    routed = await api.open_case()
    link = await api.resolve(routed.case_id)
    answer = {"csat": "٥", "expected": "4", "perceived": "5", "solved": "yes", "lang": "en"}
    async with httpx.AsyncClient() as customer:
        refused = await customer.post(link, data=answer)
        assert refused.status_code == 422
        assert "Please answer every question" in refused.text
        accepted = await customer.post(link, data={**answer, "csat": "5"})
        assert accepted.status_code == 303


async def test_cases_are_listed_by_status_team_and_agent_with_paging(api: Api) -> None:
    team, other = f"team-{uuid.uuid4().hex[:6]}", f"team-{uuid.uuid4().hex[:6]}"
    first = await api.open_case(team=team, agent="agent-a")
    api.clock.advance(minutes=1)
    second = await api.open_case(team=team, agent="agent-b")
    api.clock.advance(minutes=1)
    await api.open_case(team=other, agent="agent-a")
    await api.resolve(first.case_id)

    page = (await api.http.get("/v1/cases", params={"team": team, "limit": 1})).json()
    assert page["total"] == 2 and [c["case_id"] for c in page["items"]] == [second.case_id]
    page = (await api.http.get("/v1/cases", params={"team": team, "limit": 1, "offset": 1})).json()
    assert [c["case_id"] for c in page["items"]] == [first.case_id]
    resolved = (await api.http.get("/v1/cases", params={"team": team, "status": "resolved"})).json()
    assert [c["case_id"] for c in resolved["items"]] == [first.case_id]
    by_agent = (await api.http.get("/v1/cases", params={"team": team, "agent": "agent-b"})).json()
    assert [c["case_id"] for c in by_agent["items"]] == [second.case_id]
    bad = await api.http.get("/v1/cases", params={"status": "lost"})
    assert bad.status_code == 422


async def test_an_agent_responds_notes_and_resolves_through_the_api(api: Api) -> None:
    routed = await api.open_case()
    case_id = routed.case_id
    api.clock.advance(hours=1)
    answered = await api.http.post(
        f"/v1/cases/{case_id}/responses",
        json={"responded_by": "agent-wang-fang", "message": "We are on it"},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["first_response_at"] is not None
    first = await api.wait_for(case_id, "case.first_response")
    assert first.data.within_sla is True and first.data.responded_by == "agent-wang-fang"
    await api.http.post(f"/v1/cases/{case_id}/responses", json={"responded_by": "agent-wang-fang"})
    note = await api.http.post(
        f"/v1/cases/{case_id}/notes", json={"author": "agent-wang-fang", "text": "asked depot"}
    )
    assert note.json()["notes"][0]["text"] == "asked depot"

    resolved = await api.http.post(
        f"/v1/cases/{case_id}/resolve",
        json={
            "resolved_by": "agent-wang-fang",
            "solution": "found the parcel at the depot",
            "promise": "delivered tomorrow before noon",
        },
    )
    assert resolved.status_code == 200
    case = resolved.json()
    assert case["status"] == "resolved"
    assert case["resolutions"][0]["promise"] == "delivered tomorrow before noon"
    timeline = [e["event"] for e in case["timeline"]]
    assert timeline[2:] == [
        "customer.notify",  # the acknowledgement
        "case.first_response",
        "case.response",
        "case.note",
        "case.resolved",
        "survey.requested",
        "callback.scheduled",
    ]
    request = await api.wait_for(case_id, "survey.requested")
    assert request.data.url.startswith(f"{api.url}/survey/")
    again = await api.http.post(
        f"/v1/cases/{case_id}/resolve", json={"resolved_by": "x", "solution": "y"}
    )
    assert again.status_code == 409
    assert (await api.http.get("/v1/cases/nope")).status_code == 404
    invalid = await api.http.post(f"/v1/cases/{case_id}/notes", json={"author": "x"})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "text"
    full = (await api.http.get(f"/v1/cases/{case_id}")).json()
    assert [r["by"] for r in full["responses"]] == ["agent-wang-fang", "agent-wang-fang"]
    metrics = (await api.http.get("/metrics")).text
    assert 'closeloop_sla_met_total{priority="P3",sla="first_response",team="logistics"}' in metrics


async def test_the_survey_page_in_chinese_and_english_closes_a_satisfied_case_once(
    api: Api,
) -> None:
    routed = await api.open_case(language="zh")
    link = await api.resolve(routed.case_id)
    async with httpx.AsyncClient() as customer:  # no API key: the link is the credential
        page = await customer.get(link)
        assert page.status_code == 200
        assert '<html lang="zh-CN">' in page.text and "满意度回访" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        english = await customer.get(link, params={"lang": "en"})
        assert "How did we do?" in english.text

        early = await customer.get(f"{link}/thanks", params={"lang": "en"})
        assert early.status_code == 303  # not answered yet: back to the form
        assert early.url.join(early.headers["location"]) == httpx.URL(f"{link}?lang=en")

        incomplete = await customer.post(link, data={"csat": "5", "lang": "en"})
        assert incomplete.status_code == 422
        assert "Please answer every question" in incomplete.text
        assert re.search(r'name="csat" value="5" required\s+checked', incomplete.text)

        answer = {
            "csat": "5",
            "expected": "4",
            "perceived": "5",
            "solved": "yes",
            "comment": "快递员很客气",
            "lang": "zh",
        }
        posted = await customer.post(link, data=answer)
        assert posted.status_code == 303  # post/redirect/get: to the thank-you page
        thanks_url = posted.url.join(posted.headers["location"])  # relative: any path prefix
        assert thanks_url == httpx.URL(f"{link}/thanks?lang=zh")
        for _ in range(2):  # opened again (a reload): the same page, nothing sent again
            thanks = await customer.get(thanks_url)
            assert thanks.status_code == 200 and "您的问题已处理完毕" in thanks.text
        closed = await api.wait_for(routed.case_id, "case.closed")
        assert closed.data.outcome == "delighted" and closed.data.ratio == 1.25
        assert (closed.data.csat, closed.data.expected, closed.data.perceived) == (5, 4, 5)

        twice = await customer.post(link, data=answer)
        assert twice.status_code == 410 and "已经提交过了" in twice.text
        reopened = await customer.get(link, params={"lang": "en"})
        assert reopened.status_code == 410 and "already been answered" in reopened.text
    case = (await api.http.get(f"/v1/cases/{routed.case_id}")).json()
    assert case["status"] == "closed" and case["surveys"][0]["answer"]["via"] == "page"


async def test_an_altered_link_is_refused_and_an_unanswered_survey_expires_and_closes(
    api: Api,
) -> None:
    routed = await api.open_case()
    link = await api.resolve(routed.case_id)
    head, _, signature = link.rpartition(".")
    async with httpx.AsyncClient() as customer:
        altered = await customer.get(f"{head}.{signature[::-1]}")
        assert altered.status_code == 404 and "not valid" in altered.text

        api.clock.advance(hours=24)  # the service's own due queue runs on this clock
        reminder = await api.wait_for(routed.case_id, "survey.requested", reminder=True)
        assert reminder.data.url == link

        api.clock.advance(hours=48)
        closed = await api.wait_for(routed.case_id, "case.closed")
        assert closed.data.outcome == "no_response"
        expired = await customer.post(
            link, data={"csat": "5", "expected": "5", "perceived": "5", "solved": "yes"}
        )
        assert expired.status_code == 410 and "expired" in expired.text


async def test_survey_answers_by_api_reopen_the_case_and_count_once(api: Api) -> None:
    routed = await api.open_case()
    await api.resolve(routed.case_id)
    body = {"csat": 3, "expected": 5, "perceived": 2, "solved": False, "comment": "still broken"}
    answer = await api.http.post(f"/v1/cases/{routed.case_id}/survey", json=body)
    assert answer.json() == {
        "case_id": routed.case_id,
        "ratio": 0.4,
        "verdict": "dissatisfied",
        "status": "reopened",
    }
    escalated = await api.wait_for(routed.case_id, "case.escalated")
    assert escalated.data.reopen_count == 1 and escalated.data.priority == Priority.P2
    feedback = await api.lifecycle.wait_for(
        lambda e: (
            e.name == "feedback.received" and e.data.feedback.related_case_id == routed.case_id
        )
    )
    assert feedback.data.feedback.text == "still broken"
    again = await api.http.post(f"/v1/cases/{routed.case_id}/survey", json=body)
    assert again.status_code == 410
    missing = await api.http.post(
        f"/v1/cases/{routed.case_id}/survey", json={"csat": 3, "expected": 5, "perceived": 2}
    )
    assert missing.status_code == 422


async def test_callback_outcomes_are_recorded_once_and_no_answer_schedules_the_next_try(
    api: Api,
) -> None:
    routed = await api.open_case()
    callback_id = derive_id("callback", routed.case_id, "after_routing", "0")
    url = f"/v1/callbacks/{callback_id}/outcome"
    api.clock.advance(hours=24)  # P3: the first callback is due a day after routing
    await api.wait_for(routed.case_id, "callback.due", callback_id=callback_id)

    no_answer = await api.http.post(url, json={"outcome": "no_answer", "by": "dialer-1"})
    assert no_answer.status_code == 200, no_answer.text
    result = no_answer.json()
    assert result["callback"]["status"] == "done"
    following = result["next_callback"]
    assert following["attempt"] == 2
    scheduled = await api.wait_for(
        routed.case_id, "callback.scheduled", callback_id=following["callback_id"]
    )
    assert scheduled.data.due_at == api.clock.now + timedelta(minutes=30)

    repeated = await api.http.post(url, json={"outcome": "no_answer", "by": "dialer-1"})
    assert repeated.json() == result
    conflict = await api.http.post(url, json={"outcome": "reached", "by": "dialer-1"})
    assert conflict.status_code == 409
    later = await api.http.post(
        f"/v1/callbacks/{following['callback_id']}/outcome",
        json={"outcome": "rescheduled", "by": "agent-wang-fang"},
    )
    assert later.status_code == 422 and "reschedule_at" in later.text
    moved_to = api.clock.now + timedelta(days=1)
    moved = await api.http.post(
        f"/v1/callbacks/{following['callback_id']}/outcome",
        json={
            "outcome": "rescheduled",
            "by": "agent-wang-fang",
            "reschedule_at": moved_to.isoformat(),
        },
    )
    assert moved.json()["next_callback"]["due_at"] == moved_to.isoformat().replace("+00:00", "Z")
    assert (
        await api.http.post("/v1/callbacks/nope/outcome", json={"outcome": "reached", "by": "x"})
    ).status_code == 404
    case = (await api.http.get(f"/v1/cases/{routed.case_id}")).json()
    assert case["callbacks_made"] == 2
    assert [cb["status"] for cb in case["callbacks"]] == ["done", "done", "scheduled"]
