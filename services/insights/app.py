"""Wiring of the insights service."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from services.insights.api import reviews as reviews_router
from services.insights.api import router as api_router
from services.insights.customer_api import customers as customers_router
from services.insights.customers import Customers
from services.insights.handlers import make_handlers
from services.insights.loyalty import load_policy
from services.insights.metrics import CUSTOMERS_AT_RISK, LAST_OPENED, PENDING_SETTLED
from services.insights.page import ReportPages
from services.insights.page import router as page_router
from services.insights.settings import InsightsSettings
from services.insights.store import InsightsStore
from services.insights.weekly import publish_due_report
from shared.auth import Gate
from shared.clock import utcnow
from shared.contracts import Topic
from shared.kafka import sleep_unless
from shared.ratelimit import limits_storage
from shared.runtime import Service, web_app

log = logging.getLogger(__name__)


def build(settings: InsightsSettings | None = None) -> Service:
    settings = settings or InsightsSettings()
    app = web_app(
        "closeloop insights",
        description="Reports over every case: volume, speed, deadlines, reopens, escalations "
        "and satisfaction by cause, team, agent, channel, priority, language and tier; the "
        "cases behind every figure; CSV exports; customers' health scores and the retention "
        "worklist; the weekly report page at /reports. Every "
        "route needs an API key (X-API-Key, Authorization: Bearer, or HTTP Basic's password).",
    )
    app.include_router(api_router)
    app.include_router(reviews_router)
    app.include_router(customers_router)
    app.include_router(page_router)
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
    app.state.report_pages = ReportPages()

    async def prepare() -> None:
        if not settings.api_keys:
            log.warning(
                "no API keys (CLOSELOOP_INSIGHTS_API_KEYS): the reports API refuses every request"
            )
        await store.ensure_indexes()
        await customers.ensure_indexes()

    async def sweep(stop: asyncio.Event) -> None:
        """Add rollup deltas and publish signals a stopped copy left pending, score again
        the customers whose scores fade; keep the gauges fresh."""
        while not stop.is_set():
            try:
                older = utcnow() - timedelta(seconds=settings.pending_sweep_s)
                PENDING_SETTLED.inc(await store.settle_pending(older))
                await customers.sweep(utcnow(), timedelta(seconds=settings.pending_sweep_s))
                CUSTOMERS_AT_RISK.set(await customers.at_risk_count())
                latest = await store.latest_opened()
                if latest is not None:
                    LAST_OPENED.set(latest.timestamp())
            except Exception:  # the next round tries again; consuming goes on
                log.exception("insights sweep failed")
            await sleep_unless(stop, settings.pending_sweep_s)

    async def weekly(stop: asyncio.Event) -> None:
        """The weekly review on report.weekly, once per finished week."""
        delay = timedelta(hours=settings.weekly_report_delay_h)
        while not stop.is_set():
            try:
                week = await publish_due_report(store, service.producer.publish, utcnow(), delay)
                if week is not None:
                    log.info("weekly report published", extra={"week": week})
            except Exception:  # the next check tries again
                log.exception("weekly report failed")
            await sleep_unless(stop, settings.weekly_check_s)

    service.on_startup(prepare)
    service.consume(
        [Topic.CASE_ROUTED.value, Topic.CASE_LIFECYCLE.value], make_handlers(store, customers)
    )
    service.job(sweep)
    service.job(weekly)
    return service
