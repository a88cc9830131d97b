"""Helpers for tests that cross a real process boundary (broker, database, HTTP)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import BaseRoute

from shared.contracts import (
    CaseRouted,
    Channel,
    Classification,
    Customer,
    Feedback,
    Priority,
    RootCause,
    Routing,
    Urgency,
)
from shared.envelope import Event, from_record, to_record


async def produce(bootstrap: str, events: list[Event[Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            record = to_record(event)
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=record.headers
            )
    finally:
        await producer.stop()


async def produce_raw(
    bootstrap: str,
    topic: str,
    value: bytes,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


def _parsed(record: ConsumerRecord[bytes, bytes]) -> Event[Any] | None:
    try:
        return from_record(record.key, record.value, record.headers or ())
    except Exception:
        return None


class TopicReader:
    """Reads a topic from the beginning (its own throw-away group) and keeps every record."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._events: list[Event[Any] | None] = []  # records[i] parsed, None if not an event
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=f"test-reader-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=2000,
            heartbeat_interval_ms=400,
        )

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=200)
        for messages in batch.values():
            self.records.extend(messages)
            # Each record parsed once, as it arrives, not at every look: the services
            # under test share this process's event loop with the waiting.
            self._events.extend(_parsed(record) for record in messages)

    async def wait_for_record(
        self, match: Callable[[ConsumerRecord[bytes, bytes]], bool], timeout: float = 20.0
    ) -> ConsumerRecord[bytes, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            for record in self.records:
                if match(record):
                    return record
            if time.monotonic() > deadline:
                raise TimeoutError("no matching record arrived")
            await self._poll()

    async def wait_for(
        self, match: Callable[[Event[Any]], bool], timeout: float = 20.0
    ) -> Event[Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events:
                if event is not None and match(event):
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError("no matching record arrived")
            await self._poll()

    async def collect(self, seconds: float) -> list[Event[Any]]:
        """Everything parseable that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self._poll()
        return [event for event in self._events if event is not None]


async def metric_sum(http: httpx.AsyncClient, sample: str, **labels: str) -> float:
    """The sum of a service's ``/metrics`` samples named ``sample`` with these labels."""
    text = (await http.get("/metrics")).text
    return sum(
        found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items())
    )


def with_id(event_id: str) -> Callable[[Event[Any]], bool]:
    return lambda event: event.id == event_id


def a_customer(**overrides: Any) -> Customer:
    data = {"id": f"C-{uuid.uuid4().hex[:8]}", "email": "li.wei@example.com", **overrides}
    return Customer.model_validate(data)


async def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Await ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def a_feedback(
    text: str = "My parcel never arrived",
    *,
    at: datetime = NOW,
    customer: Customer | None = None,
    **fields: Any,
) -> Feedback:
    """A valid feedback; any field can be overridden."""
    customer = customer or a_customer()
    data: dict[str, Any] = {
        "feedback_id": str(uuid.uuid4()),
        "channel": Channel.WEB,
        "customer": customer,
        "customer_key": customer.key,
        "text": text,
        "language": "en",
        "received_at": at,
        "ingested_at": at,
        **fields,
    }
    return Feedback.model_validate(data)


def a_classification(
    cause: RootCause = "delivery", urgency: Urgency = Urgency.MEDIUM, **fields: Any
) -> Classification:
    data: dict[str, Any] = {
        "root_cause": cause,
        "urgency": urgency,
        "sentiment": -0.3,
        "confidence": 0.8,
        "model_version": "test",
        **fields,
    }
    return Classification.model_validate(data)


def a_routing(priority: Priority = Priority.P3, *, at: datetime = NOW, **fields: Any) -> Routing:
    data: dict[str, Any] = {
        "priority": priority,
        "team": "logistics",
        "agent": "agent-wang-fang",
        "rule": "delivery",
        "reason": "test",
        "routed_at": at,
        "first_response_due": at + timedelta(hours=8),
        "resolution_due": at + timedelta(hours=72),
        **fields,
    }
    return Routing.model_validate(data)


def a_case_routed(priority: Priority = Priority.P3, *, at: datetime = NOW) -> CaseRouted:
    feedback = a_feedback(at=at)
    return CaseRouted(
        case_id=str(uuid.uuid4()),
        feedback=feedback,
        classification=a_classification(),
        routing=a_routing(priority, at=at),
    )


def http_routes(routes: Sequence[BaseRoute]) -> list[APIRoute]:
    """Every API route an app serves, those of included routers too (FastAPI keeps an
    included router as one entry of ``app.routes``, holding its ``original_router``)."""
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        included = getattr(route, "original_router", None)
        if included is not None:
            out += http_routes(included.routes)
    return out
