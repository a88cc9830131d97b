"""insights' MongoDB collections: the projection of each case and the daily rollups.

``insights_cases`` holds one document per case: its facts (``CaseFacts``, folded from
every event of the case), the fields reports filter and sort on, a revision, and the
rollup deltas not yet added. ``insights_daily`` holds one document per day and
combination of dimensions with the sums of the measures of the cases opened that day;
``insights_daily_by`` the same sums per day and slice (the day's total, each value of
each dimension, each pair of values of two dimensions).

A case's facts and the deltas they cause are written in one update (against the revision
they were folded from); each delta is then added to its rollup once: the rollup keeps the
ids of the deltas it took (the latest ones), and a delta whose id it has is not added
again. A service killed between the two steps leaves the delta pending in the case's
document; the next event of that case, or the sweep, adds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.insights.domain import DIMENSIONS, CaseFacts, day_of, dimensions, fold, rollup_delta
from shared.db import DUPLICATE_KEY, Document, without_entries
from shared.envelope import Event

CASES = "insights_cases"
DAILY = "insights_daily"
# The same sums per day and slice: the day's total ("all"), each dimension's values, and
# each pair of dimensions' values. What reports filtered and grouped on two dimensions at
# most read: a bounded number of documents per day whatever the number of cases.
DAILY_BY = "insights_daily_by"
ALL = "all"
LESSONS = "insights_lessons"
REPORTS = "insights_reports"
# Deltas a rollup remembers having added: far more than can be pending at once.
REMEMBERED_DELTAS = 2_000
FOLD_ATTEMPTS = 20


class CaseKeptChanging(Exception):
    """Another copy changed the case every time this one tried."""


@dataclass(frozen=True)
class Page:
    cases: list[Document]
    next_cursor: str | None


def rollup_id(day: date, dims: Mapping[str, str]) -> str:
    key = json.dumps([day.isoformat(), [dims[d] for d in DIMENSIONS]], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# The slices every delta is added to: no dimension, each one, each pair (29 in all).
SLICES: tuple[tuple[str, ...], ...] = (
    (),
    *((dimension,) for dimension in DIMENSIONS),
    *itertools.combinations(DIMENSIONS, 2),
)


def slice_name(dimensions: Sequence[str]) -> str:
    return "+".join(dimensions) or ALL


def slice_rollups(day: date, dims: Mapping[str, str]) -> list[tuple[str, Document]]:
    """The id and the identifying fields of each slice rollup a case of ``day`` with
    ``dims`` counts in."""
    out = []
    for names in SLICES:
        name = slice_name(names)
        values = {dimension: dims[dimension] for dimension in names}
        key = json.dumps([day.isoformat(), name, list(values.values())], ensure_ascii=False)
        fields = {"day": _start_of(day), "dimension": name, **values}
        out.append((hashlib.sha256(key.encode()).hexdigest()[:32], fields))
    return out


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class InsightsStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.cases: AsyncCollection[Document] = db[CASES]
        self.daily: AsyncCollection[Document] = db[DAILY]
        self.daily_by: AsyncCollection[Document] = db[DAILY_BY]
        self.lessons: AsyncCollection[Document] = db[LESSONS]
        self.reports: AsyncCollection[Document] = db[REPORTS]

    async def ensure_indexes(self) -> None:
        await self.cases.create_index([("opened_at", ASCENDING), ("_id", ASCENDING)])
        await self.cases.create_index([("pending_since", ASCENDING)], sparse=True)
        await self.cases.create_index([("customer_key", ASCENDING), ("opened_at", ASCENDING)])
        for dimension in DIMENSIONS:
            await self.daily.create_index([(dimension, ASCENDING), ("day", ASCENDING)])
        await self.daily.create_index([("day", ASCENDING)])
        await self.daily_by.create_index([("dimension", ASCENDING), ("day", ASCENDING)])
        await self.lessons.create_index([("recorded_at", ASCENDING)])

    # --- the projection --------------------------------------------------------------

    async def apply(self, event: Event[Any], case_id: str, now: datetime) -> bool:
        """Fold ``event`` into its case and add what changes to the rollups. False when
        the case had it already (a redelivery)."""
        for _ in range(FOLD_ATTEMPTS):
            doc = await self.cases.find_one({"_id": case_id})
            before = CaseFacts.model_validate(doc["facts"]) if doc else None
            if before is not None and event.id in before.applied:
                await self.settle(doc)  # a delta left pending by a stop is added now
                return False
            after = fold(before, event)
            deltas = [
                {"id": f"{event.id}/{i}", "day": d.isoformat(), "dims": dims, "measures": m}
                for i, (d, dims, m) in enumerate(rollup_delta(before, after))
            ]
            written = await self._write(case_id, doc, after, deltas, now)
            if written is not None:
                await self.settle(written)
                return True
        raise CaseKeptChanging(case_id)

    async def _write(
        self,
        case_id: str,
        doc: Document | None,
        facts: CaseFacts,
        deltas: list[Document],
        now: datetime,
    ) -> Document | None:
        fields = _query_fields(facts)
        pending = [*(doc or {}).get("pending", []), *deltas]
        update: Document = {
            "facts": facts.model_dump(mode="json"),
            **fields,
            "pending": pending,
            "pending_since": (doc or {}).get("pending_since") or now if pending else None,
            "updated_at": now,
        }
        if doc is None:
            try:
                await self.cases.insert_one({"_id": case_id, "revision": 1, **update})
            except DuplicateKeyError:
                return None  # another copy created it meanwhile: fold again
            return {"_id": case_id, "revision": 1, **update}
        written: Document | None = await self.cases.find_one_and_update(
            {"_id": case_id, "revision": doc["revision"]},
            {"$set": update, "$inc": {"revision": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return written

    async def settle(self, doc: Document | None) -> None:
        """Add the case's pending deltas to their rollups, each once, then drop them."""
        if not doc or not doc.get("pending"):
            return
        # Each rollup update is atomic and checks its own delta id: they may run at once.
        await asyncio.gather(*(self._add(delta) for delta in doc["pending"]))
        ids = [delta["id"] for delta in doc["pending"]]
        await self.cases.update_one(
            {"_id": doc["_id"]}, without_entries("pending", "pending_since", "id", ids)
        )

    async def _add(self, delta: Document) -> None:
        day = date.fromisoformat(delta["day"])
        key = rollup_id(day, delta["dims"])
        await asyncio.gather(self._add_combination(delta, day, key), self._add_slices(delta, day))

    async def _add_combination(self, delta: Document, day: date, key: str) -> None:
        # The rollup exists and has this delta already: the insert of the upsert collides.
        with contextlib.suppress(DuplicateKeyError):
            await self.daily.update_one(
                {"_id": key, "deltas": {"$ne": delta["id"]}},
                {
                    "$inc": delta["measures"],
                    "$push": {"deltas": {"$each": [delta["id"]], "$slice": -REMEMBERED_DELTAS}},
                    "$setOnInsert": {"day": _start_of(day), **delta["dims"]},
                },
                upsert=True,
            )

    async def _add_slices(self, delta: Document, day: date) -> None:
        # To the day's total, each dimension's value and each pair's, in one round trip.
        updates = [
            UpdateOne(
                {"_id": key, "deltas": {"$ne": delta["id"]}},
                {
                    "$inc": delta["measures"],
                    "$push": {"deltas": {"$each": [delta["id"]], "$slice": -REMEMBERED_DELTAS}},
                    "$setOnInsert": fields,
                },
                upsert=True,
            )
            for key, fields in slice_rollups(day, delta["dims"])
        ]
        try:
            await self.daily_by.bulk_write(updates, ordered=False)
        except BulkWriteError as exc:
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details["writeErrors"]):
                raise

    async def settle_pending(self, older_than: datetime, limit: int = 500) -> int:
        """The sweep: add deltas that a stopped copy left pending. Returns the cases done."""
        done = 0
        async for doc in self.cases.find(
            {"pending_since": {"$ne": None, "$lt": older_than}}, limit=limit
        ):
            await self.settle(doc)
            done += 1
        return done

    async def facts(self, case_id: str) -> CaseFacts | None:
        doc = await self.cases.find_one({"_id": case_id}, {"facts": True})
        return CaseFacts.model_validate(doc["facts"]) if doc else None

    async def customer_cases(
        self, customer_key: str, since: datetime | None = None
    ) -> list[CaseFacts]:
        """The customer's cases (opened since ``since``, when given), oldest first."""
        found = await self.customers_cases([customer_key], since)
        return found.get(customer_key, [])

    async def customers_cases(
        self, customer_keys: Sequence[str], since: datetime | None = None
    ) -> dict[str, list[CaseFacts]]:
        """The cases of each of ``customer_keys`` (opened since ``since``), oldest first;
        a customer with none is left out."""
        match: Document = {"customer_key": {"$in": list(customer_keys)}}
        if since is not None:
            match["opened_at"] = {"$gte": since}
        out: dict[str, list[CaseFacts]] = {}
        async for doc in self.cases.find(match, {"facts": True}, batch_size=1_000).sort(
            [("customer_key", ASCENDING), ("opened_at", ASCENDING)]
        ):
            facts = CaseFacts.model_validate(doc["facts"])
            out.setdefault(facts.customer_key, []).append(facts)
        return out

    async def clear(self) -> None:
        """Forget every projection and rollup (before a rebuild from the topics)."""
        await self.cases.delete_many({})
        await self.daily.delete_many({})
        await self.daily_by.delete_many({})

    # --- reports ---------------------------------------------------------------------

    async def rollups(
        self, start: date, end: date, filters: Mapping[str, Sequence[str]], by: str | None
    ) -> dict[str, dict[str, float]]:
        """Sums of every measure per value of ``by`` (or ``"all"``) over the days from
        ``start`` to ``end`` (exclusive), among rollups matching ``filters``. A report on
        two dimensions at most reads the slice rollups, more the combinations."""
        grouped = await self._grouped(start, end, filters, by, per_day=False)
        return {group: sums for (_, group), sums in grouped.items()}

    async def rollups_per_day(
        self, start: date, end: date, filters: Mapping[str, Sequence[str]]
    ) -> dict[date, dict[str, float]]:
        """Sums of every measure per day from ``start`` to ``end`` (exclusive)."""
        grouped = await self._grouped(start, end, filters, None, per_day=True)
        return {day: sums for (day, _), sums in grouped.items() if day is not None}

    async def rollups_per_day_by(
        self, start: date, end: date, filters: Mapping[str, Sequence[str]], by: str
    ) -> dict[date, dict[str, dict[str, float]]]:
        """Sums of every measure per day and value of ``by``."""
        grouped = await self._grouped(start, end, filters, by, per_day=True)
        out: dict[date, dict[str, dict[str, float]]] = {}
        for (day, group), sums in grouped.items():
            if day is not None:
                out.setdefault(day, {})[group] = sums
        return out

    async def _grouped(
        self,
        start: date,
        end: date,
        filters: Mapping[str, Sequence[str]],
        by: str | None,
        *,
        per_day: bool,
    ) -> dict[tuple[date | None, str], dict[str, float]]:
        used = _slice_of(filters, by)
        days = {"$gte": _start_of(start), "$lt": _start_of(end)}
        collection = self.daily if used is None else self.daily_by
        match: Document = {"day": days}
        if used is not None:
            match["dimension"] = slice_name(used)
        for dimension, values in filters.items():
            match[dimension] = {"$in": list(values)}
        totals: dict[tuple[date | None, str], dict[str, float]] = {}
        async for doc in collection.find(match, {"deltas": False}):
            group = ALL if by is None else str(doc.get(by, "none"))
            day = doc["day"].date() if per_day else None
            _sum_into(totals.setdefault((day, group), {}), doc)
        return totals

    async def case_page(
        self,
        start: datetime,
        end: datetime,
        filters: Mapping[str, Sequence[str]],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> Page:
        """Cases opened from ``start`` to ``end``, by opening time then id, from after the
        cursor ``after``: keyset pagination, the same cost on every page."""
        match: Document = {"opened_at": {"$gte": start, "$lt": end}}
        for dimension, values in filters.items():
            match[f"dims.{dimension}"] = {"$in": list(values)}
        if after is not None:
            at, case_id = after
            match["$or"] = [
                {"opened_at": {"$gt": at}},
                {"opened_at": at, "_id": {"$gt": case_id}},
            ]
            match["opened_at"] = {"$gte": max(start, at), "$lt": end}
        docs = [
            doc
            async for doc in self.cases.find(match, {"facts": True, "opened_at": True})
            .sort([("opened_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit + 1)
        ]
        more = len(docs) > limit
        docs = docs[:limit]
        cursor = None
        if more and docs:
            last = docs[-1]
            cursor = encode_cursor(last["opened_at"], last["_id"])
        return Page(cases=[doc["facts"] for doc in docs], next_cursor=cursor)

    async def stream_cases(
        self, start: datetime, end: datetime, filters: Mapping[str, Sequence[str]]
    ) -> AsyncIterator[Document]:
        """Every matching case's facts, by opening time, read in batches."""
        match: Document = {"opened_at": {"$gte": start, "$lt": end}}
        for dimension, values in filters.items():
            match[f"dims.{dimension}"] = {"$in": list(values)}
        async for doc in self.cases.find(match, {"facts": True}, batch_size=500).sort(
            [("opened_at", ASCENDING), ("_id", ASCENDING)]
        ):
            yield doc["facts"]

    async def texts(
        self, start: datetime, end: datetime, filters: Mapping[str, Sequence[str]], most: int
    ) -> dict[str, list[tuple[str, str]]]:
        """(case id, text) of the cases opened from ``start`` to ``end`` per root cause,
        the ``most`` most recent of each."""
        match: Document = {"opened_at": {"$gte": start, "$lt": end}}
        for dimension, values in filters.items():
            match[f"dims.{dimension}"] = {"$in": list(values)}
        out: dict[str, list[tuple[str, str]]] = {}
        fields = {"facts.text": True, "dims.root_cause": True}
        async for doc in self.cases.find(match, fields, batch_size=1_000).sort(
            [("opened_at", DESCENDING), ("_id", ASCENDING)]
        ):
            texts = out.setdefault(doc["dims"]["root_cause"], [])
            if len(texts) < most and doc["facts"].get("text"):
                texts.append((doc["_id"], doc["facts"]["text"]))
        return out

    # --- lessons ----------------------------------------------------------------------

    async def record_lesson(
        self, facts: CaseFacts, lesson: str, by: str, now: datetime
    ) -> Document:
        """The lesson an agent draws from a case (one per case: a new one replaces it)."""
        doc: Document = {
            "_id": facts.case_id,
            "lesson": lesson,
            "by": by,
            "recorded_at": now,
            "root_cause": dimensions(facts)["root_cause"],
            "team": dimensions(facts)["team"],
        }
        await self.lessons.replace_one({"_id": facts.case_id}, doc, upsert=True)
        return doc

    async def lesson(self, case_id: str) -> Document | None:
        found: Document | None = await self.lessons.find_one({"_id": case_id})
        return found

    async def lessons_between(
        self, start: datetime, end: datetime, filters: Mapping[str, Sequence[str]]
    ) -> list[Document]:
        """Lessons recorded from ``start`` to ``end``, by cause then time."""
        match: Document = {"recorded_at": {"$gte": start, "$lt": end}}
        for dimension in ("root_cause", "team"):
            if dimension in filters:
                match[dimension] = {"$in": list(filters[dimension])}
        return [
            doc
            async for doc in self.lessons.find(match).sort(
                [("root_cause", ASCENDING), ("recorded_at", ASCENDING)]
            )
        ]

    # --- weekly reports ---------------------------------------------------------------

    async def report_published(self, week: str) -> bool:
        return await self.reports.find_one({"_id": week}, {"_id": True}) is not None

    async def mark_published(self, week: str, event_id: str, now: datetime) -> None:
        await self.reports.update_one(
            {"_id": week},
            {"$setOnInsert": {"event_id": event_id, "published_at": now}},
            upsert=True,
        )

    async def latest_opened(self) -> datetime | None:
        doc = await self.cases.find_one(
            {"opened_at": {"$ne": None}}, {"opened_at": True}, sort=[("opened_at", DESCENDING)]
        )
        return doc["opened_at"] if doc else None


_NOT_MEASURES = frozenset({"_id", "day", "dimension", "deltas", *DIMENSIONS})


def _sum_into(sums: dict[str, float], doc: Document) -> None:
    for name, value in doc.items():
        if name not in _NOT_MEASURES and isinstance(value, int | float):
            sums[name] = sums.get(name, 0.0) + value


def _slice_of(filters: Mapping[str, Sequence[str]], by: str | None) -> tuple[str, ...] | None:
    """The slice a report reads (the dimensions it filters or groups on, two at most),
    or None when it uses more and needs the combinations."""
    used = set(filters) | ({by} if by else set())
    if len(used) > 2:
        return None
    return tuple(dimension for dimension in DIMENSIONS if dimension in used)


def _query_fields(facts: CaseFacts) -> Document:
    day = day_of(facts)
    return {
        "customer_key": facts.customer_key,
        "opened_at": facts.opened_at,
        "day": _start_of(day) if day else None,
        "dims": dimensions(facts),
    }


def encode_cursor(opened_at: datetime, case_id: str) -> str:
    return f"{opened_at.astimezone(UTC).isoformat()}|{case_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (opening time, case id) a cursor stands for; ValueError if it is not one."""
    at, sep, case_id = cursor.partition("|")
    if not sep or not case_id:
        raise ValueError("not a cursor of this report")
    return datetime.fromisoformat(at).astimezone(UTC), case_id
