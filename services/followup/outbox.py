"""Publishing the events a case change queued in the case's outbox.

An API call changes the case and queues its events in one atomic update, then
publishes them at once; if the broker is down, the relay publishes them later. So an
accepted change always reaches Kafka, at least once, always under the same event id.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from services.followup.store import FollowupStore, event_from_outbox
from shared.clock import utcnow
from shared.errors import BrokerUnavailable, is_transient
from shared.kafka import EventProducer, sleep_unless

log = logging.getLogger(__name__)


async def publish_outbox(
    producer: EventProducer, store: FollowupStore, case: dict[str, Any]
) -> bool:
    entries = case.get("outbox") or []
    if not entries:
        return True
    try:
        await producer.publish([event_from_outbox(entry) for entry in entries])
    except BrokerUnavailable as exc:
        log.warning(
            "case events left in the outbox for the relay: %s", exc, extra={"case_id": case["_id"]}
        )
        return False
    await store.mark_published(case["_id"], [entry["id"] for entry in entries])
    return True


async def relay(
    producer: EventProducer, store: FollowupStore, retry_after_s: float, stop: asyncio.Event
) -> None:
    """Publish outbox entries that were not published when they were queued."""
    while not stop.is_set():
        try:
            stale = await store.stale_outboxes(utcnow() - timedelta(seconds=retry_after_s))
            for case in stale:
                await publish_outbox(producer, store, case)
        except Exception as exc:
            if not is_transient(exc):
                log.exception("outbox relay failed")
        await sleep_unless(stop, retry_after_s / 2)
