"""Wiring of the insights service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from services.insights.api import reviews as reviews_router
from services.insights.api import router as api_router
from services.insights.customer_api import customers as customers_router
from services.insights.customers import Customers, Publish
from services.insights.handlers import TOPICS, make_handlers
from services.insights.metrics import CUSTOMERS_AT_RISK, LAST_OPENED, PENDING_SETTLED
from services.insights.page import ReportPages
from services.insights.page import router as page_router
from services.insights.policy import load_policy
from services.insights.settings import InsightsSettings
from services.insights.store import InsightsStore
from services.insights.weekly import publish_due_report
from shared.auth import Gate
from shared.clock import utcnow
from shared.jobs import run_every
from shared.ratelimit import limits_storage
from shared.runtime import Service, web_app

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Reports over every case: volume, speed, deadlines, reopens, escalations and "
    "satisfaction by cause, team, agent, channel, priority, language and tier; the cases "
    "behind every figure; CSV exports; customers' health scores and the retention worklist; "
    "the weekly report page at /reports. Every route needs an API key (X-API-Key, "
    "Authorization: Bearer, or HTTP Basic's password)."
)


def build(
    settings: InsightsSettings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> Service:
    """The insights service. ``clock`` is what the consumers, the jobs and the API take as
    now (tests move it on instead of waiting)."""
    settings = settings or InsightsSettings()
    app = web_app("closeloop insights", description=DESCRIPTION)
    for routes in (api_router, reviews_router, customers_router, page_router):
        app.include_router(routes)
    service = Service("insights", settings, app=app, uses_database=True)
    storage = limits_storage(settings.rate_limit_storage, service.db)
    app.state.gate = Gate.of("insights", settings, settings.api_keys, storage)
    store = InsightsStore(service.db)
    app.state.store = store
    policy = load_policy(settings.loyalty_policy_file)
    customers = Customers(
        service.db,
        store,
        policy,
        service.producer.publish,
        timedelta(hours=settings.rescore_every_h),
    )
    app.state.customers = customers
    app.state.settings = settings
    app.state.clock = clock
    app.state.report_pages = ReportPages()

    async def prepare() -> None:
        if not settings.api_keys:
            log.warning(
                "no API keys (CLOSELOOP_INSIGHTS_API_KEYS): the reports API refuses every request"
            )
        await store.ensure_indexes()
        await customers.ensure_indexes()

    pending_after = timedelta(seconds=settings.pending_sweep_s)
    report_delay = timedelta(hours=settings.weekly_report_delay_h)

    async def sweep(stop: asyncio.Event) -> None:
        async def once() -> None:
            await sweep_once(store, customers, clock(), pending_after)

        await run_every("insights sweep", once, settings.pending_sweep_s, stop)

    async def weekly(stop: asyncio.Event) -> None:
        async def once() -> None:
            await publish_weekly(store, service.producer.publish, clock(), report_delay)

        await run_every("weekly report", once, settings.weekly_check_s, stop)

    service.on_startup(prepare)
    service.consume(
        list(TOPICS),
        make_handlers(store, customers, clock),
    )
    service.job(sweep)
    service.job(weekly)
    return service


async def sweep_once(
    store: InsightsStore, customers: Customers, now: datetime, pending_after: timedelta
) -> None:
    """Add rollup deltas and publish signals a stopped copy left pending, score again the
    customers whose scores fade; keep the gauges fresh."""
    PENDING_SETTLED.inc(await store.settle_pending(now - pending_after))
    await customers.sweep(now, pending_after)
    CUSTOMERS_AT_RISK.set(await customers.at_risk_count())
    latest = await store.latest_opened()
    if latest is not None:
        LAST_OPENED.set(latest.timestamp())


async def publish_weekly(
    store: InsightsStore, publish: Publish, now: datetime, delay: timedelta
) -> None:
    """The weekly review on report.weekly, once per finished week."""
    week = await publish_due_report(store, publish, now, delay)
    if week is not None:
        log.info("weekly report published", extra={"week": week})
