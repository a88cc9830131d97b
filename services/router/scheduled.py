"""The router's timed job: serve the team queues, relay the outbox, refresh gauges."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from services.router.flows import CaseRouter
from shared.clock import utcnow
from shared.errors import is_transient
from shared.kafka import sleep_unless

log = logging.getLogger(__name__)


async def run_sweeps(
    router: CaseRouter, every_s: float, outbox_after_s: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await router.sweep(utcnow(), timedelta(seconds=outbox_after_s))
        except Exception as exc:
            if is_transient(exc):
                log.warning("queue sweep skipped: %s", exc)
            else:
                log.exception("queue sweep failed")
        await sleep_unless(stop, every_s)
