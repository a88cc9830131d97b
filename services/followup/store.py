"""Followup's collections: cases (with their timeline and outbox) and the due queue.

The only module that knows how a case is stored: it turns documents into typed cases
and back, and writes a decision as one conditional update (shared/outbox.py) that
also queues the decision's events in the case's outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.followup.decisions import Decision
from services.followup.domain import Cancel, Case, DueItem
from shared.clock import utcnow
from shared.db import Document, insert_new
from shared.outbox import OUTBOX, REVISION, Outbox, Send, new_document

# Stored as the events carry them (JSON), so they read back as the contracts they are.
AS_JSON = ("feedback", "classification", "routing")


# --- documents ------------------------------------------------------------------------


def to_document(case: Case) -> Document:
    """The stored form of a case (without its outbox, which only the outbox writes)."""
    doc = case.model_dump(by_alias=True, exclude={"outbox"})
    for name in AS_JSON:
        doc[name] = getattr(case, name).model_dump(mode="json")
    return doc


def from_document(doc: Mapping[str, Any]) -> Case:
    return Case.model_validate(doc)


def _outbox_of(case: Case) -> Document:
    return {"_id": case.id, OUTBOX: [queued.model_dump() for queued in case.outbox]}


def delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The update operators that turn document ``before`` into ``after``: what a list
    gained at its end is pushed, a changed sub-document is set key by key, anything else
    that changed is set."""
    sets: dict[str, Any] = {}
    pushes: dict[str, Any] = {}
    unsets: dict[str, Any] = {}
    for name, value in after.items():
        if name in ("_id", REVISION, OUTBOX):
            continue
        old = before.get(name)
        if name in before and old == value:
            continue
        if isinstance(value, list) and isinstance(old, list) and value[: len(old)] == old:
            pushes[name] = {"$each": value[len(old) :]}
        elif isinstance(value, dict) and isinstance(old, dict):
            for key, item in value.items():
                if key not in old or old[key] != item:
                    sets[f"{name}.{key}"] = item
            for key in old.keys() - value.keys():
                unsets[f"{name}.{key}"] = ""
        else:
            sets[name] = value
    update: dict[str, dict[str, Any]] = {}
    for op, fields in (("$set", sets), ("$push", pushes), ("$unset", unsets)):
        if fields:
            update[op] = fields
    return update


def due_document(item: DueItem) -> Document:
    return {
        "_id": item.id,
        "case_id": item.case_id,
        "kind": item.kind,
        "ref": item.ref,
        "generation": item.generation,
        "due_at": item.due_at,
        "state": "pending",
        "lease_until": None,
        "owner": None,
    }


def due_item_of(doc: Mapping[str, Any]) -> DueItem:
    return DueItem(
        doc["case_id"], doc["kind"], doc["ref"], doc["due_at"], int(doc.get("generation", 0))
    )


@dataclass(frozen=True)
class Claim:
    """A due item one copy holds, with a lease, until it completes it."""

    id: str
    item: DueItem
    owner: str
    claims: int


class FollowupStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.cases = db["followup_cases"]
        self.due = db["followup_due"]
        self.outbox = Outbox(self.cases)

    async def ensure_indexes(self) -> None:
        await self.cases.create_index("feedback_id", unique=True)
        await self.cases.create_index([("status", ASCENDING), ("opened_at", DESCENDING)])
        await self.cases.create_index([("team", ASCENDING), ("status", ASCENDING)])
        await self.cases.create_index([("agent", ASCENDING), ("status", ASCENDING)])
        await self.cases.create_index([("opened_at", DESCENDING)])
        await self.outbox.ensure_indexes()
        await self.due.create_index([("state", ASCENDING), ("due_at", ASCENDING)])
        await self.due.create_index([("case_id", ASCENDING), ("state", ASCENDING)])
        await self.due.create_index([("ref", ASCENDING), ("kind", ASCENDING)])

    # --- cases --------------------------------------------------------------------

    async def get(self, case_id: str) -> Case | None:
        doc = await self.cases.find_one({"_id": case_id})
        return None if doc is None else from_document(doc)

    async def case_of_callback(self, callback_id: str) -> Case | None:
        item = await self.due.find_one({"ref": callback_id, "kind": "callback"}, {"case_id": 1})
        return None if item is None else await self.get(item["case_id"])

    async def find_cases(
        self, filters: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[list[Case], int]:
        cursor = (
            self.cases.find(filters, {"outbox": 0})
            .sort([("opened_at", DESCENDING), ("_id", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        cases = [from_document(doc) async for doc in cursor]
        return cases, await self.cases.count_documents(filters)

    async def apply(self, decision: Decision) -> Case | None:
        """Write ``decision``: its timed work first, then the change and its events in one
        update, only if the case is still the revision it was decided on (a new case:
        only if it does not exist yet), then the cancellations. The case as written, or
        None if the case changed meanwhile (decide again)."""
        case = decision.case
        if case is None:
            raise ValueError("a refusal writes nothing")
        await self.schedule(decision.schedule)
        if not decision.writes:
            return case
        now = utcnow()
        if decision.base is None:
            doc = new_document(to_document(case), (), now)
            return from_document(doc) if await insert_new(self.cases, [doc]) else None
        written = await self.outbox.write(
            case.id,
            decision.base.rev,
            delta(to_document(decision.base), to_document(case)),
            decision.events,
            now,
        )
        if written is None:
            return None
        for cancel in decision.cancel:
            await self.cancel(case.id, cancel)
        return from_document(written)

    async def apply_many(self, decisions: Sequence[Decision]) -> set[str]:
        """Open the cases of many decisions in two round trips: insert those not stored
        yet, then schedule the timed work of those this call created. Returns their ids.
        A crash between the two leaves a case without timers; its redelivery finds the
        case and schedules them (a repeat's decision)."""
        if any(d.base is not None or d.case is None for d in decisions):
            raise ValueError("apply_many opens new cases only")
        now = utcnow()
        docs = [new_document(to_document(d.case), (), now) for d in decisions if d.case]
        created: set[str] = await insert_new(self.cases, docs)
        await self.schedule(
            [
                item
                for d in decisions
                if d.case is not None and d.case.id in created
                for item in d.schedule
            ]
        )
        return created

    async def publish(self, case: Case, publish: Send) -> bool:
        """Send what the case's outbox holds and drop it; False (left for the relay)
        if the broker is unavailable."""
        if not case.outbox:
            return True
        return await self.outbox.publish(_outbox_of(case), publish)

    async def relay(self, publish: Send, older_than: datetime) -> int:
        """Send outbox entries queued before ``older_than`` that nobody published."""
        return await self.outbox.relay(older_than, publish)

    async def count_by_status(self) -> dict[str, int]:
        pipeline = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        return {doc["_id"]: int(doc["n"]) async for doc in await self.cases.aggregate(pipeline)}

    async def count_overdue_callbacks(self, cutoff: datetime) -> int:
        """Callbacks without an outcome whose due time is before ``cutoff``."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"status": {"$ne": "closed"}}},
            {"$project": {"callback": {"$objectToArray": "$callbacks"}}},
            {"$unwind": "$callback"},
            {
                "$match": {
                    "callback.v.status": {"$in": ["scheduled", "due"]},
                    "callback.v.due_at": {"$lte": cutoff},
                }
            },
            {"$count": "n"},
        ]
        async for doc in await self.cases.aggregate(pipeline):
            return int(doc["n"])
        return 0

    # --- the due queue --------------------------------------------------------------

    async def schedule(self, items: Sequence[DueItem]) -> None:
        """Add timed work; an item that exists already is left as it is."""
        if not items:
            return
        await self.due.bulk_write(
            [
                UpdateOne({"_id": item.id}, {"$setOnInsert": due_document(item)}, upsert=True)
                for item in items
            ],
            ordered=False,
        )

    async def cancel(self, case_id: str, cancel: Cancel) -> int:
        """Cancel pending timed work of a case that no longer needs doing."""
        query: dict[str, Any] = {"case_id": case_id, "state": "pending"}
        if cancel.kinds is not None:
            query["kind"] = {"$in": list(cancel.kinds)}
        if cancel.refs is not None:
            query["ref"] = {"$in": list(cancel.refs)}
        if cancel.generation_below is not None:
            query["generation"] = {"$lt": cancel.generation_below}
        if cancel.generation is not None:
            query["generation"] = cancel.generation
        result = await self.due.update_many(
            query, {"$set": {"state": "cancelled", "lease_until": None}}
        )
        return int(result.modified_count)

    async def claim_due(self, now: datetime, owner: str, lease_s: float) -> Claim | None:
        """Claim one due item atomically with a lease; an item whose lease ran out (its
        claimer died) can be claimed again."""
        doc = await self.due.find_one_and_update(
            {
                "state": "pending",
                "due_at": {"$lte": now},
                "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}],
            },
            {
                "$set": {"lease_until": now + timedelta(seconds=lease_s), "owner": owner},
                "$inc": {"claims": 1},
            },
            sort=[("due_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return Claim(doc["_id"], due_item_of(doc), doc["owner"], int(doc.get("claims", 0)))

    async def complete_due(self, item_id: str, owner: str, result: str = "done") -> bool:
        """Mark an item done, if ``owner`` still holds it."""
        outcome = await self.due.update_one(
            {"_id": item_id, "owner": owner, "state": "pending"},
            {"$set": {"state": "done", "result": result, "lease_until": None}},
        )
        return bool(outcome.modified_count)
