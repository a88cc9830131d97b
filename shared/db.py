"""MongoDB access through PyMongo's native async API (``AsyncMongoClient``)."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from shared.settings import ServiceSettings

Document = dict[str, Any]


def connect(settings: ServiceSettings, app_name: str) -> AsyncMongoClient[Document]:
    """A client for the configured server; it connects lazily and reconnects by itself."""
    return AsyncMongoClient(
        settings.mongo_url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
    )


async def ping(db: AsyncDatabase[Document], timeout_s: float = 2.0) -> bool:
    try:
        await asyncio.wait_for(db.command("ping"), timeout=timeout_s)
    except (PyMongoError, TimeoutError):
        return False
    return True
