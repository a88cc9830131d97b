"""Where the ``limits`` package counts: rate limits, failed attempts and seen signatures.

By default in the service's own MongoDB, so that every copy counts together and a
restart forgets nothing. The ``limits`` package's own async MongoDB storage is built on
Motor, which MongoDB deprecated in favour of PyMongo's async API (and which is not a
dependency), so ``async+mongodb://`` URIs get ``MongoStorage`` below instead. Other
async storages of ``limits`` (``async+memory://``, ``async+redis://`` with its client
installed, ...) are used as they are.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many
from limits.aio.storage import SlidingWindowCounterSupport, Storage
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.storage.base import TimestampedSlidingWindow
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

MONGODB_SCHEMES = ("async+mongodb", "async+mongodb+srv")
COLLECTION = "rate_limits"
DEFAULT_DATABASE = "closeloop"

Counters = AsyncCollection[dict[str, Any]]


class MongoStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """A ``limits`` storage in one MongoDB collection of counters ``{_id, count,
    expireAt}``, expired by a TTL index. Fixed windows are one counter; sliding windows
    two (this window's and the previous one's), read in one round trip."""

    STORAGE_SCHEME = None  # not registered: async_storage() picks it for mongodb URIs

    def __init__(self, counters: Counters) -> None:
        super().__init__()
        self._counters = counters
        self._indexed = False

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return PyMongoError

    async def _ensure_index(self) -> None:
        if not self._indexed:
            await self._counters.create_index("expireAt", expireAfterSeconds=0)
            self._indexed = True

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        await self._ensure_index()
        now = datetime.now(UTC)
        # A counter whose window has passed starts again (the TTL monitor removes expired
        # documents only once a minute).
        expired = {"$not": [{"$gt": ["$expireAt", now]}]}
        counter = await self._counters.find_one_and_update(
            {"_id": key},
            [
                {
                    "$set": {
                        "count": {"$cond": [expired, amount, {"$add": ["$count", amount]}]},
                        "expireAt": {
                            "$cond": [expired, now + timedelta(seconds=expiry), "$expireAt"]
                        },
                    }
                }
            ],
            projection={"count": True},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None  # an upsert returning the document after it
        return int(counter["count"])

    async def decr(self, key: str, amount: int = 1) -> None:
        await self._counters.update_one({"_id": key}, {"$inc": {"count": -amount}})

    async def _counts(self, keys: list[str]) -> dict[str, int]:
        live = {"_id": {"$in": keys}, "expireAt": {"$gt": datetime.now(UTC)}}
        return {
            doc["_id"]: int(doc["count"])
            async for doc in self._counters.find(live, projection={"count": True})
        }

    async def get(self, key: str) -> int:
        return (await self._counts([key])).get(key, 0)

    async def get_expiry(self, key: str) -> float:
        counter = await self._counters.find_one({"_id": key}, projection={"expireAt": True})
        if counter is None:
            return time.time()
        expire_at: datetime = counter["expireAt"]
        return (expire_at if expire_at.tzinfo else expire_at.replace(tzinfo=UTC)).timestamp()

    async def check(self) -> bool:
        try:
            await self._counters.database.command("ping")
        except PyMongoError:
            return False
        return True

    async def reset(self) -> int | None:
        return (await self._counters.delete_many({})).deleted_count

    async def clear(self, key: str) -> None:
        await self._counters.delete_one({"_id": key})

    # --- sliding window counters, as limits' memory storage keeps them ---------------

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        now = time.time()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous, previous_ttl, current, _ = await self._window(
            previous_key, current_key, expiry, now
        )
        carried = previous * previous_ttl / expiry
        if math.floor(carried + current) + amount > limit:
            return False
        current = await self.incr(current_key, 2 * expiry, amount=amount)
        if math.floor(carried + current) > limit:
            # Another hit took the last place meanwhile: give this one back.
            await self.decr(current_key, amount)
            return False
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = time.time()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        return await self._window(previous_key, current_key, expiry, now)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        previous_key, current_key = self.sliding_window_keys(key, expiry, time.time())
        await self._counters.delete_many({"_id": {"$in": [previous_key, current_key]}})

    async def _window(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        counts = await self._counts([previous_key, current_key])
        previous, current = counts.get(previous_key, 0), counts.get(current_key, 0)
        previous_ttl = (1 - (((now - expiry) / expiry) % 1)) * expiry if previous else 0.0
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous, previous_ttl, current, current_ttl


def check_limit(value: str) -> str:
    """``value`` when it is a limit in ``limits`` notation; ValueError otherwise."""
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"not a limit like '20/minute' or '20/minute;100/hour': {exc}") from exc
    return value


def check_storage_uri(uri: str | None) -> str | None:
    """``uri`` when it names an async storage with sliding windows (None: the service's
    MongoDB); ValueError otherwise."""
    if uri is None or urlsplit(uri).scheme in MONGODB_SCHEMES:
        return uri
    async_storage(uri)
    return uri


def async_storage(uri: str) -> Storage:
    """The storage at ``uri``; a MongoDB one keeps its counters in the database the URI
    names (default ``closeloop``)."""
    if urlsplit(uri).scheme in MONGODB_SCHEMES:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri.removeprefix("async+"), tz_aware=True
        )
        return MongoStorage(client.get_default_database(DEFAULT_DATABASE)[COLLECTION])
    try:
        storage = storage_from_string(uri)
    except ConfigurationError as exc:
        raise ValueError(f"{uri!r} is not a usable limits storage: {exc}") from exc
    if not isinstance(storage, Storage) or not isinstance(storage, SlidingWindowCounterSupport):
        raise ValueError(
            f"{uri!r} is not an async storage with sliding windows (e.g. async+mongodb://..., "
            "async+memory://, async+redis://host:6379)"
        )
    return storage


def limits_storage(uri: str | None, database: AsyncDatabase[dict[str, Any]] | None) -> Storage:
    """The storage a service's settings name: ``uri``, or by default the service's own
    ``database``."""
    if uri is not None:
        return async_storage(uri)
    if database is None:
        raise ValueError("a limits storage needs a URI or the service's database")
    return MongoStorage(database[COLLECTION])
