"""CloudEvents 1.0 envelope over the Kafka protocol binding (binary content mode).

Attributes travel as ``ce_*`` headers, the payload as JSON in the message value, the
partition key as the message key. The ``cloudevents`` package does the binding.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.spec import SPECVERSION_V1_0
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from shared.contracts import (
    EVENT_MODELS,
    EVENT_VERSION,
    EventData,
    error_message,
    event_type,
    parse_event_type,
)

D = TypeVar("D", bound=EventData)

# Namespace of every deterministic id closeloop derives (feedback, case, event ids).
ID_NAMESPACE = uuid.UUID("6f1c3f0e-4a8e-5b7d-9c1a-2d3e4f5a6b7c")
_ID_NAMESPACE_BYTES = ID_NAMESPACE.bytes
# The 17th hex digit of a UUID holds its variant (RFC 4122: binary 10xx).
_VARIANT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}
DATA_CONTENT_TYPE = "application/json"
_JSON_FORMAT = JSONFormat()


def derive_id(*parts: str) -> str:
    """A deterministic id from its parts: the same parts always give the same id,
    so a retried step produces the same record instead of a second one.

    The id is ``str(uuid.uuid5(ID_NAMESPACE, "\\x1f".join(parts)))`` (RFC 4122 name-based,
    SHA-1), written out directly: every event and feedback derives at least one, and
    ``uuid.UUID``'s checks and conversions cost more than the hash itself.
    """
    digest = hashlib.sha1(
        _ID_NAMESPACE_BYTES + "\x1f".join(parts).encode(), usedforsecurity=False
    ).hexdigest()
    # The version (5) replaces the 13th hex digit; the variant (10xx) the top bits of
    # the 17th.
    return (
        f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
        f"{_VARIANT[digest[16]]}{digest[17:20]}-{digest[20:32]}"
    )


class PoisonMessage(Exception):
    """A message that can never be processed as it is: it belongs in the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Event(NamedTuple, Generic[D]):
    """One event: its CloudEvents attributes and its data. Immutable: a named tuple,
    which costs a third of what a frozen dataclass does to make, and every service makes
    one per event it emits or reads."""

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


