"""MongoDB access through PyMongo's native async API (``AsyncMongoClient``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from shared.metrics import DB_COMMANDS, DB_SECONDS
from shared.settings import ServiceSettings

Document = dict[str, Any]
DUPLICATE_KEY = 11000

# Driver housekeeping, not work done for an event.
_HOUSEKEEPING = frozenset(
    {
        "hello",
        "ismaster",
        "isMaster",
        "ping",
        "endSessions",
        "saslStart",
        "saslContinue",
        "buildInfo",
        "getLastError",
    }
)


class CommandCounter(monitoring.CommandListener):
    """Counts every database round trip by command, through PyMongo's command monitoring."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._record(event.command_name, "ok", event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._record(event.command_name, "error", event.duration_micros)

    @staticmethod
    def _record(command: str, outcome: str, micros: int) -> None:
        if command in _HOUSEKEEPING:
            return
        DB_COMMANDS.labels(command, outcome).inc()
        DB_SECONDS.labels(command).observe(micros / 1_000_000)


def connect(settings: ServiceSettings, app_name: str) -> AsyncMongoClient[Document]:
    """A client for the configured server; it connects lazily and reconnects by itself."""
    return AsyncMongoClient(
        settings.mongo_url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        event_listeners=[CommandCounter()],
    )


async def ping(db: AsyncDatabase[Document], timeout_s: float = 2.0) -> bool:
    try:
        await asyncio.wait_for(db.command("ping"), timeout=timeout_s)
    except (PyMongoError, TimeoutError):
        return False
    return True


async def insert_new(collection: AsyncCollection[Document], docs: Sequence[Document]) -> set[Any]:
    """Insert documents in one round trip, leaving those whose ``_id`` exists already as
    they are; returns the ids this call created."""
    if not docs:
        return set()
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        duplicates = {int(error["index"]) for error in errors}
        return {doc["_id"] for i, doc in enumerate(docs) if i not in duplicates}
    return {doc["_id"] for doc in docs}


def without_entries(entries: str, since: str, key: str, ids: Sequence[str]) -> list[Document]:
    """An update pipeline that drops the entries of the array ``entries`` whose ``key`` is
    one of ``ids`` (an outbox's published events, a case's added deltas), and clears the
    timestamp ``since`` once the array is empty. Entries added meanwhile stay."""
    left = {
        "$filter": {"input": f"${entries}", "cond": {"$not": [{"$in": [f"$$this.{key}", ids]}]}}
    }
    empty = {"$eq": [{"$size": f"${entries}"}, 0]}
    return [{"$set": {entries: left}}, {"$set": {since: {"$cond": [empty, None, f"${since}"]}}}]
