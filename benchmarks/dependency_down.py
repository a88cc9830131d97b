"""How long router's and followup's APIs take to answer 503 while MongoDB is down: never
started (a port where nothing listens), and stopped under a running service (SIGKILL).

    python -m benchmarks.dependency_down [--requests 10]

The broker is up. Each service runs in this process on a free port with its default
settings (so the database budget of a request is
CLOSELOOP_<SERVICE>_MONGO_REQUEST_TIMEOUT_MS, 1.5 s); each line prints the statuses
seen and the time to answer, min / median / max.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from services.followup.app import build as build_followup
from services.followup.settings import FollowupSettings
from services.router.app import build as build_router
from services.router.settings import RouterSettings
from shared.runtime import Service
from shared.tools import devstack

KEY = secrets.token_hex(16)


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    task = asyncio.create_task(service.serve())
    port = service.settings.http_port
    await asyncio.to_thread(devstack.wait_for_port, port, 20.0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=60
        ) as http:
            yield http
    finally:
        service.stopping.set()
        await asyncio.wait_for(task, 60)


async def timed(http: httpx.AsyncClient, method: str, path: str, count: int) -> str:
    seconds, statuses = [], set()
    for _ in range(count):
        started = time.perf_counter()
        response = await http.request(method, path, json={"available": True})
        seconds.append(time.perf_counter() - started)
        statuses.add(response.status_code)
    return (
        f"{method:4} {path:32} {sorted(statuses)!s:7} "
        f"{min(seconds):.2f} / {statistics.median(seconds):.2f} / {max(seconds):.2f} s"
    )


def settings(
    kind: type[RouterSettings] | type[FollowupSettings], kafka_port: int, mongo_port: int
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "http_port": devstack.free_port(),
        "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
        "mongo_url": devstack.mongo_url(mongo_port),
        "mongo_database": "bench_dependency_down",
        "api_keys": {"bench": KEY},
    }
    if kind is FollowupSettings:
        values["survey_secret"] = secrets.token_hex(32)
    return values


async def measure(count: int) -> None:
    broker = devstack.start_broker(devstack.free_port())
    try:
        assert broker.port is not None
        await devstack.create_topics(f"127.0.0.1:{broker.port}", 1)
        await measure_with(broker.port, count)
    finally:
        broker.stop()


async def measure_with(kafka_port: int, count: int) -> None:
    nowhere = devstack.free_port()
    print(f"database never started (nothing listens on {nowhere}), {count} requests each:")
    router = build_router(
        RouterSettings.model_validate(settings(RouterSettings, kafka_port, nowhere))
    )
    async with serving(router) as http:
        print("  router  ", await timed(http, "GET", "/v1/agents", count))
        print("  router  ", await timed(http, "PUT", "/v1/agents/x/availability", count))
    followup = build_followup(
        FollowupSettings.model_validate(settings(FollowupSettings, kafka_port, nowhere))
    )
    async with serving(followup) as http:
        print("  followup", await timed(http, "GET", "/v1/cases", count))
        print("  followup", await timed(http, "GET", "/v1/cases/some-case", count))

    database = devstack.start_database(devstack.free_port(), ":memory:")
    assert database.port is not None
    try:
        router = build_router(
            RouterSettings.model_validate(settings(RouterSettings, kafka_port, database.port))
        )
        async with serving(router) as http:
            await asyncio.wait_for(router.dependencies_ready.wait(), 60)
            print("database up:")
            print("  router  ", await timed(http, "GET", "/v1/agents", count))
            database.kill()
            print("database killed under the running router:")
            print("  router  ", await timed(http, "GET", "/v1/agents", count))
    finally:
        database.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10)
    asyncio.run(measure(parser.parse_args().requests))


if __name__ == "__main__":
    main()
