"""The shared producer against the real broker: what ``send_records`` and ``publish``
return has been acknowledged, keyed records land where Kafka's partitioner puts them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.contracts import FeedbackReceived
from shared.envelope import KafkaRecord, from_record, new_event
from shared.kafka import EventProducer
from shared.settings import ServiceSettings
from shared.tools import devstack
from tests.conftest import Infra
from tests.support import TopicReader, a_customer, a_feedback

PARTITIONS = 4


@pytest.fixture
async def topic(infra: Infra) -> str:
    name = f"test.producer.{uuid.uuid4().hex[:8]}"
    await devstack.create_topics(infra.bootstrap, PARTITIONS, names=[name])
    return name


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[EventProducer]:
    producer = EventProducer(ServiceSettings(kafka_bootstrap=infra.bootstrap), "test-producer")
    assert await producer.connect()
    yield producer
    await producer.stop()


async def test_every_record_is_on_the_topic_once_sent_and_keys_pick_the_kafka_partition(
    infra: Infra, topic: str, producer: EventProducer
) -> None:
    keys = [f"c-{n:024x}".encode() for n in range(40)]
    records = [
        KafkaRecord(topic=topic, key=key, value=f"value {n}".encode(), headers=[("n", b"%d" % n)])
        for n, key in enumerate(keys)
    ] + [KafkaRecord(topic=topic, key=None, value=b"no key", headers=[])]
    await producer.send_records(records)

    async with TopicReader(infra.bootstrap, topic) as reader:
        await reader.wait_for_record(lambda _: len(reader.records) == len(records), timeout=20)
    every = list(range(PARTITIONS))
    for record in reader.records:
        if record.key is not None:
            assert record.partition == DefaultPartitioner()(record.key, every, every)
    by_value = {record.value: record for record in reader.records}
    assert set(by_value) == {record.value for record in records}
    assert by_value[b"value 7"].headers == (("n", b"7"),)


async def test_one_customers_events_keep_their_order_on_one_partition(
    infra: Infra, producer: EventProducer
) -> None:
    customer = a_customer()
    run = uuid.uuid4().hex[:8]
    published_at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    events = [
        new_event(
            FeedbackReceived(
                feedback=a_feedback(f"message {n}", customer=customer, feedback_id=f"{run}-{n}")
            ),
            source="/test",
            cause=f"{run}-{n}",
            time=published_at,
        )
        for n in range(10)
    ]
    await producer.publish(events)

    key = customer.key.encode()
    async with TopicReader(infra.bootstrap, events[0].topic) as reader:
        await reader.wait_for_record(
            lambda _: sum(1 for record in reader.records if record.key == key) == len(events)
        )
    mine = [record for record in reader.records if record.key == key]
    assert len({record.partition for record in mine}) == 1
    assert [from_record(r.key, r.value, r.headers).subject for r in mine] == [
        f"{run}-{n}" for n in range(10)
    ]
