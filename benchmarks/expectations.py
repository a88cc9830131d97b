"""What reading the customer's expectation costs, per text, on one core.

    .venv/bin/python benchmarks/expectations.py [--texts 20000] [--repeats 3]

Pins the process to one CPU, then runs the expectation rules of the taxonomy over the
project's labelled texts (real reviews and hand-written feedback, Chinese and English,
repeated to the requested count), as the classifier does for every feedback: the
prepared text in, the strongest ask (or none) out. Also over only the texts that name an
outcome somewhere (where the matcher does all its work: clauses, requests, negations),
and the full classification of batches of 1,000 for comparison.
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
    asks_in,
    classify_batch,
    strongest_ask,
    text_of,
)
from services.classifier.model import load, prepare  # noqa: E402
from services.classifier.offline.dataset import HELDOUT_FILE, TRAIN_FILE, read_examples  # noqa: E402
from services.classifier.policy import ExpectationRules, load_taxonomy  # noqa: E402
from shared.contracts import Channel, Customer, Feedback  # noqa: E402

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BATCH = 1_000


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


def best_rate(count: int, run: Callable[[], object], repeats: int) -> float:
    """Best texts/s of CPU time over the repeats (what one core delivers)."""
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        rates.append(count / (time.process_time() - start))
    return max(rates)


def extract_all(rules: ExpectationRules, items: list[tuple[str, str]]) -> int:
    asked = 0
    for prepared, original in items:
        if strongest_ask(rules, asks_in(rules, prepared, original)) is not None:
            asked += 1
    return asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    where = pin_to_one_core()
    taxonomy = load_taxonomy()
    rules = taxonomy.expectations
    found = feedbacks(args.texts)
    texts = [text_of(f) for f in found]
    items = [(prepare(t), t) for t in texts]
    chars = statistics.mean(len(t) for t in texts)
    print(f"expectation benchmark: {len(items)} texts (mean {chars:.0f} characters), {where}")
    print(f"rules {taxonomy.version}, load average {os.getloadavg()[0]:.2f}")

    compiled = rules.compiled
    naming = [item for item in items if any(compiled.items.find_all(item[0]).values())]
    asked = extract_all(rules, items)
    print(
        f"{len(naming)} texts name an outcome ({len(naming) / len(items):.1%}),"
        f" {asked} ask for one ({asked / len(items):.1%})"
    )

    model = load(taxonomy.artifact_path)

    def full() -> None:
        for start in range(0, len(found), BATCH):
            classify_batch(taxonomy, model, found[start : start + BATCH])

    for label, count, run in (
        ("expectation, all texts", len(items), lambda: extract_all(rules, items)),
        ("expectation, texts naming an outcome", len(naming), lambda: extract_all(rules, naming)),
        (f"full classification, batches of {BATCH}", len(found), full),
    ):
        rate = best_rate(count, run, args.repeats)
        print(f"{label}: {rate:,.0f} texts/s of CPU time ({1e6 / rate:.1f} µs per text)")


if __name__ == "__main__":
    main()
