"""Timed work: the due queue, claimed atomically with a lease by any followup copy."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from prometheus_client import Counter

from services.followup.outbox import publish_outbox
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import CallbackDue
from shared.envelope import new_event
from shared.errors import is_transient
from shared.kafka import EventProducer, sleep_unless
from shared.logging import log_context

log = logging.getLogger(__name__)
SOURCE = "/closeloop/followup"

DUE_PROCESSED = Counter(
    "closeloop_due_items_processed_total", "Due-queue items handled, by kind", ["kind"]
)


async def fire_callback(
    producer: EventProducer, store: FollowupStore, item: dict[str, Any]
) -> None:
    """The callback is due: tell the dialer or CRM through callback.due."""
    now = utcnow()
    case = await store.get(item["case_id"])
    if case is None or case["status"] == "closed":
        return
    due = CallbackDue(
        case_id=case["_id"],
        customer_key=case["customer_key"],
        occurred_at=now,
        callback_id=item["_id"],
        due_at=item["due_at"],
        attempt=item["attempt"],
        team=case.get("team"),
        agent=case.get("agent"),
    )
    event = new_event(due, source=SOURCE, cause=f"{item['_id']}:due", time=now)
    updated = await store.transition(
        case["_id"],
        from_statuses=[case["status"]],
        set_fields={"callbacks.$[cb].status": "due"},
        timeline=[{"at": now, "event": "callback.due", "detail": f"attempt {item['attempt']}"}],
        events=[event],
        now=now,
        array_filters=[{"cb.callback_id": item["_id"]}],
    )
    if updated is not None:
        await publish_outbox(producer, store, updated)


async def run_due_queue(
    producer: EventProducer,
    store: FollowupStore,
    *,
    poll_s: float,
    lease_s: float,
    stop: asyncio.Event,
) -> None:
    owner = f"followup-{uuid.uuid4().hex[:12]}"
    while not stop.is_set():
        try:
            item = await store.claim_due(utcnow(), owner, lease_s)
            if item is None:
                await sleep_unless(stop, poll_s)
                continue
            with log_context(case_id=item["case_id"], due_id=item["_id"]):
                if item["kind"] == "callback":
                    await fire_callback(producer, store, item)
                await store.complete_due(item["_id"], owner)
                DUE_PROCESSED.labels(item["kind"]).inc()
        except Exception as exc:
            # The claim's lease runs out and the item is picked up again.
            if not is_transient(exc):
                log.exception("due item failed")
            await sleep_unless(stop, poll_s)
