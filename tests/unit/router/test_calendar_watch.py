"""The router's warning when a calendar's listed public holidays run out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from services.router.app import observe_calendars
from services.router.policy import load_policy


def listed_until(calendar: str) -> float | None:
    return REGISTRY.get_sample_value(
        "closeloop_calendar_holidays_until_timestamp_seconds", {"calendar": calendar}
    )


def test_calendars_that_list_holidays_publish_when_they_run_out() -> None:
    observe_calendars(load_policy(), datetime(2026, 6, 1, tzinfo=UTC))
    new_year = datetime(2027, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert listed_until("china-office") == new_year
    assert listed_until("china-hotline") == new_year
    assert listed_until("always-open") is None


@pytest.mark.parametrize(
    ("now", "warned"),
    [
        (datetime(2026, 11, 1, tzinfo=UTC), False),
        (datetime(2026, 11, 23, tzinfo=UTC), True),
        (datetime(2027, 3, 1, tzinfo=UTC), True),
    ],
)
def test_the_router_warns_within_45_days_of_the_end(
    now: datetime, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.router.app"):
        observe_calendars(load_policy(), now)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = [
        f"calendar {name} lists public holidays through 2026 only: add the next year's "
        "holidays and make-up working days to the routing policy"
        for name in ("china-office", "china-hotline")
    ]
    assert warnings == (expected if warned else [])
