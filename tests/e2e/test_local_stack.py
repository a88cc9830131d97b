"""The local stack keeps what it accepted: started as `closeloop stack up` starts it (the
supervisor of `make run`, detached), a service killed with SIGKILL comes back and handles
the feedback accepted while it was gone; a stop lets the pipeline drain, so every
complaint intake answered 202 for is a case in the database once the stack is down, even
when a service was down at the moment of the stop. What followup tells the customers is
printed on the stack's output, one line per customer.notify, and a stop waits for that
too."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from shared.contracts import Customer
from shared.db import Document
from shared.tools import devstack
from shared.tools.cli import app

runner = CliRunner()
INTAKE = {"X-API-Key": devstack.INTAKE_DEV_API_KEY}
AGENT = {"X-API-Key": devstack.FOLLOWUP_DEV_API_KEY}
# Upper bounds for waiting on a loaded machine; they assert nothing about speed.
WAIT_S = 60.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[devstack.StackSettings]:
    env = {
        **{
            f"CLOSELOOP_STACK_{part}_PORT": str(devstack.free_port())
            for part in ("KAFKA", "MONGO", "INTAKE", "CLASSIFIER", "ROUTER", "FOLLOWUP")
        },
        "CLOSELOOP_STACK_DATA_DIR": str(tmp_path / "stack"),
        "CLOSELOOP_STACK_SERVICE_LOGS_TO_FILES": "true",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        up = runner.invoke(app, ["stack", "up"])
        assert up.exit_code == 0, up.output
        yield devstack.StackSettings()
    finally:
        runner.invoke(app, ["stack", "down"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stack_log(settings: devstack.StackSettings) -> str:
    return (settings.data_dir / "logs" / "stack.log").read_text(encoding="utf-8")


def wait_for_line(settings: devstack.StackSettings, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + WAIT_S
    while True:
        found = list(re.finditer(pattern, stack_log(settings)))
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {pattern!r} in the stack's log"
        time.sleep(0.2)


def customer_id(run: str, index: int) -> str:
    return f"{run}-customer-{index}"


def acknowledgement(run: str, index: int) -> str:
    """The start of the printed line of the acknowledgement of complaint ``index``."""
    key = Customer(id=customer_id(run, index)).key
    return rf"notify web/\w+ acknowledgement to {key}, case \w+: \S"


def complaint(run: str, index: int) -> dict[str, Any]:
    return {
        "channel": "web",
        "external_id": f"{run}-{index}",
        "customer": {"id": customer_id(run, index)},
        "text": f"My parcel {index} never arrived and nobody answers the hotline.",
    }


def case_for(settings: devstack.StackSettings, feedback_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{settings.followup_port}/v1/cases"
    deadline = time.monotonic() + WAIT_S
    while True:
        page = httpx.get(url, params={"feedback_id": feedback_id}, headers=AGENT, timeout=10)
        assert page.status_code == 200, page.text
        if page.json()["items"]:
            case: dict[str, Any] = page.json()["items"][0]
            return case
        assert time.monotonic() < deadline, "the feedback never became a case"
        time.sleep(0.3)


async def cases_stored(settings: devstack.StackSettings, feedback_ids: list[str]) -> int:
    """Cases in the stack's database once it is down (its files, read by a fresh server)."""
    database = devstack.start_database(devstack.free_port(), str(settings.data_dir / "mongo"))
    assert database.port is not None
    try:
        client: AsyncMongoClient[Document] = AsyncMongoClient(devstack.mongo_url(database.port))
        try:
            cases = client["closeloop"]["followup_cases"]
            return await cases.count_documents({"feedback_id": {"$in": feedback_ids}})
        finally:
            await client.close()
    finally:
        database.stop()


def test_a_killed_service_comes_back_and_a_stop_drains_what_was_accepted(
    stack: devstack.StackSettings,
) -> None:
    run = uuid.uuid4().hex[:8]
    intake = f"http://127.0.0.1:{stack.intake_port}"
    first = wait_for_line(stack, r"classifier started \(pid (\d+)\)")
    os.kill(int(first[1]), signal.SIGKILL)

    # Accepted while the classifier is gone: it waits in the broker.
    posted = httpx.post(f"{intake}/v1/feedback", json=complaint(run, 0), headers=INTAKE)
    assert posted.status_code == 202, posted.text
    wait_for_line(stack, r"classifier exited with SIGKILL after [\d.]+s; restarting in 1s")
    again = wait_for_line(stack, r"classifier restarted \(pid (\d+)\)")
    assert again[1] != first[1]
    case = case_for(stack, posted.json()["feedback_id"])
    assert case["classification"]["root_cause"]
    assert re.search(r"notifications started \(pid \d+\)", stack_log(stack))
    wait_for_line(stack, acknowledgement(run, 0))

    # The classifier down again, a burst accepted meanwhile, then a stop at once: before
    # anything else stops, the classifier comes back and the pipeline handles the burst.
    os.kill(int(again[1]), signal.SIGKILL)
    wait_for_line(stack, r"classifier exited with SIGKILL after [\d.]+s; restarting in 2s")
    items = [complaint(run, index) for index in range(1, 101)]
    batch = httpx.post(
        f"{intake}/v1/feedback/batch", json={"items": items}, headers=INTAKE, timeout=30
    )
    assert batch.status_code == 202 and batch.json()["accepted"] == 100, batch.text
    accepted = [item["feedback_id"] for item in batch.json()["items"]]
    down = runner.invoke(app, ["stack", "down"])
    assert "stopped" in down.output, down.output

    log = stack_log(stack)
    stopping = log.index("intake stopped")
    assert stopping < log.rindex("classifier restarted") < log.index("drained: every accepted")
    for port in (stack.kafka_port, stack.intake_port, stack.followup_port):
        assert not devstack.port_in_use(port)
    assert asyncio.run(cases_stored(stack, accepted)) == 100
    # The drain waited for the printer too: every new case's acknowledgement is printed.
    unprinted = [i for i in range(1, 101) if not re.search(acknowledgement(run, i), log)]
    assert unprinted == []
