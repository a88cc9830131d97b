"""Run a service in this test process, on real ports, against the real broker/database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shared.runtime import Service
from shared.tools.devstack import wait_for_port


@asynccontextmanager
async def running(service: Service, *, wait_ready: bool = True) -> AsyncIterator[Service]:
    task = asyncio.create_task(service.serve())
    await asyncio.to_thread(wait_for_port, service.settings.http_port, 20.0)
    if wait_ready:
        await asyncio.wait_for(service.dependencies_ready.wait(), 30)
    try:
        yield service
    finally:
        service.stopping.set()
        await asyncio.wait_for(task, 30)
