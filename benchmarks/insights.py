"""How insights' reports scale with the number of cases, and how fast it folds events.

    python -m benchmarks.insights [--cases 10000 100000] [--events 2000]

On a private SecantusDB (the local stack's database server) on a free port:

1. Ingest: ``--events`` case events (case.routed, first response, resolution, survey
   answer, close, for a fifth as many cases) folded one by one through
   ``InsightsStore.apply``: events per second; then the same events through the
   consumer's handler, which also takes each customer's health score after the fold.
2. Reports: for each ``--cases`` count, that many cases opened over 30 days, spread over
   causes, teams, agents, channels, priorities, languages and tiers as the load
   generator spreads them, folded by the domain's own functions into their daily
   rollups, written in bulk; then a month's summary (all cases, and by team) and its
   daily trend, a report on two dimensions (by team for P1 cases) and one on three (by
   team for P1 cases from the web), each read the way the API reads it: the median and
   slowest of ``--repeat`` runs. A report on two dimensions at most reads the rollups
   per day and slice (none, one or a pair of dimensions), as many for any number of
   cases; a report on three or more reads the rollups per combination, which grow with
   the cases: the line for 1,000,000 cases projects each accordingly.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from rich.console import Console
from rich.table import Table

from services.insights.customers import Customers
from services.insights.domain import DIMENSIONS, CaseFacts, day_of, dimensions, fold, measures
from services.insights.handlers import make_handlers
from services.insights.policy import load_policy
from services.insights.store import InsightsStore, rollup_id, slice_rollups
from shared.contracts import (
    CaseClosed,
    CaseFirstResponse,
    CaseResolved,
    CaseRouted,
    Priority,
    SurveyAnswered,
    root_causes,
)
from shared.db import Document
from shared.envelope import Event, new_event
from shared.tools import devstack
from tests.support import a_classification, a_customer, a_feedback, a_routing

START = date(2026, 11, 1)
DAYS = 30
TEAMS = ["billing", "logistics", "quality", "tech", "service", "escalations", "vip", "retail"]
AGENTS_PER_TEAM = 6
CHANNELS = ["web", "email", "phone", "chat", "social", "sms", "app_review"]
LANGUAGES = ["zh", "en", "other"]
TIERS = ["standard", "premium", "vip"]


def _case_events(rng: random.Random, day: date) -> list[Event[Any]]:
    opened = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
        seconds=rng.randrange(86_400)
    )
    team = rng.choice(TEAMS)
    routed = CaseRouted(
        case_id=f"case-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
        feedback=a_feedback(
            "parcel late", at=opened, customer=a_customer(), channel=rng.choice(CHANNELS),
            language=rng.choice(LANGUAGES),
        ),
        classification=a_classification(rng.choice(list(root_causes()))),
        routing=a_routing(
            rng.choice(list(Priority)), at=opened, team=team,
            agent=f"{team}-{rng.randrange(AGENTS_PER_TEAM)}",
        ),
    )  # fmt: skip
    key = routed.feedback.customer_key

    def later(hours: float) -> datetime:
        return opened + timedelta(hours=hours)

    first = rng.uniform(0.1, 12)
    resolved = first + rng.uniform(0.5, 72)
    score = rng.randint(1, 5)
    events: list[Any] = [
        routed,
        CaseFirstResponse(
            case_id=routed.case_id, customer_key=key, occurred_at=later(first),
            responded_by="a", within_sla=first <= 8,
        ),
        CaseResolved(
            case_id=routed.case_id, customer_key=key, occurred_at=later(resolved),
            resolved_by="a", solution="fixed", within_sla=resolved <= 72,
        ),
        SurveyAnswered(
            case_id=routed.case_id, customer_key=key, occurred_at=later(resolved + 1),
            survey_id=f"{routed.case_id}-s", csat=score, expected=4, perceived=score,
            ratio=score / 4, solved=score >= 3,
            verdict="delighted" if score == 5 else "satisfied" if score >= 3 else "dissatisfied",
        ),
    ]  # fmt: skip
    return [
        new_event(data, source="/benchmark", cause=f"{routed.case_id}/{i}", time=opened)
        for i, data in enumerate(events)
    ]


def _closed(events: list[Event[Any]]) -> Event[Any]:
    routed: CaseRouted = events[0].data
    answered: SurveyAnswered = events[3].data
    closed = CaseClosed(
        case_id=routed.case_id, customer_key=routed.feedback.customer_key,
        occurred_at=answered.occurred_at, outcome=answered.verdict,
        feedback_id=routed.feedback.feedback_id, channel=routed.feedback.channel,
        customer_tier=routed.feedback.customer.tier,
        root_cause=routed.classification.root_cause, urgency=routed.classification.urgency,
        priority=routed.routing.priority, team=routed.routing.team, agent=routed.routing.agent,
        opened_at=routed.feedback.received_at, first_response_at=events[1].data.occurred_at,
        resolved_at=events[2].data.occurred_at, closed_at=answered.occurred_at,
        time_to_first_response_s=None, time_to_resolve_s=None, first_response_sla_met=None,
        resolution_sla_met=None, callbacks_made=0, reopen_count=0, csat=answered.csat,
        expected=answered.expected, perceived=answered.perceived, ratio=answered.ratio,
    )  # fmt: skip
    return new_event(closed, source="/benchmark", cause=f"{routed.case_id}/closed")


def ingest_events(count: int, rng: random.Random) -> list[Event[Any]]:
    events: list[Event[Any]] = []
    while len(events) < count:
        case = _case_events(rng, START + timedelta(days=rng.randrange(DAYS)))
        events += [*case, _closed(case)]
    return events[:count]


async def ingest(store: InsightsStore, events: list[Event[Any]]) -> float:
    started = time.perf_counter()
    for event in events:
        await store.apply(event, event.data.case_id, datetime.now(UTC))
    return len(events) / (time.perf_counter() - started)


async def ingest_and_score(
    db: AsyncDatabase[dict[str, Any]], events: list[Event[Any]]
) -> tuple[float, int]:
    """The consumer's handler itself: each event folded, then its customer scored (the
    signals go to a list instead of Kafka). Events per second, and signals."""
    store = InsightsStore(db)
    published: list[Event[Any]] = []

    async def publish(batch: Sequence[Event[Any]]) -> None:
        published.extend(batch)

    customers = Customers(db, store, load_policy(), publish, timedelta(hours=24))
    await store.ensure_indexes()
    await customers.ensure_indexes()
    handlers = make_handlers(store, customers)
    started = time.perf_counter()
    for event in events:
        await handlers[event.name](event)
    return len(events) / (time.perf_counter() - started), len(published)


Rollups = dict[tuple[date, tuple[str, ...]], dict[str, float]]


def rollups_of(cases: int, rng: random.Random) -> Rollups:
    """The daily rollups of ``cases`` generated cases, folded by the domain's functions."""
    rollups: Rollups = {}
    for _ in range(cases):
        facts: CaseFacts | None = None
        case = _case_events(rng, START + timedelta(days=rng.randrange(DAYS)))
        for event in [*case, _closed(case)]:
            facts = fold(facts, event)
        assert facts is not None
        day = day_of(facts)
        assert day is not None
        dims = dimensions(facts)
        sums = rollups.setdefault((day, tuple(dims[d] for d in DIMENSIONS)), {})
        for name, value in measures(facts).items():
            if value:
                sums[name] = sums.get(name, 0.0) + value
    return rollups


