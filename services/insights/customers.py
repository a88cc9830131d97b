"""Customers' standing: each customer's health score as last taken, whether insights
told them at risk, and the customer.signals events it owes.

``insights_customers`` holds one document per customer key: the score and its reasons,
the customer's identifiers and tier from their latest feedback, the standing (at risk,
crossings so far), when to score again, a revision, and the signals not yet published
(the outbox). ``insights_signals`` keeps every published signal, for the report page.

A score that crosses a threshold is written with its signal in one update, against the
revision the score was taken on, so a crossing is decided once however many copies score
the customer at once. The signal is then published and marked; a copy stopped between
the two leaves it in the outbox, and the customer's next scoring or the sweep publishes
it, with the same event id (derived from the customer and the crossing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.insights.loyalty import (
    Standing,
    decide_signal,
    health,
    settled_score,
    standing_after,
)
from services.insights.metrics import CUSTOMER_SIGNALS, CUSTOMERS_SCORED
from services.insights.policy import LoyaltyPolicy
from services.insights.store import InsightsStore
from shared.contracts import EVENT_MODELS, CustomerSignal
from shared.db import Document, without_entries
from shared.envelope import Event, new_event

log = logging.getLogger(__name__)

CUSTOMERS = "insights_customers"
SIGNALS = "insights_signals"
SOURCE = "/closeloop/insights"
SCORE_ATTEMPTS = 20

Publish = Callable[[Sequence[Event[Any]]], Awaitable[None]]


class CustomerKeptChanging(Exception):
    """Another copy changed the customer's standing every time this one tried."""


@dataclass(frozen=True)
class Worklist:
    customers: list[Document]
    next_cursor: str | None


def signal_event(signal: CustomerSignal) -> Event[CustomerSignal]:
    """The event of a crossing: its id derived from the customer and the crossing."""
    cause = f"customer.signals/{signal.customer_key}/{signal.crossing}"
    return new_event(signal, source=SOURCE, cause=cause, time=signal.occurred_at)


def outbox_entry(event: Event[CustomerSignal]) -> Document:
    return {
        "event_id": event.id,
        "name": event.name,
        "time": event.time,
        "data": event.data.model_dump(mode="json"),
    }


def event_of(entry: Mapping[str, Any]) -> Event[CustomerSignal]:
    model = EVENT_MODELS[entry["name"]]
    data = model.model_validate(entry["data"])
    assert isinstance(data, CustomerSignal)
    return Event(id=entry["event_id"], source=SOURCE, time=entry["time"], data=data)


