"""The operator CLI against the real broker (and, for `stack`, a whole local stack)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from shared.contracts import FeedbackReceived, Topic
from shared.envelope import KafkaRecord, from_record, new_event, to_record
from shared.tools import devstack
from shared.tools.cli import StackFiles, app, running_pid
from tests.conftest import Infra
from tests.support import TopicReader, a_feedback, produce_raw

runner = CliRunner()


def cli(infra: Infra, *args: str) -> Any:
    result = runner.invoke(app, [*args], env={"CLOSELOOP_KAFKA_BOOTSTRAP": infra.bootstrap})
    assert result.exit_code == 0, result.output
    return result


def a_received_event() -> Any:
    feedback = a_feedback("parcel lost again")
    return new_event(
        FeedbackReceived(feedback=feedback), source="/test", cause=feedback.feedback_id
    )


def dead_letter(record: KafkaRecord, reason: str) -> list[tuple[str, bytes]]:
    return [
        *record.headers,
        ("dlq_reason", reason.encode()),
        ("dlq_kind", b"failed"),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", b"0"),
        ("dlq_offset", b"41"),
        ("dlq_group", b"closeloop-classifier"),
    ]


async def read_events(infra: Infra, topic: str, wanted: str) -> Any:
    async with TopicReader(infra.bootstrap, topic) as reader:
        return await reader.wait_for(lambda e: e.id == wanted)


def test_dlq_show_list_and_replay_send_each_dead_letter_back_once(infra: Infra) -> None:
    event = a_received_event()
    record = to_record(event)
    reason = f"handler failed after 5 attempts: test {uuid.uuid4().hex}"
    asyncio.run(
        produce_raw(
            infra.bootstrap,
            "feedback.received.dlq",
            record.value,
            record.key,
            dead_letter(record, reason),
        )
    )

    shown = [
        json.loads(line)
        for line in cli(
            infra, "dlq", "show", "feedback.received.dlq", "--json", "--limit", "1000"
        ).output.splitlines()
    ]
    mine = [row for row in shown if row["reason"] == reason]
    assert len(mine) == 1
    assert mine[0]["event_type"] == "feedback.received" and mine[0]["event_id"] == event.id
    assert mine[0]["from"] == "feedback.received[0]@41"
    assert "feedback.received.dlq" in cli(infra, "dlq", "list").output

    marker = reason.split()[-1]
    replayed = cli(infra, "dlq", "replay", "feedback.received.dlq").output.replace("\n", "")
    assert "message(s) replayed" in replayed and marker in replayed
    back = asyncio.run(read_events(infra, Topic.FEEDBACK_RECEIVED, event.id))
    assert back.data == event.data
    again = cli(infra, "dlq", "replay", "feedback.received.dlq").output.replace("\n", "")
    assert marker not in again


def test_replay_publishes_cloudevents_from_a_json_lines_file(infra: Infra, tmp_path: Path) -> None:
    event = a_received_event()
    line = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time.isoformat(),
        "data": event.data.model_dump(mode="json"),
    }
    file = tmp_path / "events.jsonl"
    file.write_text(json.dumps(line) + "\n\n")
    assert "1 event(s) published" in cli(infra, "replay", "--file", str(file)).output
    back = asyncio.run(read_events(infra, Topic.FEEDBACK_RECEIVED, event.id))
    assert back.data == event.data and back.source == event.source


def test_replay_refeeds_a_topic_range_to_another_topic(infra: Infra) -> None:
    topic = f"test.replay.{uuid.uuid4().hex[:8]}"
    target = f"{topic}.again"
    asyncio.run(devstack.create_topics(infra.bootstrap, 1, names=[topic, target]))
    events = [a_received_event() for _ in range(4)]
    for event in events:
        record = to_record(event)
        asyncio.run(produce_raw(infra.bootstrap, topic, record.value, record.key, record.headers))
    output = cli(
        infra,
        "replay",
        "--topic",
        topic,
        "--from-offset",
        "1",
        "--to-offset",
        "3",
        "--to-topic",
        target,
    ).output
    assert "2 event(s) published" in output

    async def read_target() -> list[str]:
        async with TopicReader(infra.bootstrap, target) as reader:
            await reader.wait_for(lambda e: e.id == events[2].id)
            return [from_record(r.key, r.value, r.headers or ()).id for r in reader.records]

    assert asyncio.run(read_target()) == [events[1].id, events[2].id]


def test_a_bad_replay_file_names_the_line(infra: Infra, tmp_path: Path) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text('{"type": "closeloop.nope.v1", "id": "1", "source": "/x", "data": {}}\n')
    result = runner.invoke(
        app, ["replay", "--file", str(file)], env={"CLOSELOOP_KAFKA_BOOTSTRAP": infra.bootstrap}
    )
    assert result.exit_code != 0
    assert "bad.jsonl:1" in result.output


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        "CLOSELOOP_STACK_KAFKA_PORT": str(devstack.free_port()),
        "CLOSELOOP_STACK_MONGO_PORT": str(devstack.free_port()),
        "CLOSELOOP_STACK_INTAKE_PORT": str(devstack.free_port()),
        "CLOSELOOP_STACK_CLASSIFIER_PORT": str(devstack.free_port()),
        "CLOSELOOP_STACK_ROUTER_PORT": str(devstack.free_port()),
        "CLOSELOOP_STACK_FOLLOWUP_PORT": str(devstack.free_port()),
        "CLOSELOOP_STACK_DATA_DIR": str(tmp_path / "stack"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        runner.invoke(app, ["stack", "down"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_stack_up_status_down_leaves_no_process_behind(stack_env: dict[str, str]) -> None:
    up = runner.invoke(app, ["stack", "up"])
    assert up.exit_code == 0, up.output
    assert "closeloop is running" in up.output
    files = StackFiles.of(devstack.StackSettings())
    assert running_pid(files) is not None
    status = runner.invoke(app, ["stack", "status"])
    assert status.exit_code == 0 and status.output.count("ready") >= 4
    port = stack_env["CLOSELOOP_STACK_INTAKE_PORT"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

    down = runner.invoke(app, ["stack", "down"])
    assert "stopped" in down.output
    assert running_pid(files) is None
    for name in ("KAFKA", "MONGO", "INTAKE", "CLASSIFIER", "ROUTER", "FOLLOWUP"):
        assert not devstack.port_in_use(int(stack_env[f"CLOSELOOP_STACK_{name}_PORT"]))
    assert runner.invoke(app, ["stack", "status"]).exit_code == 3