async def write_rollups(store: InsightsStore, rollups: Rollups) -> None:
    docs = []
    for (day, values), sums in rollups.items():
        dims = dict(zip(DIMENSIONS, values, strict=True))
        docs.append(
            {
                "_id": rollup_id(day, dims),
                "day": datetime.combine(day, datetime.min.time(), UTC),
                **dims,
                **sums,
                "deltas": [],
            }
        )
    for start in range(0, len(docs), 5_000):
        await store.daily.insert_many(docs[start : start + 5_000])
    # And per day and slice (no dimension, one, a pair), as InsightsStore adds each delta.
    slices: dict[str, Document] = {}
    for (day, values), sums in rollups.items():
        for key, fields in slice_rollups(day, dict(zip(DIMENSIONS, values, strict=True))):
            into = slices.setdefault(key, {"_id": key, **fields, "deltas": []})
            for name, amount in sums.items():
                into[name] = into.get(name, 0.0) + amount
    docs = list(slices.values())
    for start in range(0, len(docs), 1_000):
        await store.daily_by.insert_many(docs[start : start + 1_000])


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


async def month_reports(store: InsightsStore, repeat: int) -> list[tuple[float, float]]:
    """The month's summary, by team, daily trend, by team for one priority (two
    dimensions: a pair slice), and by team for one priority and channel (three: the
    combinations), each timed as the API reads it."""
    end = START + timedelta(days=DAYS)
    return [
        await timed(lambda: store.rollups(START, end, {}, None), repeat),
        await timed(lambda: store.rollups(START, end, {}, "team"), repeat),
        await timed(lambda: store.rollups_per_day(START, end, {}), repeat),
        await timed(lambda: store.rollups(START, end, {"priority": ["P1"]}, "team"), repeat),
        await timed(
            lambda: store.rollups(START, end, {"priority": ["P1"], "channel": ["web"]}, "team"),
            repeat,
        ),
    ]


