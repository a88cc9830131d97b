"""Wiring of the intake service."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.api import router
from services.intake.settings import IntakeSettings
from shared.http import install_problem_handlers
from shared.runtime import VERSION, Service


def build(settings: IntakeSettings | None = None) -> Service:
    settings = settings or IntakeSettings()
    app = FastAPI(
        title="closeloop intake",
        version=VERSION,
        description="Front door for every channel: feedback in, one normalised event out.",
    )
    install_problem_handlers(app)
    app.include_router(router)
    app.state.settings = settings
    return Service("intake", settings, app=app)
