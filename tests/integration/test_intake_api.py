"""Intake over real HTTP and the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.intake.app import build
from services.intake.settings import IntakeSettings
from shared import devstack
from shared.contracts import Topic
from shared.devstack import free_port
from tests.conftest import Infra
from tests.integration.running import running
from tests.support import TopicReader

COMPLAINT = {
    "channel": "email",
    "customer": {"email": "li.wei@example.com", "tier": "vip"},
    "subject": "退款",
    "text": "重复扣款两次，退款到现在还没到账！",
    "received_at": "2026-03-01T17:00:00+08:00",
}


def intake_settings(bootstrap: str) -> IntakeSettings:
    return IntakeSettings(
        http_port=free_port(),
        kafka_bootstrap=bootstrap,
        kafka_request_timeout_ms=2000,
        retry_after_s=7,
    )


@pytest.fixture
async def intake(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    settings = intake_settings(infra.bootstrap)
    async with (
        running(build(settings)),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
    ):
        yield client


async def test_accepted_feedback_is_on_the_topic_when_202_is_answered(
    infra: Infra, intake: httpx.AsyncClient
) -> None:
    async with TopicReader(infra.bootstrap, Topic.FEEDBACK_RECEIVED) as reader:
        response = await intake.post("/v1/feedback", json={**COMPLAINT, "external_id": "mail-1"})
        assert response.status_code == 202, response.text
        feedback_id = response.json()["feedback_id"]
        event = await reader.wait_for(lambda e: e.subject == feedback_id, timeout=5)
    feedback = event.data.feedback
    assert feedback.language == "zh"
    assert feedback.received_at.isoformat() == "2026-03-01T09:00:00+00:00"
    assert feedback.customer.tier == "vip"
    assert event.source == "/closeloop/intake"


async def test_reposting_the_same_message_answers_the_same_id(intake: httpx.AsyncClient) -> None:
    body = {**COMPLAINT, "external_id": "mail-2"}
    first = (await intake.post("/v1/feedback", json=body)).json()["feedback_id"]
    second = (await intake.post("/v1/feedback", json=body)).json()["feedback_id"]
    keyed = await intake.post("/v1/feedback", json=COMPLAINT, headers={"Idempotency-Key": "abc"})
    keyed_again = await intake.post(
        "/v1/feedback", json=COMPLAINT, headers={"Idempotency-Key": "abc"}
    )
    assert first == second
    assert keyed.json()["feedback_id"] == keyed_again.json()["feedback_id"] != first


async def test_bad_input_gets_a_problem_naming_each_field(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/v1/feedback", json={"channel": "fax", "customer": {"tier": "gold"}, "text": ""}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    fields = {error["field"] for error in problem["errors"]}
    assert {"channel", "customer.tier", "text"} <= fields
    assert "channel" in problem["detail"]


async def test_malformed_json_is_a_422_not_a_500(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/v1/feedback", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["title"] == "Invalid request"


async def test_health_readiness_and_metrics(intake: httpx.AsyncClient) -> None:
    assert (await intake.get("/healthz")).json()["status"] == "ok"
    ready = await intake.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["kafka"] is True
    await intake.post("/v1/feedback", json=COMPLAINT)
    metrics = (await intake.get("/metrics")).text
    assert 'closeloop_intake_feedback_accepted_total{channel="email"}' in metrics
    assert (
        'closeloop_http_requests_total{method="POST",route="/v1/feedback",status="202"}' in metrics
    )


async def test_broker_down_answers_503_with_retry_after_and_is_not_ready() -> None:
    dead_port = free_port()
    settings = intake_settings(f"127.0.0.1:{dead_port}")
    async with (
        running(build(settings), wait_ready=False),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
    ):
        response = await client.post("/v1/feedback", json=COMPLAINT)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert "nothing was accepted" in response.json()["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"] is False


async def test_broker_lost_after_start_answers_503_not_202() -> None:
    broker = devstack.start_broker(free_port())
    assert broker.port is not None
    bootstrap = f"127.0.0.1:{broker.port}"
    try:
        await devstack.create_topics(bootstrap, 1)
        settings = intake_settings(bootstrap)
        async with (
            running(build(settings)),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
        ):
            assert (await client.post("/v1/feedback", json=COMPLAINT)).status_code == 202
            broker.kill()
            response = await client.post("/v1/feedback", json=COMPLAINT, timeout=30)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "7"
    finally:
        broker.stop()
