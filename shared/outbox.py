"""Versioned documents with an outbox: the one way a service changes state and emits
the events the change causes.

A change is decided from one revision of a document (no I/O) and written by one
conditional update that also queues the change's events in the document's ``outbox``
array and raises its revision: either both land or neither does. The writer then
publishes the queued events and pulls them from the outbox; if the broker is down, the
relay publishes them later, always under the same event ids. If the document changed
meanwhile, nothing is written and the caller decides again on the new revision
(:func:`until_applied`), so two copies of a service, two agents or a timer and an agent
never both win.

The outbox entry keeps the whole event (id, type, source, time, data), so any copy of
the service can publish it after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from shared.contracts import EVENT_MODELS
from shared.db import Document
from shared.envelope import Event
from shared.errors import BrokerUnavailable

log = logging.getLogger(__name__)

REVISION = "rev"
OUTBOX = "outbox"
ATTEMPTS = 8

T = TypeVar("T")
# Publishes events and returns once the broker has them (EventProducer.publish).
Send = Callable[[Sequence[Event[Any]]], Awaitable[None]]


class Conflict(Exception):
    """The document kept changing under every decision made on it; try again later."""


def entry_of(event: Event[Any], queued_at: datetime) -> Document:
    """An outbox entry: the whole event, and when it was queued (for the relay)."""
    return {
        "id": event.id,
        "name": event.name,
        "source": event.source,
        "time": event.time,
        "data": event.data.model_dump(mode="json"),
        "queued_at": queued_at,
    }


def event_of(entry: Mapping[str, Any]) -> Event[Any]:
    model = EVENT_MODELS[entry["name"]]
    return Event(
        id=entry["id"],
        source=entry["source"],
        time=entry["time"],
        data=model.model_validate(entry["data"]),
    )


def queued_events(doc: Mapping[str, Any]) -> list[Event[Any]]:
    return [event_of(entry) for entry in doc.get(OUTBOX) or []]


def with_outbox(
    update: Mapping[str, Any], events: Sequence[Event[Any]], now: datetime
) -> dict[str, Any]:
    """``update`` (MongoDB update operators) plus the revision bump and the events queued."""
    result = {op: dict(fields) for op, fields in update.items()}
    result.setdefault("$inc", {})[REVISION] = 1
    if events:
        pushes = result.setdefault("$push", {})
        pushes[OUTBOX] = {"$each": [entry_of(e, now) for e in events]}
    return result


def new_document(doc: Mapping[str, Any], events: Sequence[Event[Any]], now: datetime) -> Document:
    """A document to insert at revision 1 with its first events queued."""
    return {**doc, REVISION: 1, OUTBOX: [entry_of(e, now) for e in events]}


class Outbox:
    """One collection of versioned documents whose changes queue events."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def ensure_indexes(self) -> None:
        await self.collection.create_index(f"{OUTBOX}.queued_at", sparse=True)

    async def write(
        self,
        doc_id: Any,
        revision: int,
        update: Mapping[str, Any],
        events: Sequence[Event[Any]],
        now: datetime,
        *,
        only_if: Mapping[str, Any] | None = None,
        array_filters: list[Mapping[str, Any]] | None = None,
        projection: Mapping[str, Any] | None = None,
    ) -> Document | None:
        """Apply ``update`` and queue ``events`` if the document is still at ``revision``
        (and matches ``only_if``); the document after the change, or None if it changed
        meanwhile (decide again)."""
        written: Document | None = await self.collection.find_one_and_update(
            {"_id": doc_id, REVISION: revision, **(only_if or {})},
            with_outbox(update, events, now),
            array_filters=array_filters,
            projection=projection,
            return_document=ReturnDocument.AFTER,
        )
        return written

    async def publish(self, doc: Mapping[str, Any], send: Send) -> bool:
        """Publish what ``doc``'s outbox holds with ``send`` and pull it; False (left for
        the relay) if the broker is unavailable."""
        entries = doc.get(OUTBOX) or []
        if not entries:
            return True
        try:
            await send([event_of(entry) for entry in entries])
        except BrokerUnavailable as exc:
            log.warning(
                "events left in the outbox for the relay: %s", exc, extra={"id": doc["_id"]}
            )
            return False
        await self.settle(doc["_id"], [entry["id"] for entry in entries])
        return True

    async def settle(self, doc_id: Any, event_ids: Sequence[str]) -> None:
        """Drop published entries (by id: entries queued since stay)."""
        await self.collection.update_one(
            {"_id": doc_id}, {"$pull": {OUTBOX: {"id": {"$in": list(event_ids)}}}}
        )

    async def relay(self, older_than: datetime, send: Send, limit: int = 100) -> int:
        """Publish entries queued before ``older_than`` that nobody published (their
        writer stopped or the broker was down); returns the documents relayed."""
        cursor = self.collection.find(
            {f"{OUTBOX}.queued_at": {"$lte": older_than}}, {OUTBOX: 1}
        ).limit(limit)
        relayed = 0
        async for doc in cursor:
            if await self.publish(doc, send):
                relayed += 1
        return relayed


async def until_applied(
    attempt: Callable[[], Awaitable[T | None]], *, what: str, attempts: int = ATTEMPTS
) -> T:
    """Run ``attempt`` (load, decide, write) until it returns something other than None,
    which it does when its write applied or it decided to write nothing."""
    for _ in range(attempts):
        result = await attempt()
        if result is not None:
            return result
    raise Conflict(f"{what} keeps changing; try again")
