"""``closeloop``: the operator's toolkit.

closeloop dlq list|show|replay     inspect and replay dead-letter topics
closeloop replay                   re-feed events from a topic range or a JSON-lines file
closeloop loadgen                  post realistic feedback to intake at a steady rate
closeloop stack up|down|status     the local stack that `make run` uses
closeloop insights rebuild         rebuild insights' projection and rollups from the topics
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.insights.handlers import EVENT_NAMES as INSIGHTS_EVENTS
from services.insights.store import InsightsStore
from shared.contracts import (
    EVENT_MODELS,
    CaseEvent,
    CaseRouted,
    Topic,
    dlq_topic,
    parse_event_type,
)
from shared.envelope import Event, PoisonMessage, from_record, to_record
from shared.kafka import DLQ_HEADER_PREFIX
from shared.tools import devstack
from shared.tools.loadgen import LoadResult, run_load

app = typer.Typer(
    help="Operate closeloop: dead letters, replays, load, the local stack.", no_args_is_help=True
)
dlq_app = typer.Typer(help="Inspect and replay dead-letter topics.", no_args_is_help=True)
stack_app = typer.Typer(
    help="The local stack (broker, database, five services).", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(stack_app, name="stack")
insights_app = typer.Typer(help="insights' projection and rollups.", no_args_is_help=True)
app.add_typer(insights_app, name="insights")
console = Console()

DEFAULT_BOOTSTRAP = f"127.0.0.1:{devstack.StackSettings().kafka_port}"
Bootstrap = Annotated[
    str, typer.Option(envvar="CLOSELOOP_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers")
]
REPLAY_GROUP = "closeloop-dlq-replay"


def dead_letter_topics() -> list[str]:
    return [dlq_topic(topic.value) for topic in Topic]


@asynccontextmanager
async def assigned(
    bootstrap: str, topic: str, group: str | None = None, partition: int | None = None
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer manually assigned to a topic's partitions (no group rebalancing)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await consumer.topics()  # refreshes metadata
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if partition is not None:
            partitions = [p for p in partitions if p == partition]
        tps = [TopicPartition(topic, p) for p in partitions]
        if tps:
            consumer.assign(tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def read_range(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Records of each partition from ``start`` (inclusive) to ``end`` (exclusive)."""
    remaining = {tp for tp in tps if start[tp] < end[tp]}
    for tp in remaining:
        consumer.seek(tp, start[tp])
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, records in batch.items():
            for record in records:
                if record.offset >= end[tp]:
                    remaining.discard(tp)
                    break
                yield record
                if record.offset + 1 >= end[tp]:
                    remaining.discard(tp)


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


def _describe(record: ConsumerRecord[bytes, bytes]) -> tuple[str, str]:
    try:
        event = from_record(record.key, record.value, record.headers or ())
    except PoisonMessage:
        return "-", "-"
    return event.name, event.id


# --- dlq ----------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Messages in every dead-letter topic, and how many are not yet replayed."""

    async def run() -> Table:
        table = Table("dead-letter topic", "messages", "not replayed")
        for topic in dead_letter_topics():
            async with assigned(bootstrap, topic, REPLAY_GROUP) as (consumer, tps):
                if not tps:
                    table.add_row(topic, "topic missing", "-")
                    continue
                begin = await consumer.beginning_offsets(tps)
                end = await consumer.end_offsets(tps)
                pending = 0
                for tp in tps:
                    done = await consumer.committed(tp)
                    pending += end[tp] - max(begin[tp], done or 0)
                table.add_row(topic, str(sum(end[tp] - begin[tp] for tp in tps)), str(pending))
        return table

    console.print(asyncio.run(run()))


