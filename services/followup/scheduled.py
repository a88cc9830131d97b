"""Timed work: the due queue, claimed atomically with a lease by any followup copy,
and the periodic counts behind the open-case and overdue-callback gauges."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from services.followup import metrics
from services.followup.domain import overdue_cutoff
from services.followup.flows import Followup
from services.followup.policy import FollowupPolicy
from services.followup.store import FollowupStore
from shared.errors import is_transient
from shared.kafka import sleep_unless
from shared.logging import log_context

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
    item = await store.claim_due(now, owner, lease_s)
    if item is None:
        return False
    with log_context(case_id=item["case_id"], due_id=item["_id"], due_kind=item["kind"]):
        result = await followup.fire(item, now)
        if await store.complete_due(item["_id"], owner, result):
            metrics.DUE_PROCESSED.labels(item["kind"]).inc()
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
    owner = worker_id()
    log.info("due queue worker started", extra={"owner": owner})
    while not stop.is_set():
        try:
            if not await run_due_once(followup, now=clock(), owner=owner, lease_s=lease_s):
                await sleep_unless(stop, poll_s)
        except Exception as exc:
            # The claim's lease runs out and the item is picked up again.
            if is_transient(exc):
                log.warning("due queue: database or broker unavailable, retrying: %r", exc)
            else:
                log.exception("due item failed")
            await sleep_unless(stop, poll_s)


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
    while not stop.is_set():
        try:
            await count_cases(store, policy, clock())
        except Exception as exc:
            if not is_transient(exc):
                log.exception("counting cases failed")
        await sleep_unless(stop, interval_s)