async def main(cases: list[int], events: int, repeat: int, seed: int) -> None:
    console = Console(width=140)
    with tempfile.TemporaryDirectory() as storage:
        database = devstack.start_database(devstack.free_port(), storage)
        assert database.port is not None
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            devstack.mongo_url(database.port), tz_aware=True
        )
        try:
            stream = ingest_events(events, random.Random(seed))
            store = InsightsStore(client["bench_ingest"])
            await store.ensure_indexes()
            rate = await ingest(store, stream)
            console.print(f"ingest: {rate:,.0f} case events/s folded through InsightsStore.apply")
            scored, signals = await ingest_and_score(client["bench_scored"], stream)
            console.print(
                f"ingest with health scores: {scored:,.0f} case events/s through the "
                f"consumer's handler (fold, then score the customer; {signals} signals)"
            )
            table = Table(title="a month's reports (30 days)")
            for column in ("cases", "combinations", "per case", "summary ms", "by team ms",
                           "daily trend ms", "P1 by team ms", "P1 web by team ms"):  # fmt: skip
                table.add_column(column, justify="right")
            per_case = []
            for count in cases:
                store = InsightsStore(client[f"bench_{count}"])
                await store.ensure_indexes()
                rollups = rollups_of(count, random.Random(seed + count))
                await write_rollups(store, rollups)
                timings = await month_reports(store, repeat)
                per_case.append((count, len(rollups), [median for median, _ in timings]))
                table.add_row(
                    f"{count:,}", f"{len(rollups):,}", f"{len(rollups) / count:.3f}",
                    *(f"{m * 1000:.0f} (max {x * 1000:.0f})" for m, x in timings),
                )  # fmt: skip
            if per_case:
                count, docs, medians = per_case[-1]
                # The first four read the slice rollups (none, one or two dimensions): a
                # month has as many whatever the cases (30 days x the values), so they
                # stay as measured. The last reads the combinations, which grow with the
                # cases (at most linearly: combinations repeat as cases grow): a bound.
                *single, combined = medians
                table.add_row(
                    "1,000,000 (projected)", f"≤ {docs * 1_000_000 / count:,.0f}", "",
                    *(f"≈ {t * 1000:.0f}" for t in single),
                    f"≤ {combined * 1_000_000 / count * 1000:.0f}",
                )  # fmt: skip
            console.print(table)
        finally:
            await client.close()
            database.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.events, args.repeat, args.seed))
