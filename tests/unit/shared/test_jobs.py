"""The periodic-job helper: it keeps running through failures, runs again at once while
a job says there is more, and stops when asked."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.errors import BrokerUnavailable
from shared.jobs import run_every


async def test_a_job_runs_until_stopped_and_survives_its_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    calls: list[int] = []

    async def job() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise BrokerUnavailable("broker down")
        if len(calls) == 2:
            raise ValueError("a bug")
        if len(calls) == 4:
            stop.set()

    with caplog.at_level(logging.WARNING, logger="shared.jobs"):
        await asyncio.wait_for(run_every("test job", job, 0.01, stop), timeout=5)
    assert len(calls) == 4
    assert "test job skipped: broker down" in caplog.text
    failed = [r for r in caplog.records if r.getMessage() == "test job failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None


async def test_a_job_with_more_work_runs_again_without_waiting() -> None:
    stop = asyncio.Event()
    left = [5]

    async def drain() -> bool:
        left[0] -= 1
        if left[0] < 0:
            stop.set()
        return left[0] > 0

    # A wait of an hour between turns: only "more work" can bring the next turn.
    task = asyncio.create_task(run_every("drain", drain, 3600, stop))
    for _ in range(100):
        await asyncio.sleep(0)
        if left[0] == 0:
            break
    assert left[0] == 0
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_a_set_stop_ends_the_wait_at_once() -> None:
    stop = asyncio.Event()
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1

    task = asyncio.create_task(run_every("idle", job, 3600, stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert runs == 1
