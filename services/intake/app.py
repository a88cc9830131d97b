"""Wiring of the intake service."""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastapi import FastAPI

from services.intake import api
from services.intake.guards import Guards, async_storage
from services.intake.integrations import load_integrations, log_integrations
from services.intake.problems import install_rejection_handler
from services.intake.settings import IntakeSettings
from shared.http import install_problem_handlers
from shared.runtime import VERSION, Service


def build(
    settings: IntakeSettings | None = None, environ: Mapping[str, str] | None = None
) -> Service:
    settings = settings or IntakeSettings()
    integrations = load_integrations(
        settings.integrations_file, os.environ if environ is None else environ
    )
    app = FastAPI(
        title="closeloop intake",
        version=VERSION,
        description="Front door for every channel: feedback in, one normalised event out. "
        "Every request carries its integration's API key (`X-API-Key`); signing "
        "integrations also send `X-Closeloop-Timestamp` and `X-Closeloop-Signature`.",
    )
    install_problem_handlers(app)
    install_rejection_handler(app)
    guards = Guards(async_storage(settings.rate_limit_storage))
    api.install(app, api.Intake(settings=settings, integrations=integrations, guards=guards))
    service = Service("intake", settings, app=app)

    async def announce() -> None:
        log_integrations(integrations)

    service.on_startup(announce)
    return service
