"""The process every service runs: HTTP (health, readiness, metrics, its own API),
Kafka producer and consumers, MongoDB, background jobs, and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pymongo
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient, _csot
from pymongo.asynchronous.database import AsyncDatabase
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import db as dbmod
from shared.errors import is_transient
from shared.http import install_problem_handlers
from shared.kafka import BatchHandler, ConsumerLoop, EventProducer, Handler, sleep_unless
from shared.logging import setup_logging
from shared.metrics import DEPENDENCY_UP, HTTP_REQUESTS, HTTP_SECONDS, SERVICE_INFO
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
StartupHook = Callable[[], Awaitable[None]]

VERSION = "0.1.0"


# Swagger UI's files, installed with the package (no CDN): /docs works offline.
SWAGGER_UI = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DOCS_ASSETS = "/docs/assets"


def web_app(title: str, **options: Any) -> FastAPI:
    """A service's FastAPI application. Its metrics are Prometheus's (``/metrics``), so
    FastAPI's own OpenTelemetry hooks stay off: with them on, every request looks up
    the global telemetry providers, about 3 % of intake's CPU per request.

    ``/docs`` is Swagger UI served from the service's own assets; ReDoc, which FastAPI
    would load from a CDN, is off."""
    app = FastAPI(
        title=title,
        version=VERSION,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,
        redoc_url=None,
        **options,
    )
    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            oauth2_redirect_url=f"{root}{redirect}",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            # Swagger UI would otherwise ask validator.swagger.io about the spec.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(redirect, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RequestMetrics:
    """Counts and times every HTTP request by route template and status. A plain ASGI
    middleware: Starlette's BaseHTTPMiddleware costs a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The label values are bounded (methods, route templates, statuses): each
        # combination's counter and histogram are looked up once.
        self._bound: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router writes the matched route into this same scope.
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            bound = self._bound.get((method, path, status))
            if bound is None:
                bound = self._bound[method, path, status] = (
                    HTTP_REQUESTS.labels(method, path, str(status)),
                    HTTP_SECONDS.labels(method, path),
                )
            bound[0].inc()
            bound[1].observe(time.perf_counter() - started)


