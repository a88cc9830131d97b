"""Classifier throughput on one core: texts per second for batch inference.

    .venv/bin/python benchmarks/classifier.py [--texts 20000] [--batch 1000]

Pins the process to one CPU and BLAS to one thread, then classifies the project's
labelled texts (real reviews and hand-written feedback, Chinese and English, repeated
to the requested count) through the full decision: keyword evidence, the model,
sentiment, urgency signals, and the Classification with its reasons. Also reports
the model alone and one-at-a-time classification (how the service handles events).
"""

from __future__ import annotations

import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.classifier.domain import (  # noqa: E402
    classify,
    classify_batch,
    keyword_counts,
    keyword_matches,
)
from services.classifier.model import load, prepare  # noqa: E402
from services.classifier.offline.dataset import HELDOUT_FILE, TRAIN_FILE, read_examples  # noqa: E402
from services.classifier.policy import load_taxonomy  # noqa: E402
from shared.contracts import Channel, Customer, Feedback  # noqa: E402

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity on this platform)"


def feedbacks(count: int) -> list[Feedback]:
    texts = [e.text for e in read_examples(TRAIN_FILE) + read_examples(HELDOUT_FILE)]
    customer = Customer(id="bench")
    return [
        Feedback(
            feedback_id=f"bench-{i}",
            channel=Channel.WEB,
            customer=customer,
            customer_key=customer.key,
            text=texts[i % len(texts)],
            received_at=NOW,
            ingested_at=NOW,
        )
        for i in range(count)
    ]


def rates(count: int, run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best texts/s over the repeats, by CPU time (what one core delivers, even when other
    processes share it) and by wall-clock time (what this run saw)."""
    cpu, wall = [], []
    for _ in range(repeats):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        run()
        cpu.append(count / (time.process_time() - cpu_start))
        wall.append(count / (time.perf_counter() - wall_start))
    return max(cpu), max(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    where = pin_to_one_core()
    taxonomy = load_taxonomy()
    model = load(taxonomy.artifact_path)
    items = feedbacks(args.texts)
    chars = statistics.mean(len(f.text) for f in items)
    print(f"classifier benchmark: {args.texts} texts (mean {chars:.0f} characters), {where}")
    print(f"model {model.version}+{taxonomy.version}, vocabulary {model.vocabulary_size}")

    def full() -> None:
        for start in range(0, len(items), args.batch):
            classify_batch(taxonomy, model, items[start : start + args.batch])

    prepared = [prepare(f.text) for f in items]

    def model_only() -> None:
        for start in range(0, len(prepared), args.batch):
            chunk = prepared[start : start + args.batch]
            counts = keyword_counts(
                [keyword_matches(taxonomy, t) for t in chunk], model.keyword_causes
            )
            model.predict(chunk, counts)

    single_items = items[: min(2_000, len(items))]

    def one_at_a_time() -> None:
        for item in single_items:
            classify(taxonomy, model, item)

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for label, count, run in (
        (f"batch of {args.batch}, full classification", len(items), full),
        (f"batch of {args.batch}, keywords + model only", len(items), model_only),
        ("one at a time, full classification", len(single_items), one_at_a_time),
    ):
        cpu, wall = rates(count, run, args.repeats)
        print(f"{label}: {cpu:,.0f} texts/s of CPU time ({wall:,.0f} texts/s wall clock)")


if __name__ == "__main__":
    main()
