"""The HTTP side of router and followup while MongoDB is unreachable: every API answers
503 problem+json with Retry-After (the survey page its own HTML page), never 500, and
the database work of a request is bounded by a setting well below the driver's
server-selection timeout (how long that takes is measured by
benchmarks/dependency_down.py, not asserted here)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest
from pymongo import AsyncMongoClient
from starlette.types import Receive, Scope, Send

from services.followup.app import build as build_followup
from services.followup.links import SurveyLinks, SurveyTicket
from services.followup.page import SurveyPages
from services.followup.settings import FollowupSettings
from services.intake.app import build as build_intake
from services.router.app import build as build_router
from services.router.settings import RouterSettings
from shared.clock import utcnow
from shared.http import PROBLEM_JSON
from shared.runtime import RequestDeadline
from shared.settings import ServiceSettings
from shared.tools import devstack
from shared.tools.devstack import free_port
from tests.conftest import Infra
from tests.integration.followup.test_store import API_KEY, SURVEY_SECRET, followup_settings
from tests.integration.intake.test_api import COMPLAINT, OPEN, intake_settings
from tests.integration.intake.test_api import ENVIRON as INTAKE_ENVIRON
from tests.integration.router.test_flows import small_policy
from tests.integration.router.test_service import WRITE_KEY, router_settings, write_policy
from tests.integration.running import running
from tests.support import metric_sum

TEXTS = SurveyPages().catalog


def nowhere() -> str:
    """A MongoDB URL where nothing listens."""
    return devstack.mongo_url(free_port())


def assert_unavailable(response: httpx.Response, settings: ServiceSettings) -> None:
    assert response.status_code == 503, (response.request.url, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == str(settings.retry_after_s)
    body = response.json()
    assert body["status"] == 503
    assert body["title"] == "Service unavailable"


def assert_short_request_budget(settings: ServiceSettings) -> None:
    """The request's database budget is the service's default, short, and shorter than
    the server-selection timeout that consumers and jobs keep."""
    assert "mongo_request_timeout_ms" not in settings.model_fields_set
    assert settings.mongo_request_timeout_ms <= 2_000
    assert settings.mongo_request_timeout_ms < settings.mongo_timeout_ms


async def status_count(http: httpx.AsyncClient, route: str, status: str) -> float:
    return await metric_sum(http, "closeloop_http_requests_total", route=route, status=status)


# --- followup -----------------------------------------------------------------------------


@pytest.fixture
async def followup(
    infra: Infra, database_name: str
) -> AsyncIterator[tuple[FollowupSettings, httpx.AsyncClient]]:
    settings = followup_settings(infra, database_name, mongo_url=nowhere())
    async with (
        running(build_followup(settings), wait_ready=False),
        httpx.AsyncClient(
            base_url=settings.public_url, headers={"X-API-Key": API_KEY}, timeout=30
        ) as http,
    ):
        yield settings, http


async def test_followup_s_case_api_answers_503_while_its_database_is_unreachable(
    followup: tuple[FollowupSettings, httpx.AsyncClient],
) -> None:
    settings, http = followup
    assert_short_request_budget(settings)
    case = f"case-{uuid.uuid4().hex[:8]}"
    survey = {"csat": 4, "expected": 4, "perceived": 4, "solved": True}
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v1/cases", None),
        ("GET", f"/v1/cases/{case}", None),
        ("POST", f"/v1/cases/{case}/responses", {"responded_by": "agent-a"}),
        ("POST", f"/v1/cases/{case}/notes", {"author": "agent-a", "text": "called back"}),
        ("POST", f"/v1/cases/{case}/resolve", {"resolved_by": "agent-a", "solution": "refund"}),
        ("POST", f"/v1/cases/{case}/survey", survey),
        ("POST", "/v1/callbacks/cb-1/outcome", {"outcome": "reached", "by": "agent-a"}),
    ]
    responses = await asyncio.gather(
        *(http.request(method, path, json=body) for method, path, body in requests)
    )
    for response in responses:
        assert_unavailable(response, settings)
    # Counted as what was answered, not as a 500.
    assert await status_count(http, "/v1/cases", "503") == 1
    assert await status_count(http, "/v1/cases", "500") == 0


async def test_the_survey_page_says_try_again_later_while_the_database_is_unreachable(
    followup: tuple[FollowupSettings, httpx.AsyncClient],
) -> None:
    settings, http = followup
    links = SurveyLinks(SURVEY_SECRET, public_url=settings.public_url)
    token = links.token(SurveyTicket("case-1", "survey-1", utcnow() + timedelta(days=3)))
    opened, answered = await asyncio.gather(
        http.get(f"/survey/{token}", params={"lang": "zh"}),
        http.post(
            f"/survey/{token}",
            data={"csat": "5", "expected": "4", "perceived": "4", "solved": "yes", "lang": "en"},
        ),
    )
    for response, texts in ((opened, TEXTS.zh), (answered, TEXTS.en)):
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["retry-after"] == str(settings.retry_after_s)
        assert response.headers["cache-control"] == "no-store"
        assert texts.try_later in response.text
        assert texts.try_later_title in response.text


# --- intake -------------------------------------------------------------------------------


async def test_intake_answers_503_while_the_database_of_its_limits_is_unreachable(
    infra: Infra,
) -> None:
    """Intake counts rate limits and seen signatures in MongoDB: without it, a post is a
    503 with Retry-After (never accepted unchecked, never a 500)."""
    settings = intake_settings(infra, mongo_url=nowhere())
    assert_short_request_budget(settings)
    async with (
        running(build_intake(settings, environ=INTAKE_ENVIRON), wait_ready=False),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.http_port}", headers=OPEN, timeout=30
        ) as http,
    ):
        single, batch = await asyncio.gather(
            http.post("/v1/feedback", json=COMPLAINT),
            http.post("/v1/feedback/batch", json={"items": [COMPLAINT]}),
        )
    for response in (single, batch):
        assert_unavailable(response, settings)


# --- router -------------------------------------------------------------------------------


def router_for(infra: Infra, tmp_path: Path, mongo_url: str) -> RouterSettings:
    policy_file = write_policy(tmp_path, small_policy(desk=2, capacity=1))
    settings = router_settings(
        infra, f"test_{uuid.uuid4().hex[:12]}", policy_file, f"router-{uuid.uuid4().hex[:8]}"
    )
    return settings.model_copy(update={"mongo_url": mongo_url})


ROUTER_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/agents", None),
    ("GET", "/v1/agents/desk-00", None),
    ("PUT", "/v1/agents/desk-00/availability", {"available": False}),
    ("GET", "/v1/teams", None),
]


async def router_requests(http: httpx.AsyncClient, team: str) -> list[httpx.Response]:
    requests = [*ROUTER_REQUESTS, ("GET", f"/v1/teams/{team}/queue", None)]
    return await asyncio.gather(
        *(http.request(method, path, json=body) for method, path, body in requests)
    )


async def test_the_router_s_api_answers_503_while_its_database_is_unreachable(
    infra: Infra, tmp_path: Path
) -> None:
    settings = router_for(infra, tmp_path, nowhere())
    assert_short_request_budget(settings)
    team = small_policy(desk=2, capacity=1).teams[0].id
    async with (
        running(build_router(settings), wait_ready=False),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.http_port}",
            headers={"X-API-Key": WRITE_KEY},
            timeout=30,
        ) as http,
    ):
        for response in await router_requests(http, team):
            assert_unavailable(response, settings)


async def test_the_router_s_api_answers_503_once_its_database_stops(
    infra: Infra, tmp_path: Path
) -> None:
    database = devstack.start_database(free_port(), ":memory:")
    assert database.port is not None
    try:
        settings = router_for(infra, tmp_path, devstack.mongo_url(database.port))
        team = small_policy(desk=2, capacity=1).teams[0].id
        async with (
            running(build_router(settings)),
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.http_port}",
                headers={"X-API-Key": WRITE_KEY},
                timeout=30,
            ) as http,
        ):
            assert [r.status_code for r in await router_requests(http, team)] == [200] * 5
            database.kill()
            for response in await router_requests(http, team):
                assert_unavailable(response, settings)
    finally:
        database.stop()


async def test_a_request_gets_its_own_database_budget_not_one_inherited_from_before(
    infra: Infra,
) -> None:
    """A request can start in a context copied from an earlier one (uvicorn schedules
    the next request of a keep-alive connection from callbacks of the last), holding that
    request's deadline, long past: the request still has its full budget."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url)
    answers: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        answers.append((await client.admin.command("ping"))["ok"])

    async def nothing() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def ignore(message: MutableMapping[str, Any]) -> None:
        return None

    try:
        with pymongo.timeout(0.05):  # the earlier request's deadline
            await asyncio.sleep(0.1)
            await RequestDeadline(app, seconds=2.0)({"type": "http"}, nothing, ignore)
    finally:
        await client.close()
    assert answers == [1.0]
