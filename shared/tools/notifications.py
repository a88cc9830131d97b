"""The messages followup sends customers, printed: the local stack's stand-in for the
channel integrations that read ``customer.notify`` and deliver each message.

``python -m shared.tools.notifications`` (the local stack starts it with the services)
prints one line per message: channel and language, kind, the customer's pseudonymous
key, the case reference and the text, its further lines indented below. It reads in a
consumer group of its own from the beginning of the topic, and commits what it printed,
so a restart goes on where it stopped. SIGTERM or Ctrl-C: it stops fetching, commits
and leaves the group.

Development only: in production each channel integration reads the topic in a
consumer group of its own and delivers the messages (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts import CustomerNotify, Topic
from shared.envelope import PoisonMessage, from_record
from shared.tools import devstack

INDENT = "    "


class NotificationsSettings(BaseSettings):
    """``CLOSELOOP_NOTIFICATIONS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_NOTIFICATIONS_", extra="ignore")

    kafka_bootstrap: str = f"127.0.0.1:{devstack.StackSettings().kafka_port}"
    consumer_group: str = devstack.NOTIFICATIONS_GROUP


def notification_line(notice: CustomerNotify) -> str:
    """One message as the console shows it: a line that says where it goes and what it
    is about, then the text; a text of several lines continues indented below."""
    where = f"{notice.channel.value}/{notice.language} {notice.kind}"
    about = f"to {notice.customer_key}, case {notice.reference}"
    if notice.email_subject:
        about += f', subject "{notice.email_subject}"'
    first, *rest = notice.text.strip().splitlines() or [""]
    lines = [f"notify {where} {about}: {first}"]
    lines += [f"{INDENT}{line}".rstrip() for line in rest]
    return "\n".join(lines)


def record_line(record: ConsumerRecord[bytes, bytes]) -> str:
    """The console line of one message of the topic, or why it cannot be shown."""
    where = f"{record.topic}/{record.partition}@{record.offset}"
    try:
        event = from_record(record.key, record.value, record.headers or ())
    except PoisonMessage as exc:
        return f"notify: unreadable message at {where}: {exc.reason}"
    if not isinstance(event.data, CustomerNotify):
        return f"notify: {event.data.event_name} at {where} is not a customer.notify"
    return notification_line(event.data)


async def print_notifications(
    settings: NotificationsSettings, out: TextIO, stop: asyncio.Event
) -> None:
    """Print every message of customer.notify until ``stop`` is set, committing after
    each batch printed."""
    consumer = AIOKafkaConsumer(
        Topic.CUSTOMER_NOTIFY.value,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # The local broker joins groups quickly only with short sessions, and answers a
        # fetch when its wait ends (devstack.service_env).
        session_timeout_ms=2000,
        heartbeat_interval_ms=400,
        fetch_max_wait_ms=devstack.LOCAL_FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    print(record_line(record), file=out, flush=True)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()


async def main(out: TextIO = sys.stdout) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settings = NotificationsSettings()
    try:
        await print_notifications(settings, out, stop)
    except KafkaError as exc:
        print(f"notify: cannot read {Topic.CUSTOMER_NOTIFY.value}: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
