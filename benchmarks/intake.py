"""Intake throughput beside a bare publisher, against the same local broker, in one run.

Starts its own Tansu broker, intake (``python -m services.intake``, as the local stack
runs it) and the baseline ``benchmarks.bare_publisher`` (a FastAPI endpoint that only
publishes what it is sent, through the same producer with the same settings, keyed by
customer), then drives both with the same httpx client: a fixed number of concurrent
connections posting back to back for a fixed time.

- single: ``POST /v1/feedback``, one realistic complaint (``shared.tools.loadgen.complaint``);
- batch: ``POST /v1/feedback/batch`` with ``--batch-size`` complaints; the bare endpoint
  publishes one record per item and waits for every ack, so items/s compare.

Each round measures every row once, intake and bare back to back (alternating which
goes first), so each round gives one intake/bare ratio measured under the same load;
the verdict is the median ratio over the rounds, printed with its spread (min to max).
Prints req/s, items/s, p50/p99 latency, the CPU time per item of the server and of the
broker, and the client's share of a core. Every process it starts is stopped at the
end, on Ctrl-C and on SIGTERM. See docs/performance.md.

    python -m benchmarks.intake [--duration 6] [--concurrency 16] [--batch-size 100]
                                [--rounds 5] [--modes single,batch] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console
from rich.table import Table

from shared.tools import devstack
from shared.tools.loadgen import complaint

# Not a terminal (a log, a pipe): wide enough for the whole table.
console = Console() if sys.stdout.isatty() else Console(width=150)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BARE_TOPIC = "bench.bare"
TARGET_RATIO = 0.5
HEADERS = {"content-type": "application/json", "X-API-Key": devstack.INTAKE_DEV_API_KEY}
MODES = ("single", "batch")
ENDPOINTS = ("intake", "bare")
PATHS = {"single": "/v1/feedback", "batch": "/v1/feedback/batch"}
# Set by Ctrl-C or SIGTERM while requests are being sent: the run winds down cleanly.
STOP = threading.Event()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


@dataclass
class Measured:
    """One (mode, endpoint), summed over rounds."""

    items_per_request: int
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    server_cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    rounds_items_per_s: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def items_per_s(self) -> float:
        return self.requests_per_s * self.items_per_request

    def percentile_ms(self, share: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    def cpu_us_per_item(self, seconds: float) -> float:
        items = self.ok * self.items_per_request
        return seconds * 1e6 / items if items else float("nan")

    @property
    def client_cpu_share(self) -> float:
        return self.client_cpu_s / self.elapsed_s if self.elapsed_s else 0.0


def bodies(seed: int, batch_size: int) -> dict[str, list[bytes]]:
    """Request bodies made once, before measuring: the client only sends bytes."""
    rng = random.Random(seed)

    def encode(value: object) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode()

    return {
        "single": [encode(complaint(rng)) for _ in range(4000)],
        "batch": [
            encode({"items": [complaint(rng) for _ in range(batch_size)]}) for _ in range(40)
        ],
    }


async def drive(
    client: httpx.AsyncClient,
    url: str,
    payloads: list[bytes],
    *,
    concurrency: int,
    duration_s: float,
    into: Measured,
    server_pid: int,
    broker_pid: int,
) -> None:
    """``concurrency`` workers post back to back until the time is up; only 202 counts."""
    sent = 0
    latencies: list[float] = []
    failed: dict[str, int] = {}

    async def worker() -> None:
        nonlocal sent
        while time.perf_counter() < deadline and not STOP.is_set():
            payload = payloads[sent % len(payloads)]
            sent += 1
            started = time.perf_counter()
            try:
                response = await client.post(url, content=payload)
            except httpx.HTTPError as exc:
                failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
                continue
            if response.status_code == 202:
                latencies.append(time.perf_counter() - started)
            else:
                status = str(response.status_code)
                failed[status] = failed.get(status, 0) + 1

    cpu_before = cpu_seconds(server_pid)
    broker_before = cpu_seconds(broker_pid)
    client_before = time.process_time()
    begin = time.perf_counter()
    deadline = begin + duration_s
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - begin
    into.rounds_items_per_s.append(len(latencies) * into.items_per_request / elapsed)
    into.elapsed_s += elapsed
    into.client_cpu_s += time.process_time() - client_before
    into.server_cpu_s += cpu_seconds(server_pid) - cpu_before
    into.broker_cpu_s += cpu_seconds(broker_pid) - broker_before
    into.ok += len(latencies)
    into.latencies_s += latencies
    for reason, count in failed.items():
        into.failed[reason] = into.failed.get(reason, 0) + count


async def check(client: httpx.AsyncClient, url: str, payload: bytes, items: int) -> None:
    """One request before measuring: the endpoint accepts every item of what we send."""
    response = await client.post(url, content=payload)
    if response.status_code != 202:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:500]}")
    answer = response.json()
    accepted = answer.get("accepted", 1)
    if accepted != items:
        raise SystemExit(f"{url} accepted {accepted} of {items} items: {response.text[:500]}")


async def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} is not ready after {timeout_s}s")
            await asyncio.sleep(0.2)


async def run(
    bases: dict[str, str],
    pids: dict[str, int],
    *,
    duration_s: float,
    concurrency: int,
    batch_size: int,
    rounds: int,
    seed: int,
    modes: tuple[str, ...] = MODES,
) -> dict[tuple[str, str], Measured]:
    payloads = bodies(seed, batch_size)
    items = {"single": 1, "batch": batch_size}
    results = {
        (mode, endpoint): Measured(items_per_request=items[mode])
        for mode in modes
        for endpoint in ENDPOINTS
    }
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, headers=HEADERS, limits=limits) as client:
        for endpoint in ENDPOINTS:
            for mode in modes:
                url = bases[endpoint] + PATHS[mode]
                await check(client, url, payloads[mode][0], items[mode])
                # Warm-up, not counted: connections, first-use caches, the broker's batches.
                await drive(
                    client,
                    url,
                    payloads[mode],
                    concurrency=concurrency,
                    duration_s=min(2.0, duration_s / 2),
                    into=Measured(items_per_request=items[mode]),
                    server_pid=pids[endpoint],
                    broker_pid=pids["broker"],
                )
        for round_ in range(rounds):
            order = ENDPOINTS if round_ % 2 == 0 else ENDPOINTS[::-1]
            for mode in modes:
                for endpoint in order:
                    if STOP.is_set():
                        return results
                    console.print(
                        f"round {round_ + 1}/{rounds}: {mode} -> {endpoint} "
                        f"({duration_s:g}s, {concurrency} connections)"
                    )
                    await drive(
                        client,
                        bases[endpoint] + PATHS[mode],
                        payloads[mode],
                        concurrency=concurrency,
                        duration_s=duration_s,
                        into=results[(mode, endpoint)],
                        server_pid=pids[endpoint],
                        broker_pid=pids["broker"],
                    )
    return results


SIDES = (
    "intake: python -m services.intake with the development integration: API key, rate "
    "limit, every item validated and normalised, a CloudEvent per item, a per-item answer, "
    "metrics, one log line per request; 202 once the broker acknowledged every item.",
    "bare: benchmarks.bare_publisher: the same uvicorn settings, the same producer "
    "(EventProducer with intake's settings: acks=all, linger 1 ms, 256 KiB batches, "
    "intake's timeout), records keyed by customer with the same partitioner, no headers, "
    "the item's JSON as it came; 202 once the broker acknowledged every item.",
)


def ratios(results: dict[tuple[str, str], Measured], mode: str) -> list[float]:
    """intake/bare items/s of each round: both measured back to back in that round."""
    intake = results[(mode, "intake")].rounds_items_per_s
    bare = results[(mode, "bare")].rounds_items_per_s
    return [i / b if b else float("nan") for i, b in zip(intake, bare, strict=False)]


def report(results: dict[tuple[str, str], Measured], args: argparse.Namespace) -> None:
    table = Table(
        "mode",
        "endpoint",
        "req/s",
        "items/s median (min-max)",
        "p50 ms",
        "p99 ms",
        "server CPU µs/item",
        "broker CPU µs/item",
        "client CPU",
        "not 202",
        "intake/bare median (min-max)",
        title=(
            f"intake vs bare publisher: {args.concurrency} connections, "
            f"{args.rounds} rounds x {args.duration:g}s per row, batch of {args.batch_size}"
        ),
    )
    verdicts = []
    modes = sorted({mode for mode, _ in results}, key=MODES.index)
    for mode in modes:
        per_round = ratios(results, mode)
        for endpoint in ENDPOINTS:
            m = results[(mode, endpoint)]
            rates = m.rounds_items_per_s
            table.add_row(
                mode,
                endpoint,
                f"{m.requests_per_s:.1f}",
                f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})",
                f"{m.percentile_ms(0.50):.1f}",
                f"{m.percentile_ms(0.99):.1f}",
                f"{m.cpu_us_per_item(m.server_cpu_s):.0f}",
                f"{m.cpu_us_per_item(m.broker_cpu_s):.0f}",
                f"{m.client_cpu_share:.0%}",
                ", ".join(f"{k}: {v}" for k, v in sorted(m.failed.items())) or "0",
                (
                    f"{statistics.median(per_round):.2f} "
                    f"({min(per_round):.2f}-{max(per_round):.2f})"
                    if endpoint == "intake"
                    else ""
                ),
            )
        verdicts.append((mode, per_round))
    console.print(table)
    for side in SIDES:
        console.print(side)
    for mode, per_round in verdicts:
        median = statistics.median(per_round)
        met = "met" if median >= TARGET_RATIO else "NOT met"
        console.print(
            f"{mode}: intake keeps {median:.0%} of the bare endpoint's throughput, median of "
            f"{len(per_round)} rounds (spread {min(per_round):.0%} to {max(per_round):.0%}; "
            f"target {TARGET_RATIO:.0%}: {met})"
        )


def interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM: an event loop that is running finishes the requests in flight
    and returns (see STOP); anything else is interrupted at once."""
    STOP.set()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise KeyboardInterrupt from None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per row per round")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--batch-size", type=int, default=100, help="items per batch request")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating who goes first")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="what to measure: single, batch or both"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated complaints")
    args = parser.parse_args()
    if args.duration <= 0 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--duration, --concurrency and --rounds must be positive")
    modes = tuple(mode.strip() for mode in args.modes.split(",") if mode.strip())
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes takes {' and/or '.join(MODES)}, separated by a comma")
    if not 1 <= args.batch_size <= 500:
        parser.error("--batch-size must be 1 to 500 (intake's batch limit)")

    # Either way, the processes started below are stopped before exiting.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    logs = Path(tempfile.mkdtemp(prefix="closeloop-bench-intake-"))
    console.print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"python {sys.version.split()[0]}; logs in {logs}"
    )
    processes: list[devstack.Process] = []
    try:
        kafka_port = devstack.free_port()
        processes.append(devstack.start_broker(kafka_port, logs / "kafka.log"))
        bootstrap = f"127.0.0.1:{kafka_port}"
        asyncio.run(
            devstack.create_topics(
                bootstrap,
                devstack.StackSettings().partitions,
                names=[*devstack.topic_names(), BARE_TOPIC],
            )
        )
        intake_port = devstack.free_port()
        env = devstack.service_env(
            "intake",
            http_port=intake_port,
            kafka_port=kafka_port,
            mongo_port=devstack.free_port(),  # intake keeps no database: never connected
        )
        processes.append(
            devstack.start_service("intake", env, intake_port, log=logs / "intake.log")
        )
        bare_port = devstack.free_port()
        bare = devstack.spawn(
            "bare",
            [
                sys.executable,
                "-m",
                "benchmarks.bare_publisher",
                "--port",
                str(bare_port),
                "--bootstrap",
                bootstrap,
                "--topic",
                BARE_TOPIC,
            ],
            log=logs / "bare.log",
        )
        processes.append(bare)
        devstack.wait_for_port(bare_port, process=bare.popen)
        bases = {
            "intake": f"http://127.0.0.1:{intake_port}",
            "bare": f"http://127.0.0.1:{bare_port}",
        }
        for base in bases.values():
            asyncio.run(wait_ready(base + "/readyz"))
        pids = {
            "broker": processes[0].popen.pid,
            "intake": processes[1].popen.pid,
            "bare": bare.popen.pid,
        }
        results = asyncio.run(
            run(
                bases,
                pids,
                duration_s=args.duration,
                concurrency=args.concurrency,
                batch_size=args.batch_size,
                rounds=args.rounds,
                seed=args.seed,
                modes=modes,
            )
        )
    except KeyboardInterrupt:
        STOP.set()
    finally:
        # Servers first, so they stop cleanly while the broker is still up.
        for process in reversed(processes):
            process.stop()
    if STOP.is_set():
        console.print("interrupted: no numbers")
        return 130
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
