"""End-to-end benchmark of the whole pipeline on this machine.

Starts a private local stack (broker, database, the four services) plus a bare aiokafka
relay as the baseline, posts realistic feedback to intake at steady rates, and prints:
- throughput and latency p50/p95/p99 from the intake POST to case.routed on Kafka;
- CPU time per event of each service process beside the relay's;
- database round trips per event per service (PyMongo command monitoring, read from
  each service's closeloop_db_commands_total).

    python -m benchmarks.pipeline [--rates 20,50,100] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from shared.contracts import CaseRouted, Topic
from shared.envelope import PoisonMessage, from_record
from shared.tools import devstack
from shared.tools.loadgen import run_load

console = Console()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RELAY_TOPIC = "bench.relay"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def db_commands(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = re.compile(r"^closeloop_db_commands_total\{[^}]*\} ([0-9.e+]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


@dataclass
class RoundResult:
    rate: float
    accepted: int
    routed: int
    throughput: float
    latencies: list[float]
    cpu_per_event_ms: dict[str, float]
    db_per_event: dict[str, float]
    marginal_cpu_ms: dict[str, float]
    """CPU per event above what the process spends idle in the same time."""

    def pct(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0


class RoutedWatcher:
    """Notes when each feedback's case.routed arrives (perf_counter clock)."""

    def __init__(self, bootstrap: str) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            Topic.CASE_ROUTED.value,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="latest",
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._consumer.start()
        try:
            while not stop.is_set():
                batch = await self._consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batch.values():
                    for record in records:
                        try:
                            event = from_record(record.key, record.value, record.headers or ())
                        except PoisonMessage:
                            continue
                        if isinstance(event.data, CaseRouted):
                            self.arrived.setdefault(event.data.feedback.feedback_id, now)
                            self.changed.set()
        finally:
            await self._consumer.stop()


async def measure_round(
    stack: devstack.Stack,
    pids: dict[str, int],
    watcher: RoutedWatcher,
    rate: float,
    duration: float,
    idle_cpu: dict[str, float],
) -> RoundResult:
    ports = stack.service_ports()
    started = time.monotonic()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    db_before = {name: db_commands(ports[name]) for name in ("router", "followup")}
    load = await run_load(
        f"http://127.0.0.1:{ports['intake']}",
        rate=rate,
        duration_s=duration,
        seed=int(rate),
        headers={"X-API-Key": devstack.INTAKE_DEV_API_KEY},
    )
    deadline = time.monotonic() + 120
    while not all(f in watcher.arrived for f in load.feedback_ids):
        watcher.changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.changed.wait(), remaining)
    routed = [f for f in load.feedback_ids if f in watcher.arrived]
    latencies = [watcher.arrived[f] - load.sent_at[f] for f in routed]
    if routed:
        first = min(load.sent_at[f] for f in routed)
        last = max(watcher.arrived[f] for f in routed)
        throughput = len(routed) / (last - first)
    else:
        throughput = 0.0
    await asyncio.sleep(1.0)  # let the relay and followup finish their share
    events = max(1, len(routed))
    used = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    elapsed = time.monotonic() - started
    cpu = {name: seconds * 1000 / events for name, seconds in used.items()}
    marginal = {
        name: max(0.0, seconds - idle_cpu[name] * elapsed) * 1000 / events
        for name, seconds in used.items()
    }
    db = {name: (db_commands(ports[name]) - db_before[name]) / events for name in db_before}
    return RoundResult(rate, load.accepted, len(routed), throughput, latencies, cpu, db, marginal)


