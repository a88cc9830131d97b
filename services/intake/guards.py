"""Per-integration rate limits and replay protection, on the ``limits`` package.

Both keep their state in the service's ``limits`` storage (shared/ratelimit.py): by
default intake's MongoDB, so that every copy counts together and a signature seen
before a restart is still a replay after it.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from services.intake.policy import Integration


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
