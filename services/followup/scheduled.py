"""Timed work: the due queue, claimed atomically with a lease by any followup copy, the
outbox relay, and the periodic counts behind the open-case and overdue-callback gauges.
Each runs as a periodic job (``shared.jobs.run_every``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from services.followup import metrics
from services.followup.domain import overdue_cutoff
from services.followup.flows import Followup
from services.followup.policy import FollowupPolicy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.jobs import run_every
from shared.logging import log_context
from shared.outbox import Send

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def worker_id() -> str:
    return f"followup-{uuid.uuid4().hex[:12]}"


async def run_due_once(followup: Followup, *, now: datetime, owner: str, lease_s: float) -> bool:
    """Claim one due item and do its work; False when nothing is due at ``now``.

    An item is completed only after its case change was written and published; if this
    copy dies first, the lease runs out and another copy does the work, which the case
    change's guard makes happen once."""
    store = followup.store
    claim = await store.claim_due(now, owner, lease_s)
    if claim is None:
        return False
    item = claim.item
    with log_context(case_id=item.case_id, due_id=claim.id, due_kind=item.kind):
        result = await followup.fire(item, now)
        if await store.complete_due(claim.id, owner, result):
            metrics.DUE_PROCESSED.labels(item.kind).inc()
        else:
            log.warning("due item was taken over before it was completed")
    return True


async def drain_due(followup: Followup, *, now: datetime, owner: str, lease_s: float) -> int:
    """Do everything due at ``now``; returns how many items were handled."""
    handled = 0
    while await run_due_once(followup, now=now, owner=owner, lease_s=lease_s):
        handled += 1
    return handled


async def run_due_queue(
    followup: Followup,
    *,
    clock: Clock,
    poll_s: float,
    lease_s: float,
    stop: asyncio.Event,
) -> None:
    """Work through the due queue; wait ``poll_s`` whenever nothing is due. A failed
    item's lease runs out and it is picked up again."""
    owner = worker_id()
    log.info("due queue worker started", extra={"owner": owner})

    async def next_item() -> bool:
        return await run_due_once(followup, now=clock(), owner=owner, lease_s=lease_s)

    await run_every("due queue", next_item, poll_s, stop)


async def run_outbox_relay(
    store: FollowupStore, publish: Send, *, retry_after_s: float, stop: asyncio.Event
) -> None:
    """Send outbox entries that were not published when they were queued."""

    async def relay() -> None:
        await store.relay(publish, utcnow() - timedelta(seconds=retry_after_s))

    await run_every("outbox relay", relay, retry_after_s / 2, stop)


async def count_cases(store: FollowupStore, policy: FollowupPolicy, now: datetime) -> None:
    """Set the gauges for open cases by status and overdue callbacks."""
    by_status = await store.count_by_status()
    for status in ("open", "resolved", "reopened"):
        metrics.CASES_OPEN.labels(status).set(by_status.get(status, 0))
    cutoff = overdue_cutoff(now, policy.callbacks)
    metrics.CALLBACKS_OVERDUE.set(await store.count_overdue_callbacks(cutoff))


async def run_stats(
    store: FollowupStore,
    policy: FollowupPolicy,
    *,
    clock: Clock,
    interval_s: float,
    stop: asyncio.Event,
) -> None:
    async def count() -> None:
        await count_cases(store, policy, clock())

    await run_every("counting cases", count, interval_s, stop)
