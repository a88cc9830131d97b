"""Refusals: every one is an RFC 9457 problem+json naming the field and the reason,
counted by channel and reason, and logged without personal data."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.intake.domain import Invalid
from services.intake.metrics import REJECTED
from shared.contracts import error_message
from shared.http import problem

log = logging.getLogger(__name__)

UNKNOWN_CHANNEL = "unknown"


class Rejected(Exception):
    """A request intake refuses; nothing of it was published."""

    def __init__(
        self,
        status: int,
        title: str,
        reason: str,
        errors: list[dict[str, str]],
        *,
        channel: str = UNKNOWN_CHANNEL,
        headers: Mapping[str, str] | None = None,
        counted: bool = True,
    ) -> None:
        self.status = status
        self.counted = counted  # False when the parts were counted one by one
        self.title = title
        self.reason = reason
        self.errors = errors
        self.channel = channel
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        return "; ".join(f"{error['field']}: {error['message']}" for error in self.errors)


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def validation_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Each invalid field by its dotted path, with pydantic's reason."""
    out = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        field = ".".join(part for part in (prefix, path) if part) or "(body)"
        out.append(field_error(field, error_message(error)))
    return out


def invalid(exc: ValidationError | Invalid, channel: str, prefix: str = "") -> Rejected:
    if isinstance(exc, Invalid):
        field = ".".join(part for part in (prefix, exc.field) if part)
        errors = [field_error(field, exc.message)]
    else:
        errors = validation_errors(exc, prefix)
    return Rejected(422, "Invalid request", "invalid", errors, channel=channel)


def install_rejection_handler(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def on_rejected(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Rejected)
        if exc.counted:
            REJECTED.labels(exc.channel, exc.reason).inc()
        log.info(
            "request refused",
            extra={
                "status": exc.status,
                "reason": exc.reason,
                "channel": exc.channel,
                "path": request.url.path,
                "integration": getattr(request.state, "integration", None),
                # Field names only: messages could quote what the customer sent.
                "fields": [error["field"] for error in exc.errors],
            },
        )
        return problem(exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers)
