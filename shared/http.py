"""HTTP conventions shared by every service API: RFC 9457 problem+json errors.

A dependency that is down (the database or the broker) is a 503 with Retry-After; an
error nobody expected is a 500 problem, logged with its traceback; neither is ever
Starlette's plain-text 500."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.contracts import error_message
from shared.errors import BrokerUnavailable, is_transient

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_STATUSES = {status.value for status in HTTPStatus}
RETRY_AFTER_S = 5
# What a failing dependency raises; is_transient tells an outage from a fault.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    PyMongoError,
    KafkaError,
    BrokerUnavailable,
    TimeoutError,
    ConnectionError,
)


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://closeloop.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Each invalid field by its dotted path in the request, with the reason."""
    out = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            # FastAPI puts the byte offset of a JSON syntax error where the field would be.
            at = [part for part in err.get("loc", ()) if isinstance(part, int)]
            reason = (err.get("ctx") or {}).get("error") or err.get("msg", "invalid")
            where = f" (at byte {at[-1]})" if at else ""
            out.append({"field": "(body)", "message": f"not valid JSON: {reason}{where}"})
            continue
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        out.append({"field": ".".join(loc) or "(body)", "message": error_message(err)})
    return out


def route_of(scope: Scope) -> str:
    """The matched route's template: never the path itself, which can hold a case id or
    a survey link's token."""
    return str(getattr(scope.get("route"), "path", "unmatched"))


def _dependency(exc: BaseException) -> str:
    if isinstance(exc, PyMongoError):
        return "database"
    if isinstance(exc, KafkaError | BrokerUnavailable):
        return "event broker"
    return "a service it depends on"


def _log_unavailable(scope: Scope, exc: BaseException) -> str:
    dependency = _dependency(exc)
    log.warning(
        "answered 503: %s unavailable",
        dependency,
        extra={"route": route_of(scope), "error": type(exc).__name__},
    )
    return dependency


def retry_after(request: Request) -> str:
    return str(getattr(request.app.state, "retry_after_s", RETRY_AFTER_S))


def unavailable(request: Request, exc: BaseException) -> JSONResponse:
    dependency = _log_unavailable(request.scope, exc)
    return problem(
        503,
        "Service unavailable",
        f"the {dependency} did not answer in time; retry later",
        headers={"Retry-After": retry_after(request)},
    )


def unexpected_error() -> JSONResponse:
    return problem(500, "Internal Server Error", "an unexpected error occurred; it has been logged")


class UnexpectedErrors:
    """Answers an exception that no handler took with a 500 problem and logs it with its
    traceback (the answer says nothing of it: messages can quote personal data). Inside
    the request metrics, so the 500 is counted as one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            log.exception(
                "unexpected error", extra={"route": route_of(scope), "method": scope["method"]}
            )
            if started:  # too late for another answer; the server closes the connection
                raise
            await unexpected_error()(scope, receive, send)


def page_route(try_again_later: Callable[[Request], Response]) -> type[APIRoute]:
    """The route class of pages people open in a browser: while a dependency is down
    they get ``try_again_later(request)`` (a 503 page; Retry-After is added) rather
    than a problem+json."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def handle_or_apologise(request: Request) -> Response:
                try:
                    return await handle(request)
                except DEPENDENCY_ERRORS as exc:
                    if not is_transient(exc):
                        raise
                    _log_unavailable(request.scope, exc)
                    page = try_again_later(request)
                    page.headers["Retry-After"] = retry_after(request)
                    return page

            return handle_or_apologise

    return PageRoute


def install_problem_handlers(app: FastAPI, *, retry_after_s: int = RETRY_AFTER_S) -> None:
    """Problem+json for every refusal and failure of the app's routes. ``Service``
    installs them on every service's app with its settings' Retry-After; installing
    again only changes that."""
    app.state.retry_after_s = retry_after_s
    if getattr(app.state, "problem_handlers", False):
        return
    app.state.problem_handlers = True

    async def on_dependency_error(request: Request, exc: Exception) -> Response:
        if is_transient(exc):
            return unavailable(request, exc)
        log.error(
            "unexpected error",
            exc_info=exc,
            extra={"route": route_of(request.scope), "method": request.method},
        )
        return unexpected_error()

    for kind in DEPENDENCY_ERRORS:
        app.add_exception_handler(kind, on_dependency_error)
    app.add_middleware(UnexpectedErrors)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in _STATUSES else "Error"
        return problem(exc.status_code, title, str(exc.detail), headers=exc.headers)