@dlq_app.command("show")
def dlq_show(
    topic: Annotated[str, typer.Argument(help="A dead-letter topic, e.g. feedback.received.dlq")],
    limit: Annotated[int, typer.Option(help="At most this many messages")] = 20,
    partition: Annotated[int | None, typer.Option(help="Only this partition")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """Dead-lettered messages with why they failed and where they came from."""

    async def run() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with assigned(bootstrap, topic, None, partition) as (consumer, tps):
            if not tps:
                raise typer.BadParameter(f"no topic {topic}")
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            async for record in read_range(consumer, tps, begin, end):
                headers = _headers(record)
                event_type, event_id = _describe(record)
                rows.append(
                    {
                        "partition": record.partition,
                        "offset": record.offset,
                        "kind": headers.get("dlq_kind"),
                        "reason": headers.get("dlq_reason"),
                        "from": f"{headers.get('dlq_topic')}[{headers.get('dlq_partition')}]"
                        f"@{headers.get('dlq_offset')}",
                        "group": headers.get("dlq_group"),
                        "failed_at": headers.get("dlq_failed_at"),
                        "event_type": event_type,
                        "event_id": event_id,
                        "value": (record.value or b"")[:200].decode(errors="replace"),
                    }
                )
                if len(rows) >= limit:
                    break
        return rows

    rows = asyncio.run(run())
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table("p", "offset", "kind", "reason", "from", "event", "failed at")
    for row in rows:
        table.add_row(
            str(row["partition"]),
            str(row["offset"]),
            str(row["kind"]),
            str(row["reason"]),
            row["from"],
            f"{row['event_type']} {row['event_id']}",
            str(row["failed_at"]),
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="A dead-letter topic, e.g. case.routed.dlq")],
    dry_run: Annotated[bool, typer.Option(help="Show what would be replayed")] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """Send dead-lettered messages back to the topic they came from, once each.

    Run it after fixing what made them fail. Progress is kept in the consumer group
    closeloop-dlq-replay, so a second run replays only newer dead letters."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        replayed = 0
        try:
            async with assigned(bootstrap, topic, REPLAY_GROUP) as (consumer, tps):
                if not tps:
                    raise typer.BadParameter(f"no topic {topic}")
                begin = await consumer.beginning_offsets(tps)
                end = await consumer.end_offsets(tps)
                start = {}
                for tp in tps:
                    done = await consumer.committed(tp)
                    start[tp] = max(begin[tp], done or 0)
                async for record in read_range(consumer, tps, start, end):
                    headers = _headers(record)
                    target = headers.get("dlq_topic") or topic.removesuffix(".dlq")
                    original = [
                        (k, v)
                        for k, v in (record.headers or ())
                        if not k.startswith(DLQ_HEADER_PREFIX)
                    ]
                    console.print(
                        f"{'would replay' if dry_run else 'replay'} "
                        f"{record.partition}@{record.offset} -> {target} "
                        f"({headers.get('dlq_reason', '')[:80]})"
                    )
                    if not dry_run:
                        await producer.send_and_wait(
                            target, record.value, key=record.key, headers=original
                        )
                        await consumer.commit(
                            {TopicPartition(record.topic, record.partition): record.offset + 1}
                        )
                    replayed += 1
        finally:
            await producer.stop()
        return replayed

    count = asyncio.run(run())
    console.print(f"{count} message(s) {'to replay' if dry_run else 'replayed'}")


# --- replay -------------------------------------------------------------------------


def event_from_json(line: str) -> Event[Any]:
    """A CloudEvents structured-mode JSON object as written by ``dlq show --json``
    or any tool: {"id", "source", "type", "time", "data"}."""
    raw = json.loads(line)
    name, _ = parse_event_type(raw["type"])
    model = EVENT_MODELS[name]
    time_ = (
        datetime.fromisoformat(raw["time"].replace("Z", "+00:00"))
        if raw.get("time")
        else datetime.now(UTC)
    )
    return Event(
        id=raw["id"], source=raw["source"], time=time_, data=model.model_validate(raw["data"])
    )


@app.command()
def replay(
    topic: Annotated[str | None, typer.Option(help="Re-feed from this topic")] = None,
    partition: Annotated[int | None, typer.Option(help="Only this partition")] = None,
    from_offset: Annotated[int, typer.Option(help="First offset (inclusive)")] = 0,
    to_offset: Annotated[
        int | None, typer.Option(help="Last offset (exclusive); default end")
    ] = None,
    to_topic: Annotated[
        str | None, typer.Option(help="Write to this topic; default the same")
    ] = None,
    file: Annotated[Path | None, typer.Option(help="JSON lines of CloudEvents to publish")] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """Re-feed events: a range of a topic, or a JSON-lines file of CloudEvents.

    Consumers are idempotent, so re-feeding events they already handled changes nothing."""
    if (topic is None) == (file is None):
        raise typer.BadParameter("give either --topic or --file")

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        count = 0
        try:
            if file is not None:
                for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        event = event_from_json(line)
                    except (ValueError, KeyError) as exc:
                        raise typer.BadParameter(f"{file}:{number}: {exc}") from exc
                    record = to_record(event)
                    await producer.send_and_wait(
                        to_topic or record.topic,
                        record.value,
                        key=record.key,
                        headers=record.headers,
                    )
                    count += 1
                return count
            assert topic is not None
            async with assigned(bootstrap, topic, None, partition) as (consumer, tps):
                end = await consumer.end_offsets(tps)
                stop = {
                    tp: min(end[tp], to_offset) if to_offset is not None else end[tp] for tp in tps
                }
                async for record in read_range(
                    consumer, tps, {tp: from_offset for tp in tps}, stop
                ):
                    await producer.send_and_wait(
                        to_topic or topic,
                        record.value,
                        key=record.key,
                        headers=list(record.headers or ()),
                    )
                    count += 1
        finally:
            await producer.stop()
        return count

    console.print(f"{asyncio.run(run())} event(s) published")


# --- loadgen ------------------------------------------------------------------------


def summary(result: LoadResult) -> Table:
    table = Table("measure", "value", title="load summary")
    achieved = result.sent / result.elapsed_s if result.elapsed_s else 0.0
    rows = [
        ("sent", str(result.sent)),
        ("accepted (202)", str(result.accepted)),
        ("rejected (4xx/5xx)", str(result.rejected)),
        ("connection errors", str(result.errors)),
        ("status codes", ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items()))),
        ("elapsed", f"{result.elapsed_s:.1f} s"),
        ("achieved rate", f"{achieved:.1f} /s"),
        ("latency p50", f"{result.percentile(0.50) * 1000:.1f} ms"),
        ("latency p95", f"{result.percentile(0.95) * 1000:.1f} ms"),
        ("latency p99", f"{result.percentile(0.99) * 1000:.1f} ms"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"header {value!r} is not 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


@app.command()
def loadgen(
    rate: Annotated[float, typer.Option(min=0.1, help="Feedback per second")] = 20.0,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds")] = 10.0,
    url: Annotated[str, typer.Option(envvar="CLOSELOOP_INTAKE_URL", help="Intake base URL")] = (
        "http://127.0.0.1:8000"
    ),
    api_key: Annotated[
        str,
        typer.Option(
            envvar="CLOSELOOP_INTAKE_API_KEY",
            help="The integration's key, sent as X-API-Key; default: the local stack's",
        ),
    ] = devstack.INTAKE_DEV_API_KEY,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Extra request header 'Name: value'"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same feedback")] = 7,
) -> None:
    """Post realistic, varied complaints (every channel, zh and en, every root cause and
    urgency) to intake at a steady rate, with live progress and a summary."""
    total = int(rate * duration)
    headers = {"X-API-Key": api_key, **parse_headers(header or [])}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("posting", total=total, status="")

        def update(result: LoadResult) -> None:
            done = result.accepted + result.rejected + result.errors
            progress.update(
                task,
                completed=done,
                status=f"202: {result.accepted}  other: {result.rejected}  errors: {result.errors}",
            )

        result = asyncio.run(
            run_load(
                url, rate=rate, duration_s=duration, headers=headers, seed=seed, on_result=update
            )
        )
    console.print(summary(result))
    if result.accepted < result.sent:
        raise typer.Exit(1)


# --- insights -----------------------------------------------------------------------


@dataclass
class RebuildResult:
    read: int = 0
    folded: int = 0
    skipped: int = 0


async def rebuild_insights(
    bootstrap: str,
    store: InsightsStore,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> RebuildResult:
    """Forget insights' projection and rollups and fold every event still on case.routed
    and case.lifecycle again, from the beginning of each partition to its end now.
    Messages that are not closeloop events are skipped (they are in the DLQ already)."""
    await store.clear()
    result = RebuildResult()
    ranges = []
    for topic in (Topic.CASE_ROUTED, Topic.CASE_LIFECYCLE):
        async with assigned(bootstrap, topic.value) as (consumer, tps):
            if tps:
                ranges.append(
                    (topic, await consumer.beginning_offsets(tps), await consumer.end_offsets(tps))
                )
    total = sum(end[tp] - start[tp] for _, start, end in ranges for tp in end)
    on_progress(0, total)
    for topic, start, end in ranges:
        async with assigned(bootstrap, topic.value) as (consumer, tps):
            async for record in read_range(consumer, tps, start, end):
                result.read += 1
                try:
                    event = from_record(record.key, record.value, record.headers)
                except PoisonMessage:
                    result.skipped += 1
                else:
                    data = event.data
                    if event.name in INSIGHTS_EVENTS and isinstance(data, CaseRouted | CaseEvent):
                        await store.apply(event, data.case_id, datetime.now(UTC))
                        result.folded += 1
                    else:
                        result.skipped += 1
                on_progress(result.read, total)
    return result


@insights_app.command("rebuild")
def insights_rebuild(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    mongo_url: Annotated[
        str, typer.Option(envvar="CLOSELOOP_INSIGHTS_MONGO_URL", help="insights' MongoDB")
    ] = devstack.mongo_url(devstack.StackSettings().mongo_port),
    database: Annotated[
        str, typer.Option(envvar="CLOSELOOP_INSIGHTS_MONGO_DATABASE", help="Its database")
    ] = "closeloop",
) -> None:
    """Rebuild insights' projection of every case and its daily rollups from the topics
    (after a change to how facts are folded, or a lost database). Folding is idempotent:
    a running insights service may go on meanwhile. The topics' retention bounds what
    can be rebuilt."""

    async def run() -> RebuildResult:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        try:
            with Progress(
                TextColumn("rebuilding"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} events"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("rebuild", total=None)
                store = InsightsStore(client[database])
                await store.ensure_indexes()
                return await rebuild_insights(
                    bootstrap,
                    store,
                    lambda done, total: progress.update(task, completed=done, total=total),
                )
        finally:
            await client.close()

    result = asyncio.run(run())
    console.print(
        f"rebuilt: {result.folded} events folded, {result.skipped} skipped "
        f"(not events of a case), {result.read} read"
    )


# --- stack --------------------------------------------------------------------------


@dataclass(frozen=True)
class StackFiles:
    pid: Path
    log: Path

    @classmethod
    def of(cls, settings: devstack.StackSettings) -> StackFiles:
        return cls(
            pid=settings.data_dir / "stack.pid", log=settings.data_dir / "logs" / "stack.log"
        )


def running_pid(files: StackFiles) -> int | None:
    try:
        pid = int(files.pid.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:  # reap it if it is our own exited child (a zombie still answers kill 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    return pid


def readiness(settings: devstack.StackSettings) -> dict[str, str]:
    ports = {
        "intake": settings.intake_port,
        "classifier": settings.classifier_port,
        "router": settings.router_port,
        "followup": settings.followup_port,
    }
    out = {}
    for name, port in ports.items():
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            out[name] = "ready" if response.status_code == 200 else "not ready"
        except httpx.HTTPError:
            out[name] = "down"
    return out


@stack_app.command("up")
def stack_up(
    wait: Annotated[float, typer.Option(help="Seconds to wait for every service to be ready")] = 90,
) -> None:
    """Start the local stack in the background (what `make run` runs in the foreground)."""
    settings = devstack.StackSettings()
    files = StackFiles.of(settings)
    if (pid := running_pid(files)) is not None:
        console.print(f"already running (pid {pid})")
        return
    files.log.parent.mkdir(parents=True, exist_ok=True)
    with open(files.log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.tools.devstack", "run", "--detached"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=devstack.ROOT,
        )
    files.pid.write_text(str(process.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            console.print(f"[red]the stack exited with {process.returncode}[/]; see {files.log}")
            raise typer.Exit(1)
        if set(readiness(settings).values()) == {"ready"}:
            console.print(
                devstack.banner(devstack.Stack(settings)).replace(
                    "Press Ctrl-C to stop everything.", "Stop it with: closeloop stack down"
                )
            )
            return
        time.sleep(0.5)
    console.print(f"[red]not ready after {wait:.0f}s[/]; see {files.log}")
    raise typer.Exit(1)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local stack started by `closeloop stack up`, and every process it started."""
    settings = devstack.StackSettings()
    files = StackFiles.of(settings)
    pid = running_pid(files)
    if pid is None:
        console.print("not running")
        return
    os.kill(pid, signal.SIGTERM)
    console.print(f"draining (at most {settings.drain_timeout_s:.0f}s), then stopping")
    # The drain, then each process's own graceful stop.
    deadline = time.monotonic() + settings.drain_timeout_s + 60
    while time.monotonic() < deadline and running_pid(files) is not None:
        time.sleep(0.2)
    files.pid.unlink(missing_ok=True)
    console.print("stopped")


@stack_app.command("status")
def stack_status() -> None:
    """Whether the local stack runs, and each service's readiness."""
    settings = devstack.StackSettings()
    pid = running_pid(StackFiles.of(settings))
    table = Table("part", "state")
    table.add_row("stack", f"running (pid {pid})" if pid else "not running")
    for name, state in readiness(settings).items():
        table.add_row(name, state)
    console.print(table)
    if pid is None:
        raise typer.Exit(3)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
