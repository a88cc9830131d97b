"""The local stack's supervision and drain arithmetic, without processes: when a child
that exited starts again, what is said about it, and how many events a consumer group
has still to handle."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from aiokafka import TopicPartition

from shared.tools.devstack import (
    CONSUMER_GROUPS,
    Child,
    Process,
    RestartPolicy,
    Supervisor,
    events_left,
    exit_status,
)

ROOT = Path(__file__).resolve().parents[3]
POLICY = RestartPolicy(initial_s=1.0, max_s=30.0, reset_after_s=60.0)


def test_the_backoff_doubles_from_one_second_up_to_thirty() -> None:
    assert [POLICY.backoff_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert POLICY.backoff_s(10_000) == 30


def test_crashes_count_in_a_row_until_the_child_stays_up_long_enough() -> None:
    assert POLICY.crashes_in_a_row(0, uptime_s=0.3) == 1
    assert POLICY.crashes_in_a_row(4, uptime_s=59.9) == 5
    assert POLICY.crashes_in_a_row(4, uptime_s=60.0) == 1


def test_exit_status_names_the_signal() -> None:
    assert exit_status(-9) == "SIGKILL"
    assert exit_status(-15) == "SIGTERM"
    assert exit_status(1) == "code 1"


@dataclass
class FakePopen:
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeProcess:
    popen: FakePopen
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True


@dataclass
class Harness:
    now: float = 0.0
    said: list[str] = field(default_factory=list)
    launched: list[FakeProcess] = field(default_factory=list)
    failing: int = 0  # launches still to fail

    def launch(self) -> Process:
        if self.failing:
            self.failing -= 1
            raise RuntimeError("process exited with 1 before listening on 8001")
        process = FakeProcess(FakePopen(pid=100 + len(self.launched)))
        self.launched.append(process)
        return cast(Process, process)

    def supervisor(self) -> Supervisor:
        return Supervisor(POLICY, self.said.append, clock=lambda: self.now)

    def crash(self, code: int = -9) -> None:
        self.launched[-1].popen.returncode = code


def started(harness: Harness) -> tuple[Supervisor, Child]:
    supervisor = harness.supervisor()
    child = Child("classifier", harness.launch)
    supervisor.start(child)
    return supervisor, child


def test_a_crashed_child_is_restarted_after_the_backoff_and_both_are_said() -> None:
    h = Harness()
    supervisor, child = started(h)
    assert h.said == ["classifier started (pid 100)"]
    h.now = 12.0
    h.crash()
    supervisor.check()
    assert (
        h.said[-1]
        == "classifier exited with SIGKILL after 12.0s; restarting in 1s (crash 1 in a row)"
    )
    h.now = 12.5
    supervisor.check()
    assert len(h.launched) == 1  # not before its time
    h.now = 13.0
    supervisor.check()
    assert len(h.launched) == 2
    assert h.said[-1] == "classifier restarted (pid 101)"
    assert child.process is cast(Process, h.launched[-1]) and child.restart_at is None


def test_crashes_in_a_row_wait_longer_and_a_child_that_stayed_up_starts_over() -> None:
    h = Harness()
    supervisor, child = started(h)
    delays = []
    for _ in range(7):
        h.crash(1)
        supervisor.check()
        assert child.restart_at is not None
        delays.append(child.restart_at - h.now)
        h.now = child.restart_at
        supervisor.check()
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    h.now += 61
    h.crash(1)
    supervisor.check()
    assert child.restart_at == h.now + 1


def test_a_restart_that_fails_counts_as_another_crash() -> None:
    h = Harness()
    supervisor, child = started(h)
    h.crash()
    supervisor.check()
    h.failing = 2
    for expected in (2, 4):
        assert child.restart_at is not None
        h.now = child.restart_at
        supervisor.check()
        assert child.process is None
        assert "did not start (process exited with 1" in h.said[-1]
        assert child.restart_at == h.now + expected
    assert child.restart_at is not None
    h.now = child.restart_at
    supervisor.check()
    assert h.said[-1] == "classifier restarted (pid 101)"


def test_a_released_child_is_neither_restarted_nor_stopped_with_the_rest() -> None:
    h = Harness()
    supervisor = h.supervisor()
    supervisor.start(Child("kafka", h.launch))
    supervisor.start(Child("intake", h.launch))
    intake = supervisor.release("intake")
    assert intake is not None and intake.name == "intake"
    h.launched[1].popen.returncode = 0
    supervisor.check()
    assert len(h.launched) == 2
    supervisor.stop_all()
    assert [p.stopped for p in h.launched] == [True, False]


A, B = TopicPartition("feedback.received", 0), TopicPartition("feedback.received", 1)


@pytest.mark.parametrize(
    ("committed", "ends", "beginnings", "left"),
    [
        ({A: 5, B: 7}, {A: 5, B: 7}, {}, 0),
        ({A: 3, B: 7}, {A: 5, B: 7}, {}, 2),
        # Nothing committed yet: consumers start from the beginning.
        ({A: None, B: None}, {A: 5, B: 2}, {A: 0, B: 0}, 7),
        ({}, {A: 5}, {A: 4}, 1),
        # A commit past a stale end counts nothing, never less than nothing.
        ({A: 6}, {A: 5}, {}, 0),
    ],
)
def test_events_left_are_from_the_committed_offset_to_the_end(
    committed: dict[TopicPartition, int | None],
    ends: dict[TopicPartition, int],
    beginnings: dict[TopicPartition, int],
    left: int,
) -> None:
    assert events_left(committed, ends, beginnings) == left


def test_the_drained_groups_are_the_services_consumers_and_what_they_subscribe_to() -> None:
    found: dict[str, tuple[str, ...]] = {}
    for app in sorted(ROOT.glob("services/*/app.py")):
        name = app.parent.name
        source = app.read_text(encoding="utf-8")
        # Each consume call names the topics its handlers module declares, and its own
        # group when it has one (a function of the settings whose name ends the group:
        # signals_group -> -signals).
        for call in source.split("service.consume(")[1:]:
            listed = re.match(r"\s*list\((\w+)\)", call)
            assert listed is not None, f"{app}: consume(list(<handlers' topics>), ...)"
            own = re.search(r"group=(\w+)_group\(", call)
            suffix = f"-{own[1]}" if own else ""
            handlers = importlib.import_module(f"services.{name}.handlers")
            found[f"closeloop-{name}{suffix}"] = tuple(sorted(getattr(handlers, listed[1])))
    assert found == {
        group: tuple(sorted(topic.value for topic in topics))
        for group, topics in CONSUMER_GROUPS.items()
    }
