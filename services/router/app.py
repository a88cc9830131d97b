"""Wiring of the router service."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from services.router.api import router as api_router
from services.router.flows import CaseRouter
from services.router.handlers import (
    SIGNAL_TOPICS,
    TOPICS,
    make_batch_handlers,
    make_handlers,
    make_signal_handlers,
)
from services.router.metrics import CALENDAR_HOLIDAYS_UNTIL
from services.router.policy import RoutingPolicy, load_policy
from services.router.settings import RouterSettings
from services.router.store import RouterStore
from shared.auth import Gate
from shared.clock import utcnow
from shared.jobs import run_every
from shared.ratelimit import limits_storage
from shared.runtime import Service, web_app

log = logging.getLogger(__name__)

# How long before a calendar's listed public holidays run out the router starts warning.
HOLIDAYS_WARNING = timedelta(days=45)


def observe_calendars(policy: RoutingPolicy, now: datetime) -> None:
    """Publish until when each calendar lists public holidays, and warn when that is
    near: after it, deadlines count the next year's holidays as working days."""
    for name, calendar in policy.calendars.items():
        until = calendar.holidays_listed_until()
        if until is None:
            continue
        start = datetime.combine(until, time(), ZoneInfo(calendar.time_zone))
        CALENDAR_HOLIDAYS_UNTIL.labels(name).set(start.timestamp())
        if start - now < HOLIDAYS_WARNING:
            log.warning(
                "calendar %s lists public holidays through %d only: add the next year's "
                "holidays and make-up working days to the routing policy",
                name,
                until.year - 1,
            )


def signals_group(settings: RouterSettings) -> str:
    """The consumer group of the customer.signals consumer: the router's, ``-signals``."""
    return f"{settings.kafka_consumer_group or 'closeloop-router'}-signals"


def build(settings: RouterSettings | None = None) -> Service:
    settings = settings or RouterSettings()
    policy = load_policy(settings.policy_file)
    app = web_app(
        "closeloop router",
        description="Agents, their availability and load, and the team queues. Every route "
        "needs an API key (X-API-Key or Authorization: Bearer); changing an agent's "
        "availability needs a key with the write scope.",
    )
    app.include_router(api_router)
    service = Service("router", settings, app=app, uses_database=True)
    storage = limits_storage(settings.rate_limit_storage, service.db)
    app.state.gate = Gate.of("router", settings, settings.api_keys, storage)
    store = RouterStore(service.db)
    case_router = CaseRouter(store, policy, service.producer.publish)
    app.state.router = case_router

    async def prepare() -> None:
        if not settings.api_keys:
            log.warning(
                "no API keys (CLOSELOOP_ROUTER_API_KEYS): the agents and queues API refuses "
                "every request"
            )
        await store.ensure_indexes()
        await store.sync_agents(policy)
        observe_calendars(policy, utcnow())

    async def sweeps(stop: asyncio.Event) -> None:
        outbox_after = timedelta(seconds=settings.outbox_retry_after_s)
        sweep_once = partial(case_router.sweep, outbox_after)
        await run_every("queue sweep", sweep_once, settings.queue_sweep_s, stop)

    service.on_startup(prepare)
    service.consume(
        list(TOPICS),
        make_handlers(case_router),
        batch_handlers=make_batch_handlers(case_router),
    )
    # customer.signals in a consumer group of their own: in the feedback consumer a signal
    # would split the batches of feedback fetched with it (a batch is of one event type),
    # take fetch room from feedback when insights publishes a burst (a rescoring sweep),
    # and hold routing up while it is retried. On its own, a signal only waits for signals
    # and its lag shows apart. No order is lost: feedback and signals are on different
    # topics, so no consumer could order one after the other; a signal applies to the
    # customer's next new case from when it is stored.
    service.consume(
        list(SIGNAL_TOPICS),
        make_signal_handlers(case_router),
        group=signals_group(settings),
    )
    service.job(sweeps)
    return service