class KafkaRecord(NamedTuple):
    """One Kafka message to produce. Immutable: a named tuple, which costs about half
    as much to make as a frozen dataclass, and one is made per event."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def to_record(event: Event[Any]) -> KafkaRecord:
    """The Kafka message of an event: the ``cloudevents`` binding (binary content mode)
    writes the attributes as ``ce_*`` headers; the data is the event's JSON, written by
    pydantic once; the partition key is the message key."""
    data = event.data
    key = data.partition_key().encode()
    attributes = {
        "id": event.id,
        "source": event.source,
        "type": _event_type(data.event_name),
        "time": event.time,
        "subject": data.subject(),
        "datacontenttype": DATA_CONTENT_TYPE,
        "specversion": SPECVERSION_V1_0,
    }
    payload = _json(data)
    cloud_event: BaseCloudEvent
    if _checked_once(event.source, attributes["type"]) and _well_formed(attributes):
        cloud_event = _ValidEvent(attributes, payload)
    else:
        cloud_event = CloudEvent(attributes=attributes, data=payload)  # raises what is wrong
    # The partition key goes straight to the message key (what the binding does with a
    # ``partitionkey`` extension, minus the ce_partitionkey header we would drop again).
    message = ce_kafka.to_binary(cloud_event, _JSON_FORMAT, key_mapper=lambda _: key)
    return KafkaRecord(
        topic=data.topic.value, key=key, value=message.value, headers=list(message.headers.items())
    )


def to_records(events: Sequence[Event[Any]]) -> list[KafkaRecord]:
    """``[to_record(event) for event in events]``, the same records, with the binding's
    work for what events share done once: events of one source and type stamped with
    one time (a batch published together) share their source, type, time, content type
    and spec version headers, which the binding writes once for all of them; per event
    it writes the id and the subject."""
    groups: dict[tuple[str, type[Any], datetime], list[int]] = {}
    for index, event in enumerate(events):
        groups.setdefault((event.source, type(event.data), event.time), []).append(index)
    records: list[KafkaRecord | None] = [None] * len(events)
    for (source, kind, time), indexes in groups.items():
        if len(indexes) == 1 or not (
            isinstance(time, datetime)
            and time.tzinfo is not None
            and _checked_once(source, _event_type(kind.event_name))
        ):
            for index in indexes:
                records[index] = to_record(events[index])
            continue
        shared = _shared_headers(source, _event_type(kind.event_name), time)
        topic = kind.topic.value
        for index in indexes:
            records[index] = _grouped_record(events[index], topic, shared)
    return [record for record in records if record is not None]


def _shared_headers(source: str, type_: str, time: datetime) -> list[tuple[str, bytes]]:
    """The headers the binding writes for a source, type and time (and the content
    type and spec version): ce_source, ce_type, ce_time, content-type, ce_specversion."""
    message = ce_kafka.to_binary(
        _ValidEvent(
            {
                "source": source,
                "type": type_,
                "time": time,
                "datacontenttype": DATA_CONTENT_TYPE,
                "specversion": SPECVERSION_V1_0,
            }
        ),
        _JSON_FORMAT,
    )
    return list(message.headers.items())


def _grouped_record(event: Event[Any], topic: str, shared: list[tuple[str, bytes]]) -> KafkaRecord:
    data = event.data
    id_, subject = event.id, data.subject()
    if not (isinstance(id_, str) and id_ and isinstance(subject, str) and subject):
        return to_record(event)  # the package says what is wrong
    source, type_, time, content_type, specversion = shared
    # What the binding writes for the two string attributes that differ per event (their
    # UTF-8 bytes) and for bytes data (the bytes as they are), without a binding call per
    # event: a test checks these records equal to_record's byte for byte. The order
    # to_record gives: ce_id, ce_source, ce_type, ce_time, ce_subject, content-type,
    # ce_specversion.
    headers = [
        ("ce_id", id_.encode()),
        source,
        type_,
        time,
        ("ce_subject", subject.encode()),
        content_type,
        specversion,
    ]
    return KafkaRecord(
        topic=topic, key=data.partition_key().encode(), value=_json(data), headers=headers
    )


def _json(data: EventData) -> bytes:
    """The event's data as JSON, written by pydantic (in Rust) straight to bytes: the
    same bytes as ``model_dump_json().encode()`` without the str in between."""
    return data.__pydantic_serializer__.to_json(data)


@functools.cache
def _event_type(name: str) -> str:
    return event_type(name)


@functools.cache
def _checked_once(source: str, type_: str) -> bool:
    """The ``cloudevents`` package's own checks of what every event of this source and
    type shares (source, type, content type, spec version); raises if one fails."""
    CloudEvent(
        attributes={
            "id": "-",
            "source": source,
            "type": type_,
            "datacontenttype": DATA_CONTENT_TYPE,
            "specversion": SPECVERSION_V1_0,
        }
    )
    return True


def _well_formed(attributes: dict[str, Any]) -> bool:
    """What the package checks of the attributes that differ per event: a non-empty id
    and subject, and a time with its time zone."""
    id_, subject, time = attributes["id"], attributes["subject"], attributes["time"]
    return (
        isinstance(id_, str)
        and bool(id_)
        and isinstance(subject, str)
        and bool(subject)
        and isinstance(time, datetime)
        and time.tzinfo is not None
    )


class _ValidEvent:
    """A CloudEvent, or the attributes of one that a batch of events share, that passed
    the package's checks (``_checked_once`` for what every event of a source and type
    shares, ``_well_formed`` or ``_grouped_record`` for the rest), handed to the
    package's binding through its ``BaseCloudEvent`` protocol: the checks are not run
    again for every event of a batch."""

    __slots__ = ("_attributes", "_data")

    def __init__(self, attributes: dict[str, Any], data: bytes | None = None) -> None:
        self._attributes = attributes
        self._data = data

    def get_id(self) -> str:
        return str(self._attributes["id"])

    def get_source(self) -> str:
        return str(self._attributes["source"])

    def get_type(self) -> str:
        return str(self._attributes["type"])

    def get_specversion(self) -> str:
        return str(self._attributes["specversion"])

    def get_datacontenttype(self) -> str | None:
        return self._attributes.get("datacontenttype")

    def get_dataschema(self) -> str | None:
        return self._attributes.get("dataschema")

    def get_subject(self) -> str | None:
        return self._attributes.get("subject")

    def get_time(self) -> datetime | None:
        return self._attributes.get("time")

    def get_extension(self, extension_name: str) -> Any:
        return self._attributes.get(extension_name)

    def get_data(self) -> bytes | None:
        return self._data

    def get_attributes(self) -> dict[str, Any]:
        return self._attributes


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
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {error_message(err)}"
        for err in exc.errors()
    )
