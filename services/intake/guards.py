"""Per-integration rate limits and replay protection, on the ``limits`` package.

Both keep their state in one ``limits`` storage: in memory by default (each intake copy
counts on its own), or a shared one (Redis, Memcached, MongoDB) named by URI so that
every copy counts together.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import SlidingWindowCounterSupport, Storage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from services.intake.integrations import Integration


def async_storage(uri: str) -> Storage:
    """The ``limits`` storage at ``uri``; it must be an async one with sliding windows."""
    storage = storage_from_string(uri)
    if not isinstance(storage, Storage) or not isinstance(storage, SlidingWindowCounterSupport):
        raise ValueError(
            f"{uri!r} is not an async storage with sliding windows (e.g. async+memory://, "
            "async+redis://host:6379)"
        )
    return storage


class Guards:
    def __init__(self, storage: Storage) -> None:
        # A sliding window does not let twice the limit through around a window's edge.
        self._rates = SlidingWindowCounterRateLimiter(storage)
        # A fixed window starts at its first hit: "seen in the last N seconds", exactly.
        self._seen = FixedWindowRateLimiter(storage)

    async def retry_after(self, integration: Integration) -> int | None:
        """Count one request; None when within every limit of the integration, else the
        seconds until the exhausted limit lets a request through again."""
        for limit in integration.rate_limits:
            if not await self._rates.hit(limit, "intake-rate", integration.name):
                stats = await self._rates.get_window_stats(limit, "intake-rate", integration.name)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    async def first_use(self, integration: Integration, signature: str) -> bool:
        """True the first time a signature is seen within twice the tolerance window (a
        timestamp may be that far either side of now); False for a replay."""
        window = RateLimitItemPerSecond(1, 2 * integration.signature_tolerance_s)
        return await self._seen.hit(window, "intake-signature", integration.name, signature)
