"""Two router processes in one consumer group, against the same database and topics:
500 cases, more than the agents can hold, then resolutions that free capacity while
both copies serve the same queue. No agent is ever over capacity, no case is ever
assigned twice, and every waiting case gets an agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from services.router.domain import case_id_for
from shared.contracts import CaseResolved, CaseRouted, FeedbackClassified, Topic
from shared.db import Document
from shared.envelope import Event, new_event, to_record
from shared.tools import devstack
from tests.conftest import Infra
from tests.integration.router.test_flows import NOW, small_policy
from tests.integration.router.test_service import ROUTER_TOPICS, start_group_at_end, write_policy
from tests.support import TopicReader, a_classification, a_feedback, eventually

CASES = 500
AGENTS, CAPACITY = 5, 90  # 450 places for 500 cases
RESOLVED = 100


async def produce_all(bootstrap: str, events: list[Event[Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending = []
        for event in events:
            record = to_record(event)
            pending.append(
                await producer.send(
                    record.topic, record.value, key=record.key, headers=record.headers
                )
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


@dataclass
class Copies:
    processes: list[devstack.Process]
    logs: list[Path]


@pytest.fixture
async def two_routers(infra: Infra, database_name: str, tmp_path: Path) -> AsyncIterator[Copies]:
    group = f"router-pair-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(infra.bootstrap, group, ROUTER_TOPICS)
    policy_file = write_policy(tmp_path, small_policy(desk=AGENTS, capacity=CAPACITY))
    processes: list[devstack.Process] = []
    logs: list[Path] = []
    try:
        for copy in (1, 2):
            port = devstack.free_port()
            env = devstack.service_env(
                "router",
                http_port=port,
                kafka_port=infra.kafka_port,
                mongo_port=infra.mongo_port,
                database=database_name,
                extra={
                    "CLOSELOOP_ROUTER_KAFKA_CONSUMER_GROUP": group,
                    "CLOSELOOP_ROUTER_KAFKA_CLIENT_ID": f"router-{copy}",
                    "CLOSELOOP_ROUTER_POLICY_FILE": str(policy_file),
                    "CLOSELOOP_ROUTER_QUEUE_SWEEP_S": "2",
                },
            )
            log = infra.log_dir / f"router-{group}-{copy}.log"
            logs.append(log)
            process = devstack.spawn(
                "router", [sys.executable, "-m", "services.router"], env=env, log=log
            )
            process.port = port
            processes.append(process)
        async with httpx.AsyncClient(timeout=5) as http:
            for process in processes:

                async def ready(port: int | None = process.port) -> bool:
                    try:
                        response = await http.get(f"http://127.0.0.1:{port}/readyz")
                    except httpx.TransportError:  # not listening yet
                        return False
                    return response.status_code == 200

                await eventually(ready, timeout=30)
        yield Copies(processes, logs)
    finally:
        for process in processes:
            process.stop()


class CapacityWatch:
    """Samples every agent while the routers work and remembers any breach."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.agents = client[database]["router_agents"]
        self.samples = 0
        self.violations: list[dict[str, Any]] = []

    async def run(self) -> None:
        while True:
            async for agent in self.agents.find({"team": "desk"}):
                self.samples += 1
                if agent["load"] > agent["capacity"] or agent["load"] != len(agent["open_cases"]):
                    self.violations.append(agent)
            await asyncio.sleep(0.05)


async def test_two_router_processes_never_overfill_an_agent_nor_assign_a_case_twice(
    infra: Infra,
    mongo_client: AsyncMongoClient[Document],
    database_name: str,
    two_routers: Copies,
) -> None:
    watch = CapacityWatch(mongo_client, database_name)
    watcher = asyncio.create_task(watch.run())
    routed: dict[str, list[CaseRouted]] = defaultdict(list)
    ids_seen: set[str] = set()
    async with TopicReader(infra.bootstrap, Topic.CASE_ROUTED) as reader:
        feedback = [
            FeedbackClassified(feedback=a_feedback(at=NOW), classification=a_classification())
            for _ in range(CASES)
        ]
        ours = {case_id_for(f.feedback.feedback_id) for f in feedback}
        await produce_all(
            infra.bootstrap,
            [new_event(f, source="/test", cause=uuid.uuid4().hex) for f in feedback],
        )

        async def collect() -> None:
            for event in await reader.collect(0.3):
                mine = event.name == "case.routed" and event.data.case_id in ours
                if mine and event.id not in ids_seen:
                    ids_seen.add(event.id)
                    routed[event.data.case_id].append(event.data)

        def agent_of(case_id: str) -> str | None:
            return next((e.routing.agent for e in routed[case_id] if e.routing.agent), None)

        def holding() -> set[str]:
            return {case_id for case_id in routed if agent_of(case_id) is not None}

        # A copy may queue a case on an agent snapshot a moment old while the other copy
        # took places; its queue service assigns the case soon after. The first round is
        # over when every place is taken.
        async def places_taken() -> bool:
            await collect()
            return len(routed) == CASES and len(holding()) == AGENTS * CAPACITY

        await eventually(places_taken, timeout=90, interval=0)
        assigned = sorted(holding())
        waiting = [case_id for case_id in routed if case_id not in holding()]
        assert len(waiting) == CASES - AGENTS * CAPACITY

        resolutions = [
            CaseResolved(
                case_id=case_id,
                customer_key=routed[case_id][0].feedback.customer_key,
                occurred_at=NOW,
                resolved_by=str(agent_of(case_id)),
                solution="done",
                within_sla=True,
            )
            for case_id in assigned[:RESOLVED]
        ]
        await produce_all(
            infra.bootstrap,
            [new_event(r, source="/test", cause=f"resolve-{r.case_id}") for r in resolutions],
        )

        async def waiting_assigned() -> bool:
            await collect()
            return set(waiting) <= holding()

        await eventually(waiting_assigned, timeout=90, interval=0)
    freed = [r.case_id for r in resolutions]
    agent_docs = mongo_client[database_name]["router_agents"]

    async def all_resolutions_handled() -> bool:
        return await agent_docs.count_documents({"open_cases": {"$in": freed}}) == 0

    await eventually(all_resolutions_handled, timeout=30)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher

    assert watch.samples > 0 and watch.violations == []
    # Each case was assigned to one agent only, in its routing round.
    for case_id, events in routed.items():
        agents = {e.routing.agent for e in events if e.routing.agent is not None}
        assert len(agents) == 1, (case_id, agents)
        assert {e.routing.reroute_count for e in events} == {0}
    holders: dict[str, list[str]] = defaultdict(list)
    async for agent in agent_docs.find({"team": "desk"}):
        assert agent["load"] == len(agent["open_cases"]) <= agent["capacity"]
        for case_id in agent["open_cases"]:
            holders[case_id].append(agent["_id"])
    assert all(len(h) == 1 for h in holders.values())
    assert set(holders) == (set(assigned) - set(freed)) | set(waiting)
    cases = mongo_client[database_name]["router_routings"]
    assert await cases.count_documents({"waiting_in": {"$ne": None}}) == 0
    # Both copies did part of the work, and neither failed.
    for process, log in zip(two_routers.processes, two_routers.logs, strict=True):
        assert process.popen.poll() is None
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(line["message"] == "case routed" for line in lines)
        assert not [line for line in lines if line["level"] == "ERROR"]
