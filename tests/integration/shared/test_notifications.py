"""The local stack's notifications printer (``python -m shared.tools.notifications``) as
the stack runs it, a process reading customer.notify on the real broker: one readable
line per message, further lines of a text indented, an unreadable message reported
without stopping it, and a clean stop that has committed what it printed."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import Channel, Customer, CustomerNotify, Topic
from shared.envelope import new_event
from shared.tools import devstack
from shared.tools.notifications import notification_line
from tests.conftest import Infra
from tests.support import eventually, produce, produce_raw

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)


def a_notice(run: str, **fields: Any) -> CustomerNotify:
    customer = Customer(id=f"{run}-customer", email=f"{run}@example.com", name="Ann Lee")
    data: dict[str, Any] = {
        "notification_id": f"n-{run}-{uuid.uuid4().hex[:6]}",
        "case_id": f"{run}-case",
        "reference": run[:8],
        "customer_key": customer.key,
        "customer": customer,
        "channel": Channel.SMS,
        "language": "zh",
        "kind": "acknowledgement",
        "template": "acknowledgement/zh/sms",
        "text": f"您的投诉{run[:8]}已收到，我们会在3月9日12:00前回复。",
        "time_zone": "Asia/Shanghai",
        "occurred_at": NOW,
        **fields,
    }
    return CustomerNotify.model_validate(data)


@pytest.fixture
def printer(infra: Infra, tmp_path: Path) -> Iterator[tuple[devstack.Process, Path, str]]:
    """The printer as the stack starts it, its output in a file, in a group of its own."""
    output = tmp_path / "notifications.log"
    group = f"test-notifications-{uuid.uuid4().hex[:8]}"
    process = devstack.spawn(
        "notifications",
        [sys.executable, "-m", "shared.tools.notifications"],
        env={
            "CLOSELOOP_NOTIFICATIONS_KAFKA_BOOTSTRAP": infra.bootstrap,
            "CLOSELOOP_NOTIFICATIONS_CONSUMER_GROUP": group,
        },
        log=output,
    )
    try:
        yield process, output, group
    finally:
        process.stop()


def printed(output: Path) -> str:
    return output.read_text(encoding="utf-8") if output.exists() else ""


async def wait_for_text(output: Path, text: str, timeout: float = 30.0) -> str:
    async def there() -> str | None:
        return printed(output) if text in printed(output) else None

    found: str = await eventually(there, timeout=timeout)
    return found


def test_a_one_line_text_is_one_line_with_channel_language_kind_key_and_reference() -> None:
    notice = a_notice("r1a2b3c4d")
    assert notification_line(notice) == (
        f"notify sms/zh acknowledgement to {notice.customer_key}, case r1a2b3c4: "
        "您的投诉r1a2b3c4已收到，我们会在3月9日12:00前回复。"
    )


def test_the_further_lines_of_a_text_are_indented_and_an_e_mail_shows_its_subject() -> None:
    notice = a_notice(
        "r9z8y7x6w",
        channel=Channel.EMAIL,
        language="en",
        kind="progress",
        template="progress/en/email",
        email_subject="Your complaint r9z8y7x6: an update",
        text="Dear Ann Lee,\n\nwe are still on it.\nKind regards\n",
    )
    assert notification_line(notice).splitlines() == [
        f"notify email/en progress to {notice.customer_key}, case r9z8y7x6, "
        'subject "Your complaint r9z8y7x6: an update": Dear Ann Lee,',
        "",
        "    we are still on it.",
        "    Kind regards",
    ]


async def test_the_printer_prints_each_customer_notify_and_stops_cleanly_with_it_committed(
    infra: Infra, printer: tuple[devstack.Process, Path, str]
) -> None:
    process, output, group = printer
    run = uuid.uuid4().hex[:8]
    sms = a_notice(run)
    email = a_notice(
        run,
        channel=Channel.EMAIL,
        language="en",
        kind="promise",
        template="promise/en/email",
        email_subject=f"Your complaint {run}",
        text=f"Dear Ann Lee,\nwe will refund the delivery fee by 11 March.\nCase {run}",
    )
    await produce(infra.bootstrap, [new_event(sms, source="/test", cause=f"{run}-sms", time=NOW)])
    # Not an event at all, on the customer's partition between the two: reported, and
    # the next message is printed all the same.
    key = sms.customer_key.encode()
    await produce_raw(infra.bootstrap, Topic.CUSTOMER_NOTIFY.value, b"{}", key=key)
    await produce(
        infra.bootstrap, [new_event(email, source="/test", cause=f"{run}-email", time=NOW)]
    )

    out = await wait_for_text(output, f"Case {run}")
    lines = out.splitlines()
    unreadable = [i for i, line in enumerate(lines) if line.startswith("notify: unreadable")]
    assert (
        lines.index(notification_line(sms))
        < unreadable[-1]
        < lines.index(notification_line(email).splitlines()[0])
    )
    assert (
        f"notify email/en promise to {email.customer_key}, case {run}, subject "
        f'"Your complaint {run}": Dear Ann Lee,\n'
        "    we will refund the delivery fee by 11 March.\n"
        f"    Case {run}\n"
    ) in out
    assert lines[unreadable[-1]].endswith("not a CloudEvent: ce_id and ce_type headers are missing")
    # Contact details stay out of the console: the pseudonymous key stands for them.
    assert f"{run}@example.com" not in out

    # What it printed is committed: a stop of the stack waits for nothing more.
    async def nothing_left() -> bool:
        return await devstack.backlog(infra.bootstrap, {group: (Topic.CUSTOMER_NOTIFY,)}) == 0

    assert await eventually(nothing_left, timeout=30)
    started = time.monotonic()
    process.stop()
    assert process.popen.returncode == 0, printed(output)
    assert time.monotonic() - started < 10
