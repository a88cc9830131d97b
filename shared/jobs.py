"""Periodic background jobs: run a job every so often until the service stops.

A job that fails with a transient error (broker or database unavailable) is logged as
skipped and tried again at the next turn; any other error is logged with its traceback
and the loop goes on. A job may return True to say there is more work right away (a
queue it drains): it then runs again without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.errors import is_transient
from shared.kafka import sleep_unless

log = logging.getLogger(__name__)


async def run_every(
    name: str,
    job: Callable[[], Awaitable[bool | None]],
    every_s: float,
    stop: asyncio.Event,
    *,
    first_after_s: float = 0.0,
) -> None:
    """Run ``job`` every ``every_s`` seconds until ``stop`` is set."""
    if first_after_s:
        await sleep_unless(stop, first_after_s)
    while not stop.is_set():
        more = False
        try:
            more = bool(await job())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                log.warning("%s skipped: %s", name, exc)
            else:
                log.exception("%s failed", name)
        if not more:
            await sleep_unless(stop, every_s)
        else:
            await asyncio.sleep(0)
