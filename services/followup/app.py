"""Wiring of the followup service."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.followup.api import router
from services.followup.handlers import make_handlers
from services.followup.outbox import relay
from services.followup.scheduled import run_due_queue
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from shared.contracts import Topic
from shared.http import install_problem_handlers
from shared.runtime import VERSION, Service


def build(settings: FollowupSettings | None = None) -> Service:
    settings = settings or FollowupSettings()
    app = FastAPI(
        title="closeloop followup",
        version=VERSION,
        description="Cases, callbacks and the satisfaction check that closes the loop.",
    )
    install_problem_handlers(app)
    app.include_router(router)
    service = Service("followup", settings, app=app, uses_database=True)
    store = FollowupStore(service.db)
    app.state.store = store
    app.state.settings = settings

    service.on_startup(store.ensure_indexes)
    service.consume([Topic.CASE_ROUTED.value], make_handlers(store, settings))

    async def outbox_relay(stop: asyncio.Event) -> None:
        await relay(service.producer, store, settings.outbox_retry_after_s, stop)

    async def due_queue(stop: asyncio.Event) -> None:
        await run_due_queue(
            service.producer,
            store,
            poll_s=settings.due_poll_s,
            lease_s=settings.due_lease_s,
            stop=stop,
        )

    service.job(outbox_relay)
    service.job(due_queue)
    return service
