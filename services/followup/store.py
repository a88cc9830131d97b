"""Followup's collections: cases (with their timeline and outbox) and the due queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.followup.domain import DueItem, DueKind
from shared.contracts import EVENT_MODELS
from shared.db import Document, insert_new
from shared.envelope import Event


def outbox_entry(event: Event[Any], queued_at: datetime) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "source": event.source,
        "time": event.time,
        "data": event.data.model_dump(mode="json"),
        "queued_at": queued_at,
    }


def event_from_outbox(entry: dict[str, Any]) -> Event[Any]:
    model = EVENT_MODELS[entry["name"]]
    return Event(
        id=entry["id"],
        source=entry["source"],
        time=entry["time"],
        data=model.model_validate(entry["data"]),
    )


class FollowupStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.cases = db["followup_cases"]
        self.due = db["followup_due"]

    async def ensure_indexes(self) -> None:
        await self.cases.create_index("feedback_id", unique=True)
        await self.cases.create_index([("status", ASCENDING), ("opened_at", DESCENDING)])
        await self.cases.create_index([("team", ASCENDING), ("status", ASCENDING)])
        await self.cases.create_index([("agent", ASCENDING), ("status", ASCENDING)])
        await self.cases.create_index([("opened_at", DESCENDING)])
        await self.cases.create_index("outbox.queued_at", sparse=True)
        await self.due.create_index([("state", ASCENDING), ("due_at", ASCENDING)])
        await self.due.create_index([("case_id", ASCENDING), ("state", ASCENDING)])
        await self.due.create_index([("ref", ASCENDING), ("kind", ASCENDING)])

    # --- cases --------------------------------------------------------------------

    async def create_case(self, case: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Insert the case unless it exists; return what is stored, and whether it is new."""
        before = await self.cases.find_one_and_update(
            {"_id": case["_id"]},
            {"$setOnInsert": case},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return (case, True) if before is None else (before, False)

    async def insert_cases(self, cases: Sequence[dict[str, Any]]) -> set[str]:
        """Insert new cases in one round trip; returns the ids this call created (a case
        that exists already is left as it is)."""
        return await insert_new(self.cases, cases)

    async def find_cases(
        self, filters: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        cursor = (
            self.cases.find(filters, {"outbox": 0})
            .sort([("opened_at", DESCENDING), ("_id", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [doc async for doc in cursor], await self.cases.count_documents(filters)

    async def get(self, case_id: str) -> dict[str, Any] | None:
        return await self.cases.find_one({"_id": case_id})

    async def case_of_callback(self, callback_id: str) -> dict[str, Any] | None:
        item = await self.due.find_one({"ref": callback_id, "kind": "callback"}, {"case_id": 1})
        return None if item is None else await self.get(item["case_id"])

    async def transition(
        self,
        case: dict[str, Any],
        *,
        set_fields: dict[str, Any],
        timeline: list[dict[str, Any]],
        events: Sequence[Event[Any]],
        now: datetime,
        push: dict[str, Any] | None = None,
        inc: dict[str, int] | None = None,
        array_filters: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """Apply a change decided from ``case`` in one atomic update that also queues its
        events in the case's outbox. Only if the case is still the revision the decision
        was made on: None if someone changed it meanwhile (decide again)."""
        pushes: dict[str, Any] = {
            "timeline": {"$each": timeline},
            "outbox": {"$each": [outbox_entry(e, now) for e in events]},
        }
        for name, value in (push or {}).items():
            pushes[name] = {"$each": [value]}
        update: dict[str, Any] = {
            "$push": pushes,
            "$inc": {**(inc or {}), "rev": 1},
        }
        if set_fields:
            update["$set"] = set_fields
        return await self.cases.find_one_and_update(
            {"_id": case["_id"], "rev": case.get("rev", 0)},
            update,
            array_filters=array_filters,
            return_document=ReturnDocument.AFTER,
        )

    async def mark_published(self, case_id: str, event_ids: list[str]) -> None:
        await self.cases.update_one(
            {"_id": case_id}, {"$pull": {"outbox": {"id": {"$in": event_ids}}}}
        )

    async def stale_outboxes(self, older_than: datetime, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self.cases.find({"outbox.queued_at": {"$lte": older_than}}, {"outbox": 1}).limit(
            limit
        )
        return [doc async for doc in cursor]

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
                UpdateOne({"_id": item.id}, {"$setOnInsert": item.document()}, upsert=True)
                for item in items
            ],
            ordered=False,
        )

    async def cancel(
        self,
        case_id: str,
        *,
        kinds: Sequence[DueKind] | None = None,
        refs: Sequence[str] | None = None,
        generation_below: int | None = None,
        generation: int | None = None,
    ) -> int:
        """Cancel pending timed work of a case that no longer needs doing."""
        query: dict[str, Any] = {"case_id": case_id, "state": "pending"}
        if kinds is not None:
            query["kind"] = {"$in": list(kinds)}
        if refs is not None:
            query["ref"] = {"$in": list(refs)}
        if generation_below is not None:
            query["generation"] = {"$lt": generation_below}
        if generation is not None:
            query["generation"] = generation
        result = await self.due.update_many(
            query, {"$set": {"state": "cancelled", "lease_until": None}}
        )
        return int(result.modified_count)

    async def claim_due(self, now: datetime, owner: str, lease_s: float) -> dict[str, Any] | None:
        """Claim one due item atomically with a lease; an item whose lease ran out (its
        claimer died) can be claimed again."""
        return await self.due.find_one_and_update(
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

    async def complete_due(self, item_id: str, owner: str, result: str = "done") -> bool:
        """Mark an item done, if ``owner`` still holds it."""
        outcome = await self.due.update_one(
            {"_id": item_id, "owner": owner, "state": "pending"},
            {"$set": {"state": "done", "result": result, "lease_until": None}},
        )
        return bool(outcome.modified_count)
