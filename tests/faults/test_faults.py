"""Fault injection on the whole pipeline: processes killed with SIGKILL, the database
stopped, the broker frozen, a poison message. Each test runs its own broker, database
and four service processes, so it can break them freely."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from shared.contracts import Topic
from shared.db import Document
from shared.tools import devstack
from shared.tools.cli import app as cli_app
from tests.support import TopicReader, produce_raw

INTAKE_AUTH = {"X-API-Key": devstack.INTAKE_DEV_API_KEY}


@dataclass
class Pipeline:
    root: Path
    kafka_port: int
    mongo_port: int
    ports: dict[str, int] = field(default_factory=dict)
    services: dict[str, devstack.Process] = field(default_factory=dict)
    broker: devstack.Process | None = None
    database: devstack.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start_database(self) -> None:
        self.database = devstack.start_database(
            self.mongo_port, str(self.root / "mongo"), self.root / "mongodb.log"
        )

    def start_service(self, name: str) -> None:
        env = devstack.service_env(
            name,
            http_port=self.ports[name],
            kafka_port=self.kafka_port,
            mongo_port=self.mongo_port,
            database="faults",
        )
        self.services[name] = devstack.start_service(
            name, env, self.ports[name], self.root / f"{name}.log"
        )

    def kill(self, name: str) -> None:
        self.services[name].kill()

    def stop(self) -> None:
        devstack.stop_together(list(self.services.values()))
        for server in (self.database, self.broker):
            if server is not None:
                server.stop()


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    root = Path(tempfile.mkdtemp(prefix="closeloop-faults-"))
    (root / "mongo").mkdir()
    p = Pipeline(root=root, kafka_port=devstack.free_port(), mongo_port=devstack.free_port())
    p.ports = {name: devstack.free_port() for name in devstack.SERVICES}
    try:
        p.broker = devstack.start_broker(p.kafka_port, root / "kafka.log")
        asyncio.run(devstack.create_topics(p.bootstrap, partitions=3))
        p.start_database()
        for name in devstack.SERVICES:
            p.start_service(name)
        yield p
    finally:
        p.stop()


@pytest.fixture
async def mongo(pipeline: Pipeline) -> AsyncIterator[Any]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        devstack.mongo_url(pipeline.mongo_port), tz_aware=True, serverSelectionTimeoutMS=30_000
    )
    yield client["faults"]
    await client.close()


def complaint(index: int, run: str) -> dict[str, Any]:
    # One customer per complaint, so none is linked to another's case.
    return {
        "channel": "web",
        "external_id": f"{run}-{index}",
        "customer": {"id": f"{run}-customer-{index}"},
        "text": f"My parcel {index} never arrived and nobody answers the hotline.",
    }


async def post_until_accepted(
    http: httpx.AsyncClient, url: str, items: list[dict[str, Any]]
) -> None:
    """What a channel integration does: retry until intake acknowledges (same ids)."""
    while True:
        try:
            response = await http.post(
                f"{url}/v1/feedback/batch", json={"items": items}, headers=INTAKE_AUTH
            )
            if response.status_code == 202:
                body = response.json()
                assert body["rejected"] == 0, body
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.3)


async def stream(pipeline: Pipeline, run: str, count: int, per_second: float) -> None:
    batch = 20
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        tasks = []
        for first in range(0, count, batch):
            delay = started + first / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            items = [complaint(i, run) for i in range(first, min(count, first + batch))]
            tasks.append(
                asyncio.create_task(post_until_accepted(http, pipeline.url("intake"), items))
            )
        await asyncio.gather(*tasks)


async def wait_for_cases(db: Any, run: str, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    cases = 0
    while time.monotonic() < deadline:
        with_feedback = {"feedback.external_id": {"$regex": f"^{run}-"}}
        try:
            cases = await db["followup_cases"].count_documents(with_feedback)
        except Exception:
            cases = 0
        if cases >= count:
            return cases
        await asyncio.sleep(1.0)
    return cases


async def check_exactly_once(pipeline: Pipeline, db: Any, run: str, count: int) -> None:
    # Each test runs its own database, so every document belongs to this run.
    assert await db["router_routings"].count_documents({}) == count, "one router case each"
    cases = db["followup_cases"]
    assert await cases.count_documents({}) == count, "every feedback is one case in followup"
    assert len(await cases.distinct("feedback_id")) == count

    held: list[str] = []
    async for agent in db["router_agents"].find({}):
        assert agent["load"] == len(agent["open_cases"]) <= agent["capacity"], agent["_id"]
        held += agent["open_cases"]
    assert len(held) == len(set(held)), "no case is held by two agents or counted twice"
    waiting = await db["router_routings"].count_documents({"waiting_in": {"$ne": None}})
    assert len(held) + waiting == count, "every case is either held by an agent or queued"

    async with TopicReader(pipeline.bootstrap, Topic.CASE_ROUTED) as reader:
        events = await reader.collect(3.0)
    ids_by_case: dict[str, set[str]] = {}
    for event in events:
        ids_by_case.setdefault(event.data.case_id, set()).add(event.id)
    assert len(ids_by_case) == count, "case.routed reached every feedback"


async def test_killing_each_service_mid_stream_loses_and_duplicates_nothing(
    pipeline: Pipeline, mongo: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    count = 2000
    posting = asyncio.create_task(stream(pipeline, run, count, per_second=100))
    for name in ("classifier", "router", "followup", "intake"):
        await asyncio.sleep(3)
        pipeline.kill(name)  # SIGKILL: no shutdown, no commit
        await asyncio.sleep(0.5)
        await asyncio.to_thread(pipeline.start_service, name)
    await posting
    cases = await wait_for_cases(mongo, run, count, timeout=240)
    assert cases == count
    await asyncio.sleep(2)  # redeliveries after the restarts have settled
    await check_exactly_once(pipeline, mongo, run, count)


async def test_a_database_outage_mid_stream_delays_but_loses_nothing(
    pipeline: Pipeline, mongo: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    count = 300
    posting = asyncio.create_task(stream(pipeline, run, count, per_second=50))
    await asyncio.sleep(2)
    assert pipeline.database is not None
    pipeline.database.stop()
    await asyncio.sleep(10)
    await asyncio.to_thread(pipeline.start_database)
    await posting
    assert await wait_for_cases(mongo, run, count, timeout=180) == count
    await check_exactly_once(pipeline, mongo, run, count)


async def test_an_unreachable_broker_gives_503_and_intake_recovers_by_itself(
    pipeline: Pipeline,
) -> None:
    assert pipeline.broker is not None
    body = complaint(0, uuid.uuid4().hex[:8])
    async with httpx.AsyncClient(
        base_url=pipeline.url("intake"), timeout=60, headers=INTAKE_AUTH
    ) as http:
        assert (await http.post("/v1/feedback", json=body)).status_code == 202
        os.kill(pipeline.broker.popen.pid, signal.SIGSTOP)  # the broker stops answering
        try:
            refused = await http.post("/v1/feedback", json={**body, "external_id": "frozen"})
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) > 0
        finally:
            os.kill(pipeline.broker.popen.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while True:
            answer = await http.post("/v1/feedback", json={**body, "external_id": "thawed"})
            if answer.status_code == 202 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert answer.status_code == 202


async def test_a_poison_message_is_dead_lettered_the_partition_flows_and_a_fixed_replay_lands(
    pipeline: Pipeline, mongo: Any, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    good = complaint(1, run)
    key = f"poison-{run}".encode()
    broken = {
        "feedback": {
            "feedback_id": f"fb-{run}",
            "channel": "web",
            "customer": {"tier": "vip"},
            "customer_key": key.decode(),
            "text": "The charger caught fire",
            "received_at": "2026-03-01T09:00:00Z",
            "ingested_at": "2026-03-01T09:00:00Z",
        }
    }
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"poison-{run}".encode()),
        ("ce_source", b"/closeloop/intake"),
        ("ce_type", b"closeloop.feedback.received.v1"),
        ("ce_time", b"2026-03-01T09:00:00Z"),
        ("content-type", b"application/json"),
    ]
    await produce_raw(
        pipeline.bootstrap,
        Topic.FEEDBACK_RECEIVED,
        json.dumps(broken).encode(),
        key=key,
        headers=headers,
    )
    async with httpx.AsyncClient(timeout=30) as http:
        await post_until_accepted(http, pipeline.url("intake"), [good])
    assert await wait_for_cases(mongo, run, 1, timeout=60) == 1  # the stream keeps flowing

    env = {"CLOSELOOP_KAFKA_BOOTSTRAP": pipeline.bootstrap}
    runner = CliRunner()
    # The CLI runs its own event loop: call it from a thread, as a shell would.
    shown = await asyncio.to_thread(
        runner.invoke, cli_app, ["dlq", "show", "feedback.received.dlq", "--json"], env=env
    )
    rows = [json.loads(line) for line in shown.output.splitlines()]
    assert [row["reason"] for row in rows] == [
        "invalid feedback.received: feedback.customer: Value error, customer needs at least one "
        "of id, email, phone or handle"
    ]

    # The fix: the channel resends the customer's identity; replay the corrected event.
    fixed = {**broken["feedback"], "customer": {"id": f"{run}-customer-fixed", "tier": "vip"}}
    line = {
        "specversion": "1.0",
        "id": f"poison-{run}",
        "source": "/closeloop/intake",
        "type": "closeloop.feedback.received.v1",
        "time": "2026-03-01T09:00:00Z",
        "data": {"feedback": fixed},
    }
    file = tmp_path / "fixed.jsonl"
    file.write_text(json.dumps(line) + "\n")
    replayed = await asyncio.to_thread(
        runner.invoke, cli_app, ["replay", "--file", str(file)], env=env
    )
    assert replayed.exit_code == 0, replayed.output
    cases = mongo["followup_cases"]
    deadline = time.monotonic() + 60
    while await cases.count_documents({"feedback_id": f"fb-{run}"}) == 0:
        assert time.monotonic() < deadline, "the replayed event never became a case"
        await asyncio.sleep(0.5)
    case = await cases.find_one({"feedback_id": f"fb-{run}"})
    assert case is not None and case["classification"]["urgency"] == "critical"
