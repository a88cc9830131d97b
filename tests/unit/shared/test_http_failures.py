"""Failures on the HTTP side of every service: a dependency that is down is a 503
problem with Retry-After, anything unexpected a 500 problem that is logged; never
Starlette's plain-text 500. Each answer is counted under the status it had."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from pymongo.errors import AutoReconnect, ExecutionTimeout, OperationFailure

from shared.errors import BrokerUnavailable
from shared.http import PROBLEM_JSON
from shared.metrics import HTTP_REQUESTS
from shared.runtime import Service
from shared.settings import ServiceSettings

FAILURES: dict[str, BaseException] = {
    "mongo-unreachable": AutoReconnect("127.0.0.1:27017: connection refused"),
    "mongo-timeout": ExecutionTimeout("operation exceeded time limit", code=50),
    "broker-unreachable": KafkaConnectionError("no broker"),
    "broker-no-ack": BrokerUnavailable("broker did not acknowledge"),
}


def service() -> Service:
    svc = Service("http-test", ServiceSettings(retry_after_s=7))

    @svc.app.get("/fails/{kind}")
    async def fails(kind: str) -> None:
        raise FAILURES[kind]

    @svc.app.get("/bug")
    async def bug() -> None:
        raise KeyError("customer.email li.wei@example.com")

    @svc.app.get("/database-refusal")
    async def refusal() -> None:
        raise OperationFailure("not authorized on closeloop", code=13)

    return svc


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=service().app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def served(route: str, status: int) -> float:
    value: float = HTTP_REQUESTS.labels("GET", route, str(status))._value.get()
    return value


@pytest.mark.parametrize("kind", list(FAILURES))
async def test_a_dependency_that_is_down_is_a_503_problem_with_retry_after(
    http: httpx.AsyncClient, kind: str
) -> None:
    before = served("/fails/{kind}", 503)
    response = await http.get(f"/fails/{kind}")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "7"
    body = response.json()
    assert body["status"] == 503 and body["title"] == "Service unavailable"
    assert "retry later" in body["detail"]
    assert served("/fails/{kind}", 503) == before + 1


async def test_an_unexpected_error_is_a_500_problem_that_is_logged_with_its_traceback(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    before = served("/bug", 500)
    with caplog.at_level(logging.ERROR, logger="shared.http"):
        response = await http.get("/bug")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 500 and body["title"] == "Internal Server Error"
    # What went wrong stays in the log: the message could quote personal data.
    assert "li.wei" not in response.text and "KeyError" not in response.text
    (record,) = [r for r in caplog.records if r.name == "shared.http"]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert record.__dict__["route"] == "/bug"
    assert served("/bug", 500) == before + 1


async def test_a_database_error_that_is_not_transient_is_a_500_not_a_503(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="shared.http"):
        response = await http.get("/database-refusal")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "retry-after" not in response.headers
    (record,) = [r for r in caplog.records if r.name == "shared.http"]
    assert record.exc_info is not None and record.exc_info[0] is OperationFailure
