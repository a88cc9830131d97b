"""A followup process is killed (SIGKILL) while it holds claims on due work; another
copy takes the work over once the leases run out and does each piece exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from services.followup.handlers import make_handlers
from services.followup.outreach import load_outreach
from services.followup.policy import load_policy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import Topic
from shared.db import Document
from shared.envelope import Event, new_event
from shared.tools import devstack
from tests.conftest import Infra
from tests.support import TopicReader, a_case_routed, eventually

CASES = 12
LEASE_S = 3


def start_copy(infra: Infra, database: str, name: str) -> devstack.Process:
    port = devstack.free_port()
    env = devstack.service_env(
        "followup",
        http_port=port,
        kafka_port=infra.kafka_port,
        mongo_port=infra.mongo_port,
        database=database,
        extra={
            "CLOSELOOP_FOLLOWUP_KAFKA_CONSUMER_GROUP": f"followup-failover-{database}",
            "CLOSELOOP_FOLLOWUP_DUE_LEASE_S": str(LEASE_S),
            "CLOSELOOP_FOLLOWUP_DUE_POLL_S": "0.1",
        },
    )
    return devstack.start_service("followup", env, port, infra.log_dir / f"{name}.log")


async def claims_held(store: FollowupStore, case_ids: set[str]) -> list[dict[str, Any]]:
    now = utcnow()
    cursor = store.due.find(
        {"state": "pending", "lease_until": {"$gt": now}, "case_id": {"$in": sorted(case_ids)}}
    )
    return [item async for item in cursor]


async def kill_while_holding_claims(
    process: devstack.Process, store: FollowupStore, case_ids: set[str]
) -> list[Any]:
    """Freeze the process, look at what it holds; kill it once it holds a claim."""
    pid = process.popen.pid
    while True:
        assert process.popen.poll() is None, "the first copy exited by itself"
        os.killpg(pid, signal.SIGSTOP)
        # A frozen process sends nothing more; let the server finish what it had sent.
        await asyncio.sleep(0.2)
        held = await claims_held(store, case_ids)
        if held:
            process.kill()  # SIGKILL: no shutdown, no chance to finish or release
            return held
        os.killpg(pid, signal.SIGCONT)
        await asyncio.sleep(0.02)


async def test_a_killed_copy_s_claims_are_finished_exactly_once_by_another_copy(
    infra: Infra, mongo_client: AsyncMongoClient[Document], database_name: str
) -> None:
    store = FollowupStore(mongo_client[database_name])
    await store.ensure_indexes()
    handler = make_handlers(store, load_policy(), load_outreach())["case.routed"]
    long_ago = utcnow() - timedelta(days=10)  # every timer of these cases is due
    case_ids = set()
    for _ in range(CASES):
        routed = a_case_routed(at=long_ago)
        case_ids.add(routed.case_id)
        await handler(new_event(routed, source="/test", cause=routed.case_id))
    items = await store.due.count_documents({})
    # The callback, a warning and a breach per deadline, and the silence check.
    assert items == CASES * 6

    async with TopicReader(infra.bootstrap, Topic.CASE_LIFECYCLE) as lifecycle:
        first = start_copy(infra, database_name, f"followup-a-{uuid.uuid4().hex[:6]}")
        try:
            held = await kill_while_holding_claims(first, store, case_ids)
        finally:
            first.kill()
        first_owner = held[0]["owner"]
        done_by_first = await store.due.count_documents(
            {"state": "done", "case_id": {"$in": sorted(case_ids)}}
        )
        assert done_by_first < items, "the first copy finished everything before it was killed"

        second = start_copy(infra, database_name, f"followup-b-{uuid.uuid4().hex[:6]}")
        try:

            async def nothing_pending() -> bool:
                # Only this test's cases: the copies also consume what other tests
                # published to case.routed, whose timers are due later.
                # The silence checks that follow the progress messages are due later.
                ours = {
                    "state": "pending",
                    "case_id": {"$in": sorted(case_ids)},
                    "$or": [{"kind": {"$ne": "silence"}}, {"due_at": {"$lte": utcnow()}}],
                }
                return await store.due.count_documents(ours) == 0

            await eventually(nothing_pending, timeout=180)
            # Every case: one callback.due and one sla.breached per deadline. (Warnings
            # after their deadline are skipped: the breach says it.)
            wanted = CASES * 3

            def ours(event: Event[Any]) -> bool:
                return event.subject in case_ids

            seen: dict[str, Event[Any]] = {}
            while len(seen) < wanted:
                event = await lifecycle.wait_for(lambda e: ours(e) and e.id not in seen, 30)
                seen[event.id] = event
            settled = [e for e in await lifecycle.collect(1.0) if ours(e)]
        finally:
            second.stop()
    assert second.popen.returncode == 0

    # The claims the killed copy held were taken over and finished by the other copy.
    for item in held:
        taken_over = await store.due.find_one({"_id": item["_id"]})
        assert taken_over is not None and taken_over["state"] == "done"
        assert taken_over["owner"] != first_owner and taken_over["claims"] >= 2

    # Exactly once: one event id per piece of work, however often it was published,
    # and one timeline entry per change.
    ids_per_work: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for event in [*seen.values(), *settled]:
        ref = str(getattr(event.data, "sla", None) or getattr(event.data, "callback_id", ""))
        ids_per_work[(event.subject, event.name, ref)].add(event.id)
    assert len(ids_per_work) == wanted
    assert all(len(ids) == 1 for ids in ids_per_work.values())
    async for case in store.cases.find({"_id": {"$in": list(case_ids)}}):
        timeline = [entry["event"] for entry in case["timeline"]]
        assert timeline.count("callback.due") == 1
        assert timeline.count("sla.breached") == 2
        assert "sla.warning" not in timeline
        assert case["outbox"] == []
