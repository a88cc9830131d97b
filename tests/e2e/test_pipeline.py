"""The whole pipeline: four service processes, the real broker and the real database.

Feedback goes in over intake's HTTP API; the case is read, resolved and surveyed over
followup's API; the lifecycle comes out on Kafka and the case state is in MongoDB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from pymongo import AsyncMongoClient

from shared.contracts import Topic
from shared.db import Document
from shared.tools import devstack
from tests.conftest import Infra
from tests.support import TopicReader, eventually, produce_raw


@dataclass
class Pipeline:
    infra: Infra
    database: str
    ports: dict[str, int]
    processes: list[devstack.Process]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@pytest.fixture(scope="module")
def pipeline(infra: Infra) -> Iterator[Pipeline]:
    database = f"e2e_{uuid.uuid4().hex[:8]}"
    group_suffix = uuid.uuid4().hex[:6]
    ports = {name: devstack.free_port() for name in devstack.SERVICES}
    processes: list[devstack.Process] = []
    try:
        for name in devstack.SERVICES:
            prefix = f"CLOSELOOP_{name.upper()}_"
            env = devstack.service_env(
                name,
                http_port=ports[name],
                kafka_port=infra.kafka_port,
                mongo_port=infra.mongo_port,
                database=database,
                extra={f"{prefix}KAFKA_CONSUMER_GROUP": f"closeloop-{name}-{group_suffix}"},
            )
            processes.append(
                devstack.start_service(name, env, ports[name], infra.log_dir / f"{name}.log")
            )
        yield Pipeline(infra, database, ports, processes)
    finally:
        devstack.stop_together(processes)
    # SIGTERM is a clean shutdown: every service exits 0.
    assert [p.popen.returncode for p in processes] == [0] * len(devstack.SERVICES)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def wait_ready(http: httpx.AsyncClient, pipeline: Pipeline) -> None:
    async def all_ready() -> bool:
        for service in devstack.SERVICES:
            if (await http.get(f"{pipeline.url(service)}/readyz")).status_code != 200:
                return False
        return True

    await eventually(all_ready, timeout=30)


# The local stack's intake integration (services/intake/policy.yaml).
INTAKE_AUTH = {"X-API-Key": devstack.INTAKE_DEV_API_KEY}
# Agent tools call followup's case API with the local stack's key.
INSIGHTS_AUTH = {"X-API-Key": devstack.INSIGHTS_DEV_API_KEY}
FOLLOWUP_AUTH = {"X-API-Key": devstack.FOLLOWUP_DEV_API_KEY}


async def post_complaint(
    http: httpx.AsyncClient, pipeline: Pipeline, text: str, **extra: Any
) -> str:
    body = {
        "channel": "web",
        "external_id": uuid.uuid4().hex,
        "customer": {"id": f"C-{uuid.uuid4().hex[:6]}", "email": "li.wei@example.com"},
        "text": text,
        **extra,
    }
    response = await http.post(
        f"{pipeline.url('intake')}/v1/feedback", json=body, headers=INTAKE_AUTH
    )
    assert response.status_code == 202, response.text
    return str(response.json()["feedback_id"])


async def case_of(http: httpx.AsyncClient, pipeline: Pipeline, feedback_id: str) -> dict[str, Any]:
    async def lookup() -> dict[str, Any] | None:
        page = (
            await http.get(
                f"{pipeline.url('followup')}/v1/cases",
                params={"feedback_id": feedback_id},
                headers=FOLLOWUP_AUTH,
            )
        ).json()
        return page["items"][0] if page["items"] else None

    return await eventually(lookup, timeout=30)  # type: ignore[no-any-return]


async def test_a_complaint_travels_to_a_closed_case(
    pipeline: Pipeline, http: httpx.AsyncClient, mongo_client: AsyncMongoClient[Document]
) -> None:
    await wait_ready(http, pipeline)
    async with TopicReader(
        pipeline.infra.bootstrap, Topic.CASE_ROUTED, Topic.CASE_LIFECYCLE
    ) as kafka:
        feedback_id = await post_complaint(
            http,
            pipeline,
            "I was double charged for my order and the refund never came. "
            "I will contact my lawyer.",
        )
        routed = await kafka.wait_for(
            lambda e: e.name == "case.routed" and e.data.feedback.feedback_id == feedback_id
        )
        case_id = routed.data.case_id
        assert routed.data.classification.root_cause == "billing"
        assert any(s.name == "legal_threat" for s in routed.data.classification.signals)
        # A legal threat is critical, and critical cases go to the escalations team.
        assert routed.data.classification.urgency == "critical"
        assert routed.data.routing.team == "escalations"
        assert routed.data.routing.priority == "P1"
        assert routed.data.routing.agent is not None

        case = await case_of(http, pipeline, feedback_id)
        assert case["case_id"] == case_id and case["status"] == "open"
        assert case["classification"]["root_cause"] == "billing"
        assert case["routing"]["priority"] == routed.data.routing.priority
        await kafka.wait_for(lambda e: e.name == "callback.scheduled" and e.subject == case_id)

        followup = pipeline.url("followup")
        resolved = await http.post(
            f"{followup}/v1/cases/{case_id}/resolve",
            json={
                "resolved_by": routed.data.routing.agent,
                "solution": "refunded the second charge",
                "promise": "money back within 3 working days",
            },
            headers=FOLLOWUP_AUTH,
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "resolved"
        answer = await http.post(
            f"{followup}/v1/cases/{case_id}/survey",
            json={"csat": 5, "expected": 4, "perceived": 4, "solved": True},
            headers=FOLLOWUP_AUTH,
        )
        assert answer.json() == {
            "case_id": case_id,
            "ratio": 1.0,
            "verdict": "satisfied",
            "status": "closed",
        }

        closed = await kafka.wait_for(lambda e: e.name == "case.closed" and e.subject == case_id)
        lifecycle = [
            e.name
            for e in await kafka.collect(0.5)
            if e.subject == case_id and e.topic == Topic.CASE_LIFECYCLE
        ]
    assert closed.data.outcome == "satisfied"
    assert closed.data.csat == 5 and closed.data.ratio == 1.0
    assert closed.data.root_cause == "billing" and closed.data.team == "escalations"
    assert closed.data.resolution_sla_met is True
    # One case's lifecycle is keyed by its id, so it arrives in order.
    assert lifecycle == [
        "callback.scheduled",
        "case.first_response",  # the resolution is the first response here
        "case.resolved",
        "survey.requested",
        "callback.scheduled",  # the return visit after the resolution
        "survey.answered",
        "case.closed",
    ]

    stored = await mongo_client[pipeline.database]["followup_cases"].find_one({"_id": case_id})
    assert stored is not None and stored["status"] == "closed" and stored["outcome"] == "satisfied"
    assert stored["outbox"] == []
    timeline = [entry["event"] for entry in stored["timeline"]]
    assert timeline[-1] == "case.closed"

    # The case, closed, in insights' report of its day and among the cases behind it.
    insights = pipeline.url("insights")
    opened = routed.data.feedback.received_at.date().isoformat()
    period = {"from": opened, "to": opened, "team": "escalations"}

    async def reported() -> dict[str, Any] | None:
        page = await http.get(f"{insights}/v1/reports/cases", params=period, headers=INSIGHTS_AUTH)
        rows = [row for row in page.json()["cases"] if row["case_id"] == case_id]
        return rows[0] if rows and rows[0]["closed_at"] else None

    row = await eventually(reported)
    assert (row["root_cause"], row["priority"], row["csat"], row["outcome"]) == (
        "billing", "P1", 5, "satisfied",
    )  # fmt: skip
    summary = await http.get(f"{insights}/v1/reports/summary", params=period, headers=INSIGHTS_AUTH)
    assert summary.json()["total"]["cases"] >= 1


async def test_an_unsatisfied_customer_reopens_the_case(
    pipeline: Pipeline, http: httpx.AsyncClient, mongo_client: AsyncMongoClient[Document]
) -> None:
    await wait_ready(http, pipeline)
    feedback_id = await post_complaint(http, pipeline, "快递送错了，尺码不对，客服也联系不上")
    case = await case_of(http, pipeline, feedback_id)
    case_id = case["case_id"]
    followup = pipeline.url("followup")
    async with TopicReader(pipeline.infra.bootstrap, Topic.CASE_LIFECYCLE) as kafka:
        await http.post(
            f"{followup}/v1/cases/{case_id}/resolve",
            json={"resolved_by": "agent-wang-fang", "solution": "发了正确尺码"},
            headers=FOLLOWUP_AUTH,
        )
        answer = await http.post(
            f"{followup}/v1/cases/{case_id}/survey",
            json={
                "csat": 2,
                "expected": 5,
                "perceived": 2,
                "solved": True,
                "comment": "还是没解决",
            },
            headers=FOLLOWUP_AUTH,
        )
        assert answer.json()["verdict"] == "dissatisfied"
        assert answer.json()["status"] == "reopened"
        reopened = await kafka.wait_for(
            lambda e: e.name == "case.reopened" and e.subject == case_id
        )
    assert reopened.data.reopen_count == 1
    stored = await mongo_client[pipeline.database]["followup_cases"].find_one({"_id": case_id})
    assert stored is not None and stored["status"] == "reopened" and stored["reopen_count"] == 1
    again = await http.post(
        f"{followup}/v1/cases/{case_id}/survey",
        json={"csat": 5, "expected": 5, "perceived": 5, "solved": True},
        headers=FOLLOWUP_AUTH,
    )
    assert again.status_code == 410  # each survey answers once


async def test_a_broken_promise_escalates_the_case_and_shows_in_case_closed(
    pipeline: Pipeline, http: httpx.AsyncClient
) -> None:
    await wait_ready(http, pipeline)
    followup = pipeline.url("followup")
    async with TopicReader(
        pipeline.infra.bootstrap, Topic.CASE_ROUTED, Topic.CASE_LIFECYCLE, Topic.CUSTOMER_NOTIFY
    ) as kafka:
        feedback_id = await post_complaint(
            http,
            pipeline,
            "The courier lost my parcel and nobody answers the phone.",
            expected_outcome="refund",
        )
        routed = await kafka.wait_for(
            lambda e: e.name == "case.routed" and e.data.feedback.feedback_id == feedback_id
        )
        case_id = routed.data.case_id
        expectation = routed.data.classification.expectation
        assert (expectation.outcome, expectation.source) == ("refund", "customer")
        ack = await kafka.wait_for(
            lambda e: e.name == "customer.notify" and e.data.case_id == case_id
        )
        assert ack.data.kind == "acknowledgement" and ack.data.reference in ack.data.text

        made = await http.post(
            f"{followup}/v1/cases/{case_id}/promises",
            json={"what": "refund the parcel", "due_in": "2 working days", "by": "agent-li-na"},
            headers=FOLLOWUP_AUTH,
        )
        assert made.status_code == 201, made.text
        promise_id = made.json()["promise"]["promise_id"]
        broken = await http.post(
            f"{followup}/v1/cases/{case_id}/promises/{promise_id}/outcome",
            json={"outcome": "broken", "by": "agent-li-na", "note": "the bank rejected it"},
            headers=FOLLOWUP_AUTH,
        )
        assert broken.status_code == 200, broken.text
        escalated = await kafka.wait_for(
            lambda e: e.name == "case.escalated" and e.subject == case_id
        )
        assert "promise broken" in escalated.data.reason
        # The router routes the escalated case again, one priority higher.
        again = await kafka.wait_for(
            lambda e: (
                e.name == "case.routed"
                and e.data.case_id == case_id
                and e.data.routing.reroute_reason == "escalated"
            )
        )
        assert again.data.routing.reroute_count == 1

        async def rerouted() -> bool:
            url = f"{followup}/v1/cases/{case_id}"
            case = (await http.get(url, headers=FOLLOWUP_AUTH)).json()
            return bool(case["routing"]["reroute_count"] == 1)

        await eventually(rerouted)
        resolved = await http.post(
            f"{followup}/v1/cases/{case_id}/resolve",
            json={"resolved_by": "agent-li-na", "solution": "refunded by transfer"},
            headers=FOLLOWUP_AUTH,
        )
        assert resolved.status_code == 200, resolved.text
        answer = {"csat": 4, "expected": 4, "perceived": 4, "solved": True, "expectation_met": True}
        await http.post(f"{followup}/v1/cases/{case_id}/survey", json=answer, headers=FOLLOWUP_AUTH)
        closed = await kafka.wait_for(lambda e: e.name == "case.closed" and e.subject == case_id)
    assert (closed.data.promises_made, closed.data.promises_broken) == (1, 1)
    assert closed.data.expected_outcome == "refund" and closed.data.expectation_met is True


async def test_a_poison_message_is_dead_lettered_and_the_stream_keeps_flowing(
    pipeline: Pipeline, http: httpx.AsyncClient
) -> None:
    await wait_ready(http, pipeline)
    bootstrap = pipeline.infra.bootstrap
    key = uuid.uuid4().hex.encode()
    async with TopicReader(bootstrap, "feedback.received.dlq", Topic.CASE_ROUTED) as kafka:
        await produce_raw(bootstrap, Topic.FEEDBACK_RECEIVED, b'{"text": "no envelope"}', key=key)
        await produce_raw(
            bootstrap,
            Topic.FEEDBACK_RECEIVED,
            b"{}",
            key=key,
            headers=[
                ("ce_id", b"x1"),
                ("ce_type", b"closeloop.feedback.received.v1"),
                ("ce_source", b"/bad"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
        )
        feedback_id = await post_complaint(http, pipeline, "The parcel never arrived")
        dead = []
        for value in (b'{"text": "no envelope"}', b"{}"):

            def dead_letter_of(record: ConsumerRecord[bytes, bytes], value: bytes = value) -> bool:
                return bool(
                    record.topic == "feedback.received.dlq"
                    and record.key == key
                    and record.value == value
                )

            dead.append(await kafka.wait_for_record(dead_letter_of))
        await kafka.wait_for(
            lambda e: e.name == "case.routed" and e.data.feedback.feedback_id == feedback_id
        )
    reasons = [dict(r.headers)["dlq_reason"].decode() for r in dead]
    assert "not a CloudEvent" in reasons[0]
    assert reasons[1] == "invalid feedback.received: feedback: Field required"
    assert all(dict(r.headers)["dlq_group"].startswith(b"closeloop-classifier") for r in dead)


async def test_reposted_feedback_yields_one_case(
    pipeline: Pipeline, http: httpx.AsyncClient, mongo_client: AsyncMongoClient[Document]
) -> None:
    await wait_ready(http, pipeline)
    body = {
        "channel": "sms",
        "external_id": uuid.uuid4().hex,
        "customer": {"phone": f"+86138{uuid.uuid4().int % 10**8:08d}"},
        "text": "退款还没到账",
    }
    intake = f"{pipeline.url('intake')}/v1/feedback"
    ids = {
        (await http.post(intake, json=body, headers=INTAKE_AUTH)).json()["feedback_id"]
        for _ in range(3)
    }
    assert len(ids) == 1
    feedback_id = ids.pop()
    await case_of(http, pipeline, feedback_id)
    await asyncio.sleep(1.0)
    cases = mongo_client[pipeline.database]["followup_cases"]
    assert await cases.count_documents({"feedback_id": feedback_id}) == 1
    routings = mongo_client[pipeline.database]["router_routings"]
    assert await routings.count_documents({"feedback_id": feedback_id}) == 1


async def test_every_service_serves_metrics(pipeline: Pipeline, http: httpx.AsyncClient) -> None:
    await wait_ready(http, pipeline)
    for service in devstack.SERVICES:
        text = (await http.get(f"{pipeline.url(service)}/metrics")).text
        assert f'closeloop_service_info{{service="{service}",version="0.1.0"}} 1.0' in text
    classifier = (await http.get(f"{pipeline.url('classifier')}/metrics")).text
    assert "closeloop_events_consumed_total{" in classifier
    assert "closeloop_classifications_total{" in classifier
