"""Create closeloop's Kafka topics with their partition counts: a one-shot job.

``python -m deploy.tools.topics`` reads ``deploy/kafka/topics.yaml`` (or
``CLOSELOOP_TOPICS_FILE``), creates every missing topic with its partitions,
replication factor and configs, adds partitions where the file asks for more than a
topic has, and exits 0. Running it again changes nothing. It refuses to start when the
file misses one of closeloop's topics or asks for fewer partitions than a topic has
(Kafka cannot remove partitions).

Environment (``CLOSELOOP_TOPICS_`` prefix): ``KAFKA_BOOTSTRAP``, ``FILE``,
``REPLICATION_FACTOR`` and ``MIN_INSYNC_REPLICAS`` (overrides for a smaller cluster),
``WAIT_S`` (how long to wait for the brokers), ``LOG_LEVEL``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import load_yaml
from shared.contracts import Topic, dlq_topic
from shared.logging import setup_logging

log = logging.getLogger("closeloop.topics")

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "kafka" / "topics.yaml"
TOPIC_ALREADY_EXISTS = 36


def required_topics() -> list[str]:
    """Every topic a closeloop service reads or writes, dead-letter topics included."""
    return [name for topic in Topic for name in (topic.value, dlq_topic(topic.value))]


class TopicSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: int = Field(ge=1)
    configs: dict[str, str] = Field(default_factory=dict)


class TopicsFile(BaseModel):
    """``deploy/kafka/topics.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replication_factor: int = Field(ge=1)
    configs: dict[str, str] = Field(default_factory=dict)
    topics: dict[str, TopicSpec]

    @model_validator(mode="after")
    def _covers_every_topic(self) -> TopicsFile:
        missing = [name for name in required_topics() if name not in self.topics]
        if missing:
            raise ValueError(f"topics: missing {', '.join(missing)}")
        return self


class TopicsSettings(BaseSettings):
    """``CLOSELOOP_TOPICS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_TOPICS_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    file: Path = DEFAULT_FILE
    replication_factor: int | None = Field(
        default=None, ge=1, description="Overrides the file's replication factor"
    )
    min_insync_replicas: int | None = Field(
        default=None, ge=1, description="Overrides the file's min.insync.replicas"
    )
    wait_s: float = Field(default=300, gt=0, description="How long to wait for the brokers")
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    log_level: str = "INFO"


@dataclass(frozen=True)
class Wanted:
    """A topic as the file (with any overrides) wants it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class Existing:
    """A topic as the cluster has it."""

    partitions: int
    replication_factor: int


@dataclass
class Plan:
    create: list[Wanted] = field(default_factory=list)
    grow: dict[str, int] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def wanted_topics(
    spec: TopicsFile,
    *,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
) -> list[Wanted]:
    """The topics to have, with the file's shared configs under each topic's own."""
    factor = replication_factor or spec.replication_factor
    out = []
    for name, topic in spec.topics.items():
        configs = {**spec.configs, **topic.configs}
        if min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(min_insync_replicas)
        min_isr = int(configs.get("min.insync.replicas", "1"))
        if min_isr > factor:
            # acks=all could never be satisfied: every write would fail.
            raise ValueError(
                f"{name}: min.insync.replicas {min_isr} is above the replication factor {factor}"
            )
        out.append(Wanted(name, topic.partitions, factor, configs))
    return out


def plan(wanted: list[Wanted], existing: Mapping[str, Existing]) -> Plan:
    """What to do so the cluster has every wanted topic. Pure: no I/O."""
    result = Plan()
    for topic in wanted:
        have = existing.get(topic.name)
        if have is None:
            result.create.append(topic)
            continue
        if have.partitions < topic.partitions:
            result.grow[topic.name] = topic.partitions
        elif have.partitions > topic.partitions:
            result.problems.append(
                f"{topic.name} has {have.partitions} partitions, the file asks for "
                f"{topic.partitions}: Kafka cannot remove partitions; raise the count in the file"
            )
        else:
            result.unchanged.append(topic.name)
        if have.replication_factor != topic.replication_factor:
            result.notes.append(
                f"{topic.name} has replication factor {have.replication_factor}, the file asks "
                f"for {topic.replication_factor}: change it with a partition reassignment"
            )
    return result


def parse_description(description: Mapping[str, Any]) -> Existing:
    partitions = description["partitions"]
    factor = max((len(p["replicas"]) for p in partitions), default=0)
    return Existing(partitions=len(partitions), replication_factor=factor)


async def _connect(settings: TopicsSettings) -> AIOKafkaAdminClient:
    deadline = time.monotonic() + settings.wait_s
    delay = 0.5
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="closeloop-topics",
            request_timeout_ms=settings.request_timeout_ms,
        )
        try:
            await admin.start()
            return admin
        except KafkaError as exc:
            await admin.close()
            if time.monotonic() + delay > deadline:
                raise
            log.info("brokers not reachable yet: %r", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def read_existing(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, Existing]:
    present = sorted(set(await admin.list_topics()) & set(names))
    if not present:
        return {}
    return {
        description["topic"]: parse_description(description)
        for description in await admin.describe_topics(present)
        if description["error_code"] == 0
    }


def _raise_for_errors(response: Any, action: str) -> None:
    for error in getattr(response, "topic_errors", []):
        name, code = error[0], error[1]
        message = error[2] if len(error) > 2 else None
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"{action} {name} failed: error {code} {message or ''}".strip())


async def apply(settings: TopicsSettings) -> Plan:
    """Bring the cluster to the file; returns what was done."""
    spec = load_yaml(settings.file, TopicsFile)
    wanted = wanted_topics(
        spec,
        replication_factor=settings.replication_factor,
        min_insync_replicas=settings.min_insync_replicas,
    )
    admin = await _connect(settings)
    try:
        existing = await read_existing(admin, [topic.name for topic in wanted])
        result = plan(wanted, existing)
        if result.problems:
            return result
        if result.create:
            response = await admin.create_topics(
                [
                    NewTopic(
                        topic.name,
                        num_partitions=topic.partitions,
                        replication_factor=topic.replication_factor,
                        topic_configs=dict(topic.configs),
                    )
                    for topic in result.create
                ]
            )
            _raise_for_errors(response, "creating")
        if result.grow:
            response = await admin.create_partitions(
                {name: NewPartitions(total_count=count) for name, count in result.grow.items()}
            )
            _raise_for_errors(response, "adding partitions to")
        return result
    finally:
        await admin.close()


def main() -> int:
    settings = TopicsSettings()
    setup_logging("topics", settings.log_level)
    try:
        result = asyncio.run(apply(settings))
    except (KafkaError, RuntimeError, ValueError) as exc:
        log.error("topics not created: %s", exc)
        return 1
    for note in result.notes:
        log.warning(note)
    if result.problems:
        for problem in result.problems:
            log.error(problem)
        return 1
    log.info(
        "topics ready",
        extra={
            "topics_created": [topic.name for topic in result.create],
            "partitions_added": result.grow,
            "topics_unchanged": result.unchanged,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