class RequestDeadline:
    """Bounds the database work of each request (PyMongo's client-side operation
    timeout, a deadline for every operation the request makes): when the database
    does not answer, the request is a 503 within this time instead of waiting out the
    driver's server-selection timeout. Consumers and jobs run outside requests and keep
    their own timeouts and retries."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The request starts with no deadline but its own. uvicorn can start a request
        # in a context copied from the previous one on the same connection (a callback
        # scheduled while that one ran), deadline included; pymongo.timeout only ever
        # shortens a deadline, so that one, long past, would fail every operation. The
        # reset is PyMongo's own (pinned in pyproject.toml); it changes this request's
        # context only.
        _csot.reset_all()
        with pymongo.timeout(self.seconds):
            await self.app(scope, receive, send)


class Service:
    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        *,
        app: FastAPI | None = None,
        uses_database: bool = False,
    ) -> None:
        self.name = name
        self.settings = settings
        self.client_id = settings.kafka_client_id or f"closeloop-{name}"
        self.app = app or web_app(f"closeloop {name}")
        self.app.state.service = self
        self.producer = EventProducer(settings, self.client_id)
        self.mongo: AsyncMongoClient[dbmod.Document] | None = None
        self._db: AsyncDatabase[dbmod.Document] | None = None
        if uses_database:
            self.mongo = dbmod.connect(settings, self.client_id)
            self._db = self.mongo[settings.mongo_database]
        self.stopping = asyncio.Event()
        self.dependencies_ready = asyncio.Event()
        self._consumers: list[ConsumerLoop] = []
        self._jobs: list[Job] = []
        self._startup: list[StartupHook] = []
        install_problem_handlers(self.app, retry_after_s=settings.retry_after_s)
        if uses_database:
            self.app.add_middleware(
                RequestDeadline, seconds=settings.mongo_request_timeout_ms / 1000
            )
        self._add_operational_routes()

    @property
    def db(self) -> AsyncDatabase[dbmod.Document]:
        if self._db is None:
            raise RuntimeError(f"service {self.name} was created without a database")
        return self._db

    # --- wiring -------------------------------------------------------------------

    def consume(
        self,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        group: str | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
    ) -> None:
        self._consumers.append(
            ConsumerLoop(
                settings=self.settings,
                topics=topics,
                group_id=group or self.settings.kafka_consumer_group or f"closeloop-{self.name}",
                client_id=self.client_id,
                handlers=handlers,
                producer=self.producer,
                batch_handlers=batch_handlers,
            )
        )

    def on_startup(self, hook: StartupHook) -> None:
        """Run once the database is reachable, before consuming (e.g. create indexes)."""
        self._startup.append(hook)

    def job(self, job: Job) -> None:
        """A background job that runs until the event it is given is set."""
        self._jobs.append(job)

    # --- health -------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        checks = {"kafka": await self.producer.check()}
        if self._db is not None:
            checks["mongodb"] = await dbmod.ping(self._db)
        if self._consumers:
            checks["consumers"] = all(consumer.started for consumer in self._consumers)
        for dependency in ("kafka", "mongodb"):
            if dependency in checks:
                DEPENDENCY_UP.labels(dependency).set(1 if checks[dependency] else 0)
        return checks

    def _add_operational_routes(self) -> None:
        app = self.app

        app.add_middleware(RequestMetrics)

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": self.name}

        @app.get("/readyz", include_in_schema=False)
        async def readyz() -> Response:
            checks = await self.readiness()
            ready = all(checks.values()) and self.dependencies_ready.is_set()
            return JSONResponse(
                {"status": "ready" if ready else "not ready", "checks": checks},
                status_code=200 if ready else 503,
            )

        @app.get("/metrics", include_in_schema=False)
        async def metrics(request: Request) -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # --- lifecycle ----------------------------------------------------------------

    def run(self) -> None:
        """Entry point of ``python -m services.<name>``: runs until SIGTERM or SIGINT."""
        setup_logging(self.name, self.settings.log_level)
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        await self.serve()

    def _on_signal(self, sig: int) -> None:
        log.info("received %s, shutting down", signal.Signals(sig).name)
        self.stopping.set()

    async def serve(self) -> None:
        """Run until ``stopping`` is set, then shut down in order."""
        SERVICE_INFO.info({"service": self.name, "version": VERSION})
        server = _Server(
            uvicorn.Config(
                self.app,
                host=self.settings.http_host,
                port=self.settings.http_port,
                log_config=None,
                access_log=False,
                lifespan="off",
                # The C parser: h11, uvicorn's pure-Python one, cost about 0.2 ms of CPU
                # per request here.
                http="httptools",
            )
        )
        server_task = asyncio.create_task(server.serve(), name=f"{self.name}-http")
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self._connect_dependencies()
            if not self.stopping.is_set():
                self.dependencies_ready.set()
                tasks += [
                    asyncio.create_task(consumer.run(), name=f"{self.name}-consumer")
                    for consumer in self._consumers
                ]
                tasks += [
                    asyncio.create_task(job(self.stopping), name=f"{self.name}-job")
                    for job in self._jobs
                ]
                log.info(
                    "service started",
                    extra={"http": f"{self.settings.http_host}:{self.settings.http_port}"},
                )
            await self._wait_for_stop(server_task, tasks)
        finally:
            await self._shutdown(server, server_task, tasks)

    async def _wait_for_stop(
        self, server_task: asyncio.Task[Any], tasks: list[asyncio.Task[Any]]
    ) -> None:
        stop_wait = asyncio.create_task(self.stopping.wait())
        watched: set[asyncio.Task[Any]] = {stop_wait, server_task, *tasks}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        for task in done:
            if task is not stop_wait and not task.cancelled() and task.exception() is not None:
                log.error("%s failed: %r", task.get_name(), task.exception())
        self.stopping.set()

    async def _connect_dependencies(self) -> None:
        connect_broker = asyncio.create_task(self.producer.start(self.stopping))
        if self._startup:
            await self._run_startup_hooks()
        await connect_broker

    async def _run_startup_hooks(self) -> None:
        delay = self.settings.retry_initial_s
        while not self.stopping.is_set():
            try:
                for hook in self._startup:
                    await hook()
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("database not reachable yet: %s", exc)
                await sleep_unless(self.stopping, delay)
                delay = min(delay * 2, self.settings.retry_max_s)

    async def _shutdown(
        self, server: _Server, server_task: asyncio.Task[Any], tasks: list[asyncio.Task[Any]]
    ) -> None:
        self.stopping.set()
        for consumer in self._consumers:
            consumer.request_stop()
        if tasks:
            # Consumers finish the in-flight message, commit and leave their group.
            _, pending = await asyncio.wait(tasks, timeout=30)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server_task, timeout=10)
        await self.producer.stop()
        if self.mongo is not None:
            await self.mongo.close()
        log.info("service stopped")
