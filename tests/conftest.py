"""Session fixtures: a real Kafka-protocol broker (Tansu) and a real MongoDB-wire
server (SecantusDB), each a subprocess on a free port, stopped after the run."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from shared.db import Document
from shared.tools import devstack


@dataclass(frozen=True)
class Infra:
    kafka_port: int
    mongo_port: int
    log_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_url(self) -> str:
        return devstack.mongo_url(self.mongo_port)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    log_dir = Path(tempfile.mkdtemp(prefix="closeloop-test-"))
    kafka = devstack.start_broker(devstack.free_port(), log_dir / "kafka.log")
    try:
        mongo = devstack.start_database(devstack.free_port(), ":memory:", log_dir / "mongodb.log")
    except BaseException:
        kafka.stop()
        raise
    try:
        assert kafka.port is not None and mongo.port is not None
        asyncio.run(devstack.create_topics(f"127.0.0.1:{kafka.port}", partitions=3))
        yield Infra(kafka_port=kafka.port, mongo_port=mongo.port, log_dir=log_dir)
    finally:
        mongo.stop()
        kafka.stop()


@pytest.fixture
def database_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def mongo_client(infra: Infra) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(infra.mongo_url, tz_aware=True)
    yield client
    await client.close()
