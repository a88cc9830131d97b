"""Kafka runtime on aiokafka: the producer and the consumer loop every service uses.

Delivery contract (see docs/delivery.md):
- the producer writes with acks=all and reports success only once the broker
  acknowledged every record;
- the consumer commits a partition's offset only after the handler finished, its
  state was written and its output events were acknowledged;
- transient failures are retried with backoff without advancing the offset;
- messages that cannot be parsed or validated go to ``<topic>.dlq`` at once, with the
  reason in headers; handler faults go there after a bounded number of attempts;
- a run of consecutive events of one type in a partition may go to a batch handler in
  one call (one database round trip for many events); if the batch fails, its events
  are handled one by one, so a fault is retried and dead-lettered for that event only;
- on stop: no new fetches, the in-flight message finishes, offsets are committed and
  the consumer leaves its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from shared.envelope import Event, KafkaRecord, PoisonMessage, from_record, to_records
from shared.errors import BrokerUnavailable, is_transient
from shared.logging import log_context
from shared.metrics import (
    BATCH_FALLBACKS,
    BATCH_SIZE,
    CONSUMER_LAG,
    DLQ_MESSAGES,
    EVENTS_CONSUMED,
    EVENTS_PRODUCED,
    HANDLER_RETRIES,
    HANDLER_SECONDS,
    PIPELINE_LATENCY,
    PRODUCE_FAILURES,
)
from shared.partitioner import KeyPartitioner, partition_of
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any]], Awaitable[Sequence[Event[Any]]]]
BatchHandler = Callable[[Sequence[Event[Any]]], Awaitable[Sequence[Event[Any]]]]
"""Handles several events of one type at once. It must leave the same state and return
the same events (in any order) as the single-event handler called for each of them, and
be just as idempotent: a batch that failed half-way is handled again one by one."""

DLQ_HEADER_PREFIX = "dlq_"


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class EventProducer:
    """acks=all producer; ``publish`` returns only after every record is acknowledged."""

    # aiokafka keeps one produce request in flight per broker, with at most one batch
    # per partition: what is published meanwhile waits for the next request. With
    # Kafka's usual 16 KiB a batch holds about 20 feedback events (with their CloudEvents
    # headers), so a burst needs many round trips; 256 KiB takes a burst in one and
    # stays well below the broker's limit for a record batch (message.max.bytes, 1 MiB).
    MAX_BATCH_BYTES = 256 * 1024

    def __init__(self, settings: ServiceSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._settings.kafka_idempotence,
            request_timeout_ms=self._settings.kafka_request_timeout_ms,
            linger_ms=1,
            max_batch_size=self.MAX_BATCH_BYTES,
            partitioner=KeyPartitioner(),
        )

    async def connect(self) -> bool:
        """One attempt to connect; False if the broker cannot be reached."""
        if self._producer is not None:
            return True
        producer = self._new_producer()
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("kafka producer cannot connect yet: %s", exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        log.info("kafka producer connected", extra={"bootstrap": self._settings.kafka_bootstrap})
        return True

    async def start(self, stop: asyncio.Event) -> None:
        """Connect, retrying with backoff until connected or asked to stop."""
        delay = self._settings.retry_initial_s
        while not stop.is_set() and not await self.connect():
            await sleep_unless(stop, delay)
            delay = min(delay * 2, self._settings.retry_max_s)

    async def check(self) -> bool:
        """Whether the broker answers a metadata request right now."""
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=2.0)
        except (KafkaError, TimeoutError, OSError):
            return False
        return True

    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        """Send records and wait until the broker acknowledged all of them.

        Every record is handed to the producer first (it joins the batch of its
        partition; ``send`` only waits when that batch is full), then the
        acknowledgements are awaited: the records of one call travel together. A keyed
        record goes to its key's partition by Kafka's default rule, as the Java client
        places it (``shared.partitioner``).
        """
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker")
        pending: list[asyncio.Future[Any]] = []
        partitions: dict[str, list[int]] = {}
        try:
            for record in records:
                partition = None
                if record.key is not None:
                    # Kafka's rule, with the topic's partitions looked up once per call
                    # (partitions_for waits for the topic's metadata if it has none).
                    every = partitions.get(record.topic)
                    if every is None:
                        every = sorted(await producer.partitions_for(record.topic))
                        partitions[record.topic] = every
                    partition = partition_of(record.key, every)
                pending.append(
                    await producer.send(
                        record.topic,
                        record.value,
                        key=record.key,
                        partition=partition,
                        headers=record.headers,
                    )
                )
            for future in pending:
                await future  # resolved together, batch by batch: no callback per record
        except (KafkaError, TimeoutError) as exc:
            for future in pending:
                # Read every outcome, so that none is reported as never retrieved.
                future.add_done_callback(self._retrieve_outcome)
            failed: dict[str, int] = {}
            for record in records:
                failed[record.topic] = failed.get(record.topic, 0) + 1
            for topic, count in failed.items():
                PRODUCE_FAILURES.labels(topic).inc(count)
            raise BrokerUnavailable(f"broker did not acknowledge: {exc!r}") from exc

    async def publish(self, events: Sequence[Event[Any]]) -> None:
        await self.send_records(to_records(events))
        produced: dict[type[Any], int] = {}
        for event in events:
            kind = type(event.data)
            produced[kind] = produced.get(kind, 0) + 1
        for kind, count in produced.items():
            EVENTS_PRODUCED.labels(kind.topic.value, kind.event_name).inc(count)

    @staticmethod
    def _retrieve_outcome(future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


def dead_letter_record(
    message: ConsumerRecord[bytes, bytes], reason: str, kind: str, group: str
) -> KafkaRecord:
    """The original message, unchanged, with why it failed and where it came from."""
    headers = [(k, v) for k, v in (message.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)]
    headers += [
        ("dlq_reason", reason.encode()[:4000]),
        ("dlq_kind", kind.encode()),
        ("dlq_topic", message.topic.encode()),
        ("dlq_partition", str(message.partition).encode()),
        ("dlq_offset", str(message.offset).encode()),
        ("dlq_group", group.encode()),
        ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
    ]
    return KafkaRecord(
        topic=f"{message.topic}.dlq", key=message.key, value=message.value or b"", headers=headers
    )


class _Aborted(Exception):
    """Processing stopped because the service is shutting down; do not commit."""


class ConsumerLoop:
    """Consume topics in a group and hand each event to the handler for its type."""

    def __init__(
        self,
        *,
        settings: ServiceSettings,
        topics: Sequence[str],
        group_id: str,
        client_id: str,
        handlers: Mapping[str, Handler],
        producer: EventProducer,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._group_id = group_id
        self._client_id = client_id
        self._handlers = dict(handlers)
        self._batch_handlers = {
            name: handler for name, handler in (batch_handlers or {}).items() if name in handlers
        }
        self._producer = producer
        self._consumer: AIOKafkaConsumer | None = None
        self._stop = asyncio.Event()
        self._done_offsets: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self.started = False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        consumer = await self._start_consumer()
        if consumer is None:
            return
        try:
            while not self._stop.is_set():
                try:
                    batch = await self._fetch(consumer)
                except KafkaError as exc:
                    log.warning("fetch failed, retrying: %s", exc)
                    await sleep_unless(self._stop, self._settings.retry_initial_s)
                    continue
                try:
                    if not await self._process_together(consumer, batch):
                        for tp, messages in batch.items():
                            await self._process_partition(consumer, tp, messages)
                except _Aborted:
                    break
                self._report_lag(consumer)
        finally:
            await self._commit(consumer)
            # Leaves the group so the partitions move to another copy at once.
            await consumer.stop()
            self.started = False
            log.info("consumer stopped", extra={"group": self._group_id})

    async def _fetch(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """What the broker has; with a linger set, keeps collecting what arrives for that
        long once something came, so that batch handlers see batches at moderate
        rates."""
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
        batch = await consumer.getmany(timeout_ms=500)
        linger = self._settings.kafka_batch_linger_ms
        if not batch or linger <= 0 or not self._batch_handlers:
            return batch
        held = sum(len(m) for m in batch.values())
        most = self._settings.kafka_max_poll_records
        # Lingering stops early once the batch is big enough to be worth handling.
        enough = min(self._settings.kafka_batch_linger_records or most, most)
        deadline = time.monotonic() + linger / 1000
        while held < enough and not self._stop.is_set():
            # Returns as soon as the next fetch brought something, or at the deadline.
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=max(1, int(left * 1000)), max_records=most - held
            )
            for tp, messages in more.items():
                batch.setdefault(tp, []).extend(messages)
                held += len(messages)
        return batch

    async def _start_consumer(self) -> AIOKafkaConsumer | None:
        delay = self._settings.retry_initial_s
        while not self._stop.is_set():
            consumer = AIOKafkaConsumer(
                *self._topics,
                bootstrap_servers=self._settings.kafka_bootstrap,
                group_id=self._group_id,
                client_id=self._client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
                max_poll_records=self._settings.kafka_max_poll_records,
                fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
                request_timeout_ms=max(self._settings.kafka_request_timeout_ms, 5000),
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                log.warning("kafka consumer cannot connect yet: %s", exc)
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await sleep_unless(self._stop, delay)
                delay = min(delay * 2, self._settings.retry_max_s)
                continue
            self._consumer = consumer
            self.started = True
            log.info("consumer started", extra={"group": self._group_id, "topics": self._topics})
            return consumer
        return None

    async def _process_together(
        self,
        consumer: AIOKafkaConsumer,
        batch: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]],
    ) -> bool:
        """The common case: everything fetched, from every partition, is of one type with
        a batch handler (or of types this service does not handle); one call for all of
        it (each partition's events in their order). False if that is not the case or
        the call failed: then partition by partition."""
        run: list[tuple[ConsumerRecord[bytes, bytes], Event[Any]]] = []
        skipped: list[tuple[ConsumerRecord[bytes, bytes], Event[Any]]] = []
        for messages in batch.values():
            for message in messages:
                try:
                    event = from_record(message.key, message.value, message.headers or ())
                except PoisonMessage:
                    return False
                if event.name not in self._handlers:
                    skipped.append((message, event))  # not for this service
                    continue
                if event.name not in self._batch_handlers or (run and run[0][1].name != event.name):
                    return False
                run.append((message, event))
        if len(batch) < 2 or not run or not await self._handle_batch(run):
            return False
        for message, event in skipped:
            EVENTS_CONSUMED.labels(message.topic, event.name, "skipped").inc()
        for tp, messages in batch.items():
            self._done(tp, messages[-1])
        await self._commit(consumer)
        return True

    async def _process_partition(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        messages: Sequence[ConsumerRecord[bytes, bytes]],
    ) -> None:
        run: list[tuple[ConsumerRecord[bytes, bytes], Event[Any]]] = []
        try:
            for message in messages:
                try:
                    event = from_record(message.key, message.value, message.headers or ())
                except PoisonMessage as exc:
                    await self._process_run(tp, run)
                    run = []
                    await self._process(message, exc)
                    self._done(tp, message)
                    continue
                if event.name not in self._batch_handlers:
                    await self._process_run(tp, run)
                    run = []
                    await self._process(message, event)
                    self._done(tp, message)
                    continue
                if run and run[0][1].name != event.name:
                    await self._process_run(tp, run)
                    run = []
                run.append((message, event))
            await self._process_run(tp, run)
        except _Aborted:
            # Unfinished: the next owner of this partition starts here again.
            await self._commit(consumer)
            raise
        await self._commit(consumer)

    def _done(self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes]) -> None:
        self._done_offsets[tp] = self._positions[tp] = message.offset + 1

    async def _process_run(
        self, tp: TopicPartition, run: Sequence[tuple[ConsumerRecord[bytes, bytes], Event[Any]]]
    ) -> None:
        """Consecutive events of one type with a batch handler: one call of it, or, if
        that fails, each event on its own."""
        if run and await self._handle_batch(run):
            self._done(tp, run[-1][0])
            return
        for message, event in run:
            await self._process(message, event)
            self._done(tp, message)

    async def _handle_batch(
        self, run: Sequence[tuple[ConsumerRecord[bytes, bytes], Event[Any]]]
    ) -> bool:
        name = run[0][1].name
        events = [event for _, event in run]
        started = time.perf_counter()
        try:
            outputs = await self._batch_handlers[name](events)
            await self._producer.publish(outputs)
        except Exception as exc:
            if self._stop.is_set():
                raise _Aborted from exc
            BATCH_FALLBACKS.labels(name).inc()
            log.warning(
                "batch of %d %s events failed, handling them one by one: %r",
                len(run),
                name,
                exc,
            )
            return False
        elapsed = time.perf_counter() - started
        now = datetime.now(UTC)
        topic = run[0][0].topic
        EVENTS_CONSUMED.labels(topic, name, "handled").inc(len(run))
        BATCH_SIZE.labels(name).observe(len(run))
        seconds, latency = HANDLER_SECONDS.labels(name), PIPELINE_LATENCY.labels(name)
        for event in events:
            seconds.observe(elapsed / len(run))
            latency.observe(max(0.0, (now - event.time).total_seconds()))
        return True

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        if not self._done_offsets:
            return
        offsets, self._done_offsets = self._done_offsets, {}
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced; the new owner redelivers, and handlers are idempotent.
            log.warning("commit rejected after a rebalance: %s", exc)
        except KafkaError as exc:
            log.warning("commit failed, the messages will be redelivered: %s", exc)

    async def _process(
        self, message: ConsumerRecord[bytes, bytes], event: Event[Any] | PoisonMessage
    ) -> None:
        if isinstance(event, PoisonMessage):
            await self._dead_letter(message, event.reason, kind="invalid", event_type="unknown")
            return
        handler = self._handlers.get(event.name)
        if handler is None:
            EVENTS_CONSUMED.labels(message.topic, event.name, "skipped").inc()
            return
        with log_context(event_id=event.id, event_type=event.name, subject=event.subject):
            await self._handle(message, event, handler)

    async def _handle(
        self, message: ConsumerRecord[bytes, bytes], event: Event[Any], handler: Handler
    ) -> None:
        started = time.perf_counter()
        max_attempts = self._settings.handler_max_attempts

        def give_up(state: RetryCallState) -> bool:
            if self._stop.is_set():
                return True
            failure = state.outcome.exception() if state.outcome else None
            transient = failure is not None and is_transient(failure)
            return not transient and state.attempt_number >= max_attempts

        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            kind = "transient" if failure is not None and is_transient(failure) else "error"
            HANDLER_RETRIES.labels(event.name, kind).inc()
            log.warning(
                "handler attempt %d failed (%s), retrying: %r",
                state.attempt_number,
                kind,
                failure,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: not isinstance(exc, PoisonMessage)),
            stop=give_up,
            wait=wait_exponential_jitter(
                multiplier=self._settings.retry_initial_s,
                max=self._settings.retry_max_s,
                jitter=self._settings.retry_initial_s,
            ),
            sleep=lambda seconds: sleep_unless(self._stop, seconds),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    outputs = await handler(event)
                    await self._producer.publish(outputs)
        except PoisonMessage as exc:
            await self._dead_letter(message, exc.reason, kind="rejected", event_type=event.name)
            return
        except Exception as exc:
            if self._stop.is_set() and (is_transient(exc) or attempts < max_attempts):
                raise _Aborted from exc
            log.exception("handler gave up after %d attempts", attempts)
            reason = f"handler failed after {attempts} attempts: {type(exc).__name__}: {exc}"
            await self._dead_letter(message, reason, kind="failed", event_type=event.name)
            return
        EVENTS_CONSUMED.labels(message.topic, event.name, "handled").inc()
        HANDLER_SECONDS.labels(event.name).observe(time.perf_counter() - started)
        PIPELINE_LATENCY.labels(event.name).observe(
            max(0.0, (datetime.now(UTC) - event.time).total_seconds())
        )

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], reason: str, *, kind: str, event_type: str
    ) -> None:
        record = dead_letter_record(message, reason, kind, self._group_id)
        delay = self._settings.retry_initial_s
        while True:
            try:
                await self._producer.send_records([record])
                break
            except BrokerUnavailable as exc:
                if self._stop.is_set():
                    raise _Aborted from exc
                log.warning("dead-letter write failed, retrying: %s", exc)
                await sleep_unless(self._stop, delay)
                delay = min(delay * 2, self._settings.retry_max_s)
        log.error(
            "message dead-lettered",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "reason": reason,
            },
        )
        DLQ_MESSAGES.labels(message.topic, kind).inc()
        EVENTS_CONSUMED.labels(message.topic, event_type, "dead_lettered").inc()

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self._positions.get(tp)
            if highwater is not None and position is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
