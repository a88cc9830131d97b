"""Time helpers. Domain code takes ``now`` as an argument; entry points read the clock."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now in UTC at millisecond precision, the precision MongoDB stores, so that a value
    read back from the database equals the one written."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
