"""CloudEvents 1.0 envelope over the Kafka protocol binding (binary content mode).

Attributes travel as ``ce_*`` headers, the payload as JSON in the message value, the
partition key as the message key. The ``cloudevents`` package does the binding.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from shared.contracts import (
    EVENT_MODELS,
    EVENT_VERSION,
    EventData,
    event_type,
    parse_event_type,
)

D = TypeVar("D", bound=EventData)

# Namespace of every deterministic id closeloop derives (feedback, case, event ids).
ID_NAMESPACE = uuid.UUID("6f1c3f0e-4a8e-5b7d-9c1a-2d3e4f5a6b7c")
_ID_NAMESPACE_BYTES = ID_NAMESPACE.bytes
DATA_CONTENT_TYPE = "application/json"
_JSON_FORMAT = JSONFormat()


def derive_id(*parts: str) -> str:
    """A deterministic id from its parts: the same parts always give the same id,
    so a retried step produces the same record instead of a second one.

    The id is ``str(uuid.uuid5(ID_NAMESPACE, "\\x1f".join(parts)))`` (RFC 4122 name-based,
    SHA-1), written out directly: every event and feedback derives at least one, and
    ``uuid.UUID``'s checks and conversions cost more than the hash itself.
    """
    name = "\x1f".join(parts).encode()
    digest = bytearray(hashlib.sha1(_ID_NAMESPACE_BYTES + name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_ = digest[:16].hex()
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


class PoisonMessage(Exception):
    """A message that can never be processed as it is: it belongs in the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Event(Generic[D]):
    id: str
    source: str
    time: datetime
    data: D

    @property
    def name(self) -> str:
        return self.data.event_name

    @property
    def type(self) -> str:
        return event_type(self.data.event_name)

    @property
    def topic(self) -> str:
        return self.data.topic.value

    @property
    def key(self) -> str:
        return self.data.partition_key()

    @property
    def subject(self) -> str:
        return self.data.subject()


def new_event(data: D, *, source: str, cause: str, time: datetime | None = None) -> Event[D]:
    """An event whose id is derived from what caused it (``cause``) and its type, so a
    handler that runs twice for the same cause emits the same event id twice, which
    consumers recognise as one event."""
    return Event(
        id=derive_id(cause, data.event_name),
        source=source,
        time=time or datetime.now(UTC),
        data=data,
    )


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def to_record(event: Event[Any]) -> KafkaRecord:
    key = event.key.encode()
    cloud_event = CloudEvent(
        attributes={
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "time": event.time,
            "subject": event.subject,
            "datacontenttype": DATA_CONTENT_TYPE,
        },
        # pydantic writes the JSON itself (fast, in Rust); the binding carries the bytes.
        data=event.data.model_dump_json().encode(),
    )
    # The partition key goes straight to the message key (what the binding does with a
    # ``partitionkey`` extension, minus the ce_partitionkey header we would drop again).
    message = ce_kafka.to_binary(cloud_event, _JSON_FORMAT, key_mapper=lambda _: key)
    return KafkaRecord(
        topic=event.topic, key=key, value=message.value, headers=list(message.headers.items())
    )


def from_record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> Event[EventData]:
    """Parse and validate one Kafka message; raise PoisonMessage saying what is wrong."""
    header_map = {name: raw for name, raw in headers}
    if "ce_type" not in header_map or "ce_id" not in header_map:
        raise PoisonMessage("not a CloudEvent: ce_id and ce_type headers are missing")
    try:
        cloud_event = ce_kafka.from_binary_event(
            ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b"")
        )
    except Exception as exc:  # the binding raises several unrelated error types
        raise PoisonMessage(f"invalid CloudEvent: {exc}") from exc

    attributes = cloud_event.get_attributes()
    try:
        name, version = parse_event_type(str(attributes["type"]))
    except ValueError as exc:
        raise PoisonMessage(str(exc)) from exc
    model = EVENT_MODELS.get(name)
    if model is None:
        raise PoisonMessage(f"unknown event type {attributes['type']!r}")
    if version != EVENT_VERSION:
        raise PoisonMessage(f"unsupported version {version!r} of {name}")

    payload = cloud_event.get_data()
    if not isinstance(payload, dict):
        raise PoisonMessage(
            f"data of {name} is not a JSON object (empty, not JSON, or not an object)"
        )
    try:
        data = model.model_validate(payload)
    except ValidationError as exc:
        raise PoisonMessage(f"invalid {name}: {describe_validation_error(exc)}") from exc

    time = attributes.get("time")
    if not isinstance(time, datetime):
        time = datetime.now(UTC)
    return Event(id=str(attributes["id"]), source=str(attributes["source"]), time=time, data=data)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each invalid field and why."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )
