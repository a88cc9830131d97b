"""Wiring of the router service."""

from __future__ import annotations

from services.router.config import load_policy
from services.router.handlers import make_handlers
from services.router.settings import RouterSettings
from services.router.store import RouterStore
from shared.contracts import Topic
from shared.runtime import Service


def build(settings: RouterSettings | None = None) -> Service:
    settings = settings or RouterSettings()
    policy = load_policy(settings.policy_file)
    service = Service("router", settings, uses_database=True)
    store = RouterStore(service.db)

    async def prepare() -> None:
        await store.ensure_indexes()
        await store.sync_agents(policy)

    service.on_startup(prepare)
    service.consume(
        [Topic.FEEDBACK_CLASSIFIED.value, Topic.CASE_LIFECYCLE.value],
        make_handlers(store, policy),
    )
    return service
