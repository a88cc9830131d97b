"""Followup's collections: cases (with their timeline and outbox) and the due queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import EVENT_MODELS
from shared.db import Document
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
        await self.cases.create_index([("status", ASCENDING), ("opened_at", ASCENDING)])
        await self.cases.create_index([("team", ASCENDING), ("status", ASCENDING)])
        await self.cases.create_index([("agent", ASCENDING), ("status", ASCENDING)])
        await self.cases.create_index([("opened_at", ASCENDING)])
        await self.cases.create_index("outbox.queued_at", sparse=True)
        await self.due.create_index([("state", ASCENDING), ("due_at", ASCENDING)])
        await self.due.create_index("case_id")

    async def create_case(self, case: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Insert the case unless it exists; return what is stored, and whether it is new."""
        before = await self.cases.find_one_and_update(
            {"_id": case["_id"]},
            {"$setOnInsert": case},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return (case, True) if before is None else (before, False)

    async def schedule(self, case_id: str, callback: dict[str, Any]) -> None:
        await self.due.update_one(
            {"_id": callback["callback_id"]},
            {
                "$setOnInsert": {
                    "case_id": case_id,
                    "kind": "callback",
                    "due_at": callback["due_at"],
                    "attempt": callback["attempt"],
                    "state": "pending",
                    "lease_until": None,
                    "owner": None,
                }
            },
            upsert=True,
        )

    async def find_cases(
        self, filters: dict[str, Any], *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        cursor = self.cases.find(filters).sort("opened_at", -1).skip(offset).limit(limit)
        return [doc async for doc in cursor], await self.cases.count_documents(filters)

    async def get(self, case_id: str) -> dict[str, Any] | None:
        return await self.cases.find_one({"_id": case_id})

    async def transition(
        self,
        case_id: str,
        *,
        from_statuses: Sequence[str],
        set_fields: dict[str, Any],
        timeline: list[dict[str, Any]],
        events: list[Event[Any]],
        now: datetime,
        push: dict[str, Any] | None = None,
        inc: dict[str, int] | None = None,
        array_filters: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """Move a case between statuses in one atomic update that also queues its
        events in the case's outbox; None if the case was not in ``from_statuses``."""
        update: dict[str, Any] = {
            "$set": set_fields,
            "$push": {
                "timeline": {"$each": timeline},
                "outbox": {"$each": [outbox_entry(e, now) for e in events]},
                **(push or {}),
            },
        }
        if inc:
            update["$inc"] = inc
        return await self.cases.find_one_and_update(
            {"_id": case_id, "status": {"$in": list(from_statuses)}},
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

    async def claim_due(self, now: datetime, owner: str, lease_s: float) -> dict[str, Any] | None:
        """Claim one due item atomically with a lease; an item whose lease ran out (its
        claimer died) can be claimed again."""
        return await self.due.find_one_and_update(
            {
                "state": "pending",
                "due_at": {"$lte": now},
                "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}],
            },
            {"$set": {"lease_until": now + timedelta(seconds=lease_s), "owner": owner}},
            sort=[("due_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def complete_due(self, item_id: str, owner: str) -> None:
        await self.due.update_one(
            {"_id": item_id, "owner": owner}, {"$set": {"state": "done", "lease_until": None}}
        )
