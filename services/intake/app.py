"""Wiring of the intake service."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

from services.intake import openapi
from services.intake.admission import Intake
from services.intake.guards import Guards
from services.intake.policy import load_integrations, log_integrations
from services.intake.problems import install_rejection_handler
from services.intake.routes import REQUEST_MODELS, router
from services.intake.settings import IntakeSettings
from shared.auth import FailureLimit
from shared.http import install_problem_handlers
from shared.ratelimit import limits_storage
from shared.runtime import Service, web_app


def build(
    settings: IntakeSettings | None = None, environ: Mapping[str, str] | None = None
) -> Service:
    settings = settings or IntakeSettings()
    integrations = load_integrations(
        settings.integrations_file,
        os.environ if environ is None else environ,
        local=settings.environment == "local",
    )
    app = web_app(
        "closeloop intake",
        description="Front door for every channel: feedback in, one normalised event out. "
        "Every request carries its integration's API key (`X-API-Key`); signing "
        "integrations also send `X-Closeloop-Timestamp` and `X-Closeloop-Signature`.",
    )
    install_problem_handlers(app)
    install_rejection_handler(app)
    # Rate limits, failed attempts and seen signatures live in the database unless the
    # settings name another store: then intake needs no database at all.
    service = Service(
        "intake", settings, app=app, uses_database=settings.rate_limit_storage is None
    )
    database = service.db if settings.rate_limit_storage is None else None
    storage = limits_storage(settings.rate_limit_storage, database)
    app.state.intake = Intake(
        settings=settings,
        integrations=integrations,
        guards=Guards(storage),
        failures=FailureLimit(storage, settings.auth_failure_limit, "intake"),
    )
    app.include_router(router)
    openapi.install(app, REQUEST_MODELS)

    async def announce() -> None:
        log_integrations(integrations)

    service.on_startup(announce)
    return service


# Young objects between collections of the youngest generation (Python's default: 700).
# A batch request allocates tens of thousands of short-lived objects (models, dicts,
# records); with the default, collections run every few items and walk the items still
# in flight, again and again, until they are promoted to the old generations.
GC_YOUNG_THRESHOLD = 20_000


async def tune_garbage_collector() -> None:
    """For the service process only (``python -m services.intake``; a process that
    builds several apps, as the tests do, keeps the defaults):

    - what exists once the service has started (modules, the app, its validators: about
      100,000 objects) is left out of the collector's full passes (``gc.freeze``), which
      would otherwise walk all of it again and again while requests allocate;
    - the youngest generation is collected every ``GC_YOUNG_THRESHOLD`` allocations
      rather than every 700, so that a request's objects are mostly freed (by reference
      counting) before a collection looks at them.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