async def idle_cpu_per_second(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds each process spends per second with no load (timers, fetches,
    heartbeats)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(seconds)
    return {name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


async def run_benchmark(
    stack: devstack.Stack, pids: dict[str, int], rates: list[float], duration: float
) -> list[RoundResult]:
    bootstrap = f"127.0.0.1:{stack.settings.kafka_port}"
    watcher = RoutedWatcher(bootstrap)
    stop = asyncio.Event()
    watching = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(2)
    idle_zero = dict.fromkeys(pids, 0.0)
    await measure_round(stack, pids, watcher, 10, 3, idle_zero)  # warm-up, not reported
    await asyncio.sleep(3)
    idle = await idle_cpu_per_second(pids, 10)
    console.print(
        "idle CPU, ms per second: "
        + ", ".join(f"{name} {share * 1000:.1f}" for name, share in idle.items())
    )
    results = [await measure_round(stack, pids, watcher, rate, duration, idle) for rate in rates]
    stop.set()
    await watching
    return results


def cpu_table(
    results: list[RoundResult], title: str, of: Callable[[RoundResult], dict[str, float]]
) -> Table:
    """CPU ms per event of each process (``of`` a round) and each service's ratio to the
    relay."""
    services = list(of(results[0]))
    table = Table(
        "rate /s",
        *[f"{s} ms" for s in services],
        *[f"{s}/relay" for s in services if s != "relay"],
        title=title,
    )
    for r in results:
        per_event = of(r)
        relay = per_event.get("relay") or float("nan")
        table.add_row(
            f"{r.rate:g}",
            *[f"{per_event[s]:.2f}" for s in services],
            *[f"{per_event[s] / relay:.1f}x" for s in services if s != "relay"],
        )
    return table


def report(results: list[RoundResult]) -> None:
    table = Table(
        "rate /s",
        "accepted",
        "routed",
        "throughput /s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        title="intake POST -> case.routed",
    )
    for r in results:
        table.add_row(
            f"{r.rate:g}",
            str(r.accepted),
            str(r.routed),
            f"{r.throughput:.1f}",
            f"{r.pct(0.5):.0f}",
            f"{r.pct(0.95):.0f}",
            f"{r.pct(0.99):.0f}",
        )
    console.print(table)
    console.print(
        cpu_table(results, "CPU time per event (user+system)", lambda r: r.cpu_per_event_ms)
    )
    console.print(
        cpu_table(
            results, "CPU time per event above idle (user+system)", lambda r: r.marginal_cpu_ms
        )
    )
    db = Table("rate /s", "router", "followup", "pipeline", title="database round trips per event")
    for r in results:
        db.add_row(
            f"{r.rate:g}",
            f"{r.db_per_event['router']:.2f}",
            f"{r.db_per_event['followup']:.2f}",
            f"{sum(r.db_per_event.values()):.2f}",
        )
    console.print(db)
    all_latencies = [x for r in results for x in r.latencies]
    if all_latencies:
        console.print(
            f"median latency over all rounds: {statistics.median(all_latencies) * 1000:.0f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="20,50,100", help="comma-separated feedback per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    data_dir = Path(tempfile.mkdtemp(prefix="closeloop-bench-"))
    settings = devstack.StackSettings(
        kafka_port=devstack.free_port(),
        mongo_port=devstack.free_port(),
        intake_port=devstack.free_port(),
        classifier_port=devstack.free_port(),
        router_port=devstack.free_port(),
        followup_port=devstack.free_port(),
        data_dir=data_dir,
        service_logs_to_files=True,
    )
    stack = devstack.Stack(settings)
    console.print(
        f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; "
        f"logs in {data_dir / 'logs'}"
    )
    stack.start()
    relay: devstack.Process | None = None
    try:
        bootstrap = f"127.0.0.1:{settings.kafka_port}"
        asyncio.run(devstack.create_topics(bootstrap, settings.partitions, names=[RELAY_TOPIC]))
        relay = devstack.spawn(
            "relay",
            [
                sys.executable,
                "-m",
                "benchmarks.relay",
                "--bootstrap",
                bootstrap,
                "--source",
                Topic.FEEDBACK_RECEIVED.value,
                "--target",
                RELAY_TOPIC,
                "--fetch-max-wait-ms",
                str(devstack.LOCAL_FETCH_MAX_WAIT_MS),
            ],
            log=data_dir / "logs" / "relay.log",
        )
        pids = {
            child.name: child.process.popen.pid
            for child in stack.supervisor.children
            if child.name in devstack.SERVICES and child.process is not None
        }
        pids["relay"] = relay.popen.pid
        report(asyncio.run(run_benchmark(stack, pids, rates, args.duration)))
    finally:
        if relay is not None:
            relay.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