class Customers:
    """The customers' standing, scored from insights' cases."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        cases: InsightsStore,
        policy: LoyaltyPolicy,
        publish: Publish,
        rescore_every: timedelta,
    ) -> None:
        self.customers: AsyncCollection[Document] = db[CUSTOMERS]
        self.signals: AsyncCollection[Document] = db[SIGNALS]
        self.cases = cases
        self.policy = policy
        self.publish = publish
        self.rescore_every = rescore_every

    async def ensure_indexes(self) -> None:
        await self.customers.create_index(
            [("at_risk", ASCENDING), ("score", ASCENDING), ("_id", ASCENDING)]
        )
        await self.customers.create_index([("rescore_at", ASCENDING)], sparse=True)
        await self.customers.create_index([("outbox_since", ASCENDING)], sparse=True)
        await self.signals.create_index([("at", ASCENDING)])
        await self.signals.create_index([("customer_key", ASCENDING), ("at", ASCENDING)])

    # --- scoring -----------------------------------------------------------------------

    async def score(self, customer_key: str, now: datetime, why: str) -> Document:
        """Take the customer's score now, note a crossing, publish what is owed."""
        for _ in range(SCORE_ATTEMPTS):
            doc = await self.customers.find_one({"_id": customer_key})
            cases = await self.cases.customer_cases(customer_key, now - self.policy.horizon)
            now_health = health(cases, now, self.policy)
            standing = Standing(
                at_risk=bool(doc and doc["at_risk"]), crossing=int(doc["crossing"]) if doc else 0
            )
            signal = decide_signal(customer_key, standing, now_health, self.policy)
            after = standing_after(standing, signal)
            latest = max(
                (c for c in cases if c.customer is not None),
                key=lambda c: c.customer_stamp or (now, ""),
                default=None,
            )
            fields: Document = {
                "score": now_health.score,
                "tier": now_health.tier.value,
                "reasons": [reason.model_dump() for reason in now_health.reasons()],
                "open_case_ids": list(now_health.open_case_ids),
                "scored_at": now,
                "rescore_at": None
                if settled_score(now_health.score, self.policy)
                else now + self.rescore_every,
                "at_risk": after.at_risk,
                "crossing": after.crossing,
            }
            if latest is not None and latest.customer is not None:
                fields["customer"] = latest.customer.model_dump(mode="json")
            entries = [] if signal is None else [outbox_entry(signal_event(signal))]
            if signal is not None:
                fields["since"] = now
            written = await self._write(customer_key, doc, fields, entries, now)
            if written is not None:
                CUSTOMERS_SCORED.labels(why).inc()
                await self.relay(written)
                return written
        raise CustomerKeptChanging(customer_key)

    async def _write(
        self,
        customer_key: str,
        doc: Document | None,
        fields: Document,
        entries: list[Document],
        now: datetime,
    ) -> Document | None:
        outbox = [*(doc or {}).get("outbox", []), *entries]
        fields = {
            **fields,
            "outbox": outbox,
            "outbox_since": ((doc or {}).get("outbox_since") or now) if outbox else None,
        }
        if doc is None:
            new = {"_id": customer_key, "revision": 1, **fields}
            try:
                await self.customers.insert_one(new)
            except DuplicateKeyError:
                return None  # another copy scored them first: score again
            return new
        written: Document | None = await self.customers.find_one_and_update(
            {"_id": customer_key, "revision": doc["revision"]},
            {"$set": fields, "$inc": {"revision": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return written

    async def relay(self, doc: Document) -> int:
        """Publish the customer's signals still in the outbox, then drop them."""
        entries = doc.get("outbox") or []
        if not entries:
            return 0
        events = [event_of(entry) for entry in entries]
        await self.publish(events)
        for event in events:
            CUSTOMER_SIGNALS.labels(event.name).inc()
            await self.signals.replace_one({"_id": event.id}, _signal_doc(event), upsert=True)
            log.info(
                "customer signal published",
                extra={
                    "customer_key": event.data.customer_key,
                    "signal": event.name,
                    "score": event.data.score,
                },
            )
        ids = [entry["event_id"] for entry in entries]
        await self.customers.update_one(
            {"_id": doc["_id"]}, without_entries("outbox", "outbox_since", "event_id", ids)
        )
        return len(events)

    async def sweep(self, now: datetime, outbox_after: timedelta, limit: int = 200) -> int:
        """Publish signals a stopped copy left behind; score again the customers whose
        score decays (a crossing may come from time alone). Returns the customers done."""
        done = 0
        async for doc in self.customers.find(
            {"outbox_since": {"$ne": None, "$lt": now - outbox_after}}, limit=limit
        ):
            await self.relay(doc)
            done += 1
        async for doc in self.customers.find(
            {"rescore_at": {"$ne": None, "$lte": now}}, {"_id": True}, limit=limit
        ):
            await self.score(doc["_id"], now, "decay")
            done += 1
        return done

    # --- reading -----------------------------------------------------------------------

    async def standing(self, customer_key: str) -> Document | None:
        found: Document | None = await self.customers.find_one(
            {"_id": customer_key}, {"outbox": False}
        )
        return found

    async def at_risk_count(self) -> int:
        return await self.customers.count_documents({"at_risk": True})

    async def worklist(
        self,
        at_risk: bool | None,
        order: str,
        after: tuple[float, str] | str | None,
        limit: int,
    ) -> Worklist:
        """Customers by score (lowest first) then key, or by key: keyset pages."""
        match: Document = {} if at_risk is None else {"at_risk": at_risk}
        if order == "score":
            sort = [("score", ASCENDING), ("_id", ASCENDING)]
            if isinstance(after, tuple):
                score, key = after
                match["$or"] = [{"score": {"$gt": score}}, {"score": score, "_id": {"$gt": key}}]
        else:
            sort = [("_id", ASCENDING)]
            if isinstance(after, str):
                match["_id"] = {"$gt": after}
        docs = [
            doc
            async for doc in self.customers.find(match, {"outbox": False})
            .sort(sort)
            .limit(limit + 1)
        ]
        more = len(docs) > limit
        docs = docs[:limit]
        cursor = None
        if more and docs:
            last = docs[-1]
            cursor = f"{last['score']!r}|{last['_id']}" if order == "score" else str(last["_id"])
        return Worklist(customers=docs, next_cursor=cursor)

    async def stream(self, at_risk: bool | None) -> Any:
        match: Document = {} if at_risk is None else {"at_risk": at_risk}
        async for doc in self.customers.find(match, {"outbox": False}, batch_size=500).sort(
            [("score", ASCENDING), ("_id", ASCENDING)]
        ):
            yield doc

    async def signals_of(self, customer_key: str) -> list[Document]:
        return [
            doc
            async for doc in self.signals.find({"customer_key": customer_key}).sort(
                [("at", ASCENDING), ("_id", ASCENDING)]
            )
        ]

    async def signals_between(self, start: datetime, end: datetime) -> list[Document]:
        return [
            doc
            async for doc in self.signals.find({"at": {"$gte": start, "$lt": end}}).sort(
                [("at", DESCENDING)]
            )
        ]

    async def at_risk_reasons(self, most: int = 1_000) -> list[list[Document]]:
        """The reasons of the at-risk customers (the lowest scores first)."""
        return [
            doc.get("reasons", [])
            async for doc in self.customers.find({"at_risk": True}, {"reasons": True})
            .sort([("score", ASCENDING)])
            .limit(most)
        ]


def _signal_doc(event: Event[CustomerSignal]) -> Document:
    data = event.data
    return {
        "_id": event.id,
        "customer_key": data.customer_key,
        "event": event.name,
        "crossing": data.crossing,
        "at": data.occurred_at,
        "score": data.score,
        "tier": data.customer_tier.value,
        "reasons": [reason.model_dump() for reason in data.reasons],
        "open_case_ids": data.open_case_ids,
    }


def decode_worklist_cursor(cursor: str, order: str) -> tuple[float, str] | str:
    """What a worklist cursor stands for; ValueError if it is not one of that order."""
    if order != "score":
        return cursor
    score, sep, key = cursor.partition("|")
    if not sep or not key:
        raise ValueError("not a cursor of this list")
    return float(score), key
