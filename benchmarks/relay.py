"""A bare aiokafka consume-and-produce relay: the baseline the services are measured
against. It does what every closeloop consumer does at the least (fetch a batch, produce
each message with acks=all, wait for the acks, commit) and nothing else: no parsing,
no validation, no database.

    python -m benchmarks.relay --bootstrap HOST:PORT --source TOPIC --target TOPIC
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def relay(
    bootstrap: str, source: str, target: str, group: str, fetch_max_wait_ms: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=400,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                pending = [
                    await producer.send(target, r.value, key=r.key, headers=list(r.headers or ()))
                    for r in records
                ]
                await asyncio.gather(*pending)
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", default="closeloop-bench-relay")
    parser.add_argument(
        "--fetch-max-wait-ms", type=int, default=500, help="as the services' setting"
    )
    args = parser.parse_args()
    asyncio.run(relay(args.bootstrap, args.source, args.target, args.group, args.fetch_max_wait_ms))


if __name__ == "__main__":
    main()
