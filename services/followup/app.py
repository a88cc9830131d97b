"""Wiring of the followup service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.followup.api import refused_problem
from services.followup.api import router as api_router
from services.followup.domain import Refused
from services.followup.flows import Followup
from services.followup.handlers import TOPICS, make_batch_handlers, make_handlers
from services.followup.links import SurveyLinks
from services.followup.outreach import load_outreach
from services.followup.page import SurveyPages, TooManyGuesses, too_many_guesses
from services.followup.page import router as page_router
from services.followup.policy import load_policy
from services.followup.scheduled import run_due_queue, run_outbox_relay, run_stats
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from shared.auth import Gate
from shared.clock import utcnow
from shared.outbox import Conflict
from shared.ratelimit import limits_storage
from shared.runtime import Service, web_app

log = logging.getLogger(__name__)


def build(
    settings: FollowupSettings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> Service:
    """The followup service. ``clock`` is what the API and the timers take as now."""
    settings = settings or FollowupSettings()  # from the environment
    policy = load_policy(settings.policy_file)
    app = web_app(
        "closeloop followup",
        description=(
            "Cases, callbacks, SLA timers and the satisfaction check that closes the loop. "
            "The case API needs an API key (X-API-Key or Authorization: Bearer), with the "
            "write scope for anything that changes a case; the survey page is opened with "
            "its signed link."
        ),
    )
    app.include_router(api_router)
    app.include_router(page_router)
    app.add_exception_handler(TooManyGuesses, too_many_guesses)
    app.add_exception_handler(Refused, refused_problem)
    app.add_exception_handler(Conflict, refused_problem)
    service = Service("followup", settings, app=app, uses_database=True)
    store = FollowupStore(service.db)
    links = SurveyLinks(
        settings.survey_secret.get_secret_value(),
        public_url=settings.public_url,
        old_secrets=[s.get_secret_value() for s in settings.survey_old_secrets],
    )
    outreach = load_outreach(settings.notifications_file, settings.routing_file)
    followup = Followup(store, service.producer, policy, links, outreach)
    app.state.followup = followup
    app.state.store = store
    app.state.settings = settings
    app.state.clock = clock
    storage = limits_storage(settings.rate_limit_storage, service.db)
    app.state.gate = Gate.of("followup", settings, settings.api_keys, storage)
    app.state.pages = SurveyPages()

    service.on_startup(store.ensure_indexes)
    handlers = make_handlers(store, policy, outreach)
    service.consume(
        list(TOPICS),
        handlers,
        batch_handlers=make_batch_handlers(store, policy, outreach, handlers),
    )

    _add_jobs(service, followup, settings, clock)
    return service


def _add_jobs(
    service: Service,
    followup: Followup,
    settings: FollowupSettings,
    clock: Callable[[], datetime],
) -> None:
    """The periodic jobs: the outbox relay, the due queue and the case counts."""
    store, policy = followup.store, followup.policy

    async def outbox_relay(stop: asyncio.Event) -> None:
        await run_outbox_relay(
            store, service.producer.publish, retry_after_s=settings.outbox_retry_after_s, stop=stop
        )

    async def due_queue(stop: asyncio.Event) -> None:
        await run_due_queue(
            followup,
            clock=clock,
            poll_s=settings.due_poll_s,
            lease_s=settings.due_lease_s,
            stop=stop,
        )

    async def stats(stop: asyncio.Event) -> None:
        await run_stats(store, policy, clock=clock, interval_s=settings.stats_interval_s, stop=stop)

    service.job(outbox_relay)
    service.job(due_queue)
    service.job(stats)
