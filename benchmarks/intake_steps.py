"""Where a batch item's time goes in intake: each step timed on its own, in-process.

The steps of ``POST /v1/feedback/batch`` for 100 realistic complaints
(``shared.tools.loadgen.complaint``), each run in a loop and reported per item (the best of
several repeats, so the least disturbed by other work on the machine):

- reading and validating the batch body (items counted as read, then validated), and
  validating it in one pass from the JSON (BatchIn), which cannot stop at item 501;
- normalising (customer, UTC, feedback id, language, the ``Feedback`` model);
- the ``feedback.received`` event (payload, derived event id);
- the Kafka records: ``to_records`` for the batch, ``to_record`` one by one;
- the per-item answer.

With ``--producer`` it also starts a local broker and measures the CPU time per record
of ``EventProducer.send_records`` (16 concurrent senders of 100 records, until every
record is acknowledged) for intake's records (CloudEvents headers and the normalised
feedback) and for the bare publisher's (the item's JSON, keyed by customer, no
headers). See docs/performance.md.

    python -m benchmarks.intake_steps [--producer] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic_core import to_json
from rich.console import Console
from rich.table import Table

from services.intake.admission import feedback_items as _batch_items
from services.intake.domain import FeedbackIn, Source, normalise_from
from services.intake.schemas import BatchIn
from services.intake.settings import IntakeSettings
from shared.clock import utcnow
from shared.contracts import FeedbackReceived
from shared.envelope import Event, KafkaRecord, new_event, to_record, to_records
from shared.kafka import EventProducer
from shared.tools import devstack
from shared.tools.loadgen import complaint

ITEMS = 100
SENDERS = 16  # as many as the connections of benchmarks/intake.py
ROUNDS = 20
console = Console()


def per_item_us(step: Callable[[], object], number: int = 30, repeat: int = 9) -> float:
    return min(timeit.repeat(step, number=number, repeat=repeat)) / number / ITEMS * 1e6


def steps(seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    raws = [complaint(rng) for _ in range(ITEMS)]
    body = json.dumps({"items": raws}, ensure_ascii=False).encode()
    source = Source(now=utcnow(), region="CN")
    items = BatchIn.model_validate_json(body).items
    feedbacks = [normalise_from(item, source) for item in items]
    published_at = datetime.now(UTC)

    def events() -> list[Event[FeedbackReceived]]:
        return [
            new_event(
                FeedbackReceived(feedback=feedback),
                source="/closeloop/intake",
                cause=feedback.feedback_id,
                time=published_at,
            )
            for feedback in feedbacks
        ]

    built = events()
    answer = {
        "accepted": ITEMS,
        "rejected": 0,
        "items": [
            {"index": i, "status": "accepted", "feedback_id": f.feedback_id, "errors": []}
            for i, f in enumerate(feedbacks)
        ],
    }
    return [
        (
            "read and validate the batch (items counted as read)",
            per_item_us(lambda: _batch_items(body, 500)),
        ),
        (
            "  in one pass from the JSON (BatchIn)",
            per_item_us(lambda: BatchIn.model_validate_json(body)),
        ),
        (
            "normalise (customer, UTC, feedback id, language, Feedback)",
            per_item_us(lambda: [normalise_from(item, source) for item in items]),
        ),
        ("the event (FeedbackReceived, event id)", per_item_us(events)),
        ("Kafka records of the batch (to_records)", per_item_us(lambda: to_records(built))),
        ("  one by one (to_record)", per_item_us(lambda: [to_record(e) for e in built])),
        ("the per-item answer (JSON)", per_item_us(lambda: to_json(answer))),
    ]


async def sender(producer: EventProducer, records: list[KafkaRecord]) -> None:
    for _ in range(ROUNDS):
        await producer.send_records(records)


async def send_cost(bootstrap: str, seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    raws = [complaint(rng) for _ in range(ITEMS)]
    source = Source(now=utcnow(), region="CN")
    published_at = datetime.now(UTC)
    events = [
        new_event(
            FeedbackReceived(feedback=normalise_from(FeedbackIn.model_validate(raw), source)),
            source="/closeloop/intake",
            cause=str(n),
            time=published_at,
        )
        for n, raw in enumerate(raws)
    ]
    intake = to_records(events)
    bare = [
        KafkaRecord(
            topic=record.topic, key=to_json(raw["customer"]), value=to_json(raw), headers=[]
        )
        for record, raw in zip(intake, raws, strict=True)
    ]
    producer = EventProducer(IntakeSettings(kafka_bootstrap=bootstrap), "bench-steps")
    if not await producer.connect():
        raise SystemExit("cannot connect to the broker")
    out = []
    try:
        await producer.send_records(intake)  # connections and metadata, not counted
        for name, records in (("intake's records", intake), ("the bare publisher's", bare)):
            started = time.process_time()
            await asyncio.gather(*(sender(producer, records) for _ in range(SENDERS)))
            cpu = time.process_time() - started
            out.append((f"send_records, {name}", cpu / (SENDERS * ROUNDS * ITEMS) * 1e6))
    finally:
        await producer.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--producer", action="store_true", help="also time sending records")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated complaints")
    args = parser.parse_args()
    rows = steps(args.seed)
    if args.producer:
        port = devstack.free_port()
        logs = Path(tempfile.mkdtemp(prefix="closeloop-bench-steps-"))
        broker = devstack.start_broker(port, logs / "kafka.log")
        try:
            bootstrap = f"127.0.0.1:{port}"
            asyncio.run(devstack.create_topics(bootstrap, devstack.StackSettings().partitions))
            rows += asyncio.run(send_cost(bootstrap, args.seed))
        finally:
            broker.stop()
    table = Table("step of a batch item", "µs per item", title=f"intake, batch of {ITEMS}")
    for name, micros in rows:
        table.add_row(name, f"{micros:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
