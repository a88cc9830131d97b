"""Business-time arithmetic over a team's calendar. Pure: no I/O, no clock reads.

A calendar is a time zone, the working hours of each weekday in local wall time,
holidays (closed all day) and extra working days (a weekend worked in exchange for a
holiday, as Chinese calendars do). Every local span is turned into a pair of UTC
instants on its own date, so durations are real elapsed time: a 24-hour calendar has
a 23-hour day in spring and a 25-hour day in autumn, and "09:00 local" stays 09:00
local on both sides of a daylight-saving change. A local time that does not exist
(skipped by the clock going forward) counts as the same wall time after the change.

Working spans are closed at both ends for deadlines: a deadline may fall exactly at
closing time, never after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
# A calendar that never opens in this many days is a configuration error, not a wait.
MAX_SEARCH_DAYS = 3 * 366

Span = tuple[int, int]
"""Minutes from local midnight: (start, end) with 0 <= start < end <= 1440."""


@dataclass(frozen=True)
class Calendar:
    time_zone: ZoneInfo
    weekly: tuple[tuple[Span, ...], ...]
    """Working spans for Monday (index 0) to Sunday (index 6), sorted, not overlapping."""
    holidays: frozenset[date] = frozenset()
    extra_workdays: Mapping[date, tuple[Span, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("a calendar needs the working spans of all seven weekdays")
        if not any(self.weekly) and not self.extra_workdays:
            raise ValueError("a calendar needs some working time")

    def spans_on(self, day: date) -> tuple[Span, ...]:
        if day in self.extra_workdays:
            return self.extra_workdays[day]
        if day in self.holidays:
            return ()
        return self.weekly[day.weekday()]

    def working_periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working periods of one local date as UTC instants, in order."""
        periods = []
        for start, end in self.spans_on(day):
            opens, closes = self._instant(day, start), self._instant(day, end)
            if closes > opens:
                periods.append((opens, closes))
        return periods

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.time_zone).date()

    def _instant(self, day: date, minute: int) -> datetime:
        wall = datetime.combine(day, time()) + timedelta(minutes=minute)
        return wall.replace(tzinfo=self.time_zone).astimezone(UTC)


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("business-time arithmetic needs time-zone-aware datetimes")


def _days_from(calendar: Calendar, instant: datetime, step: int) -> Iterator[date]:
    # A span never crosses local midnight, so periods touching ``instant`` lie on its
    # local date or beyond it in the direction of travel.
    day = calendar.local_date(instant)
    for offset in range(MAX_SEARCH_DAYS):
        yield day + timedelta(days=offset * step)
    raise ValueError(f"the calendar has no working time within {MAX_SEARCH_DAYS} days")


def add_business_time(calendar: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The instant by which ``duration`` of working time has passed after ``start``.

    Time outside working hours does not count. With a zero duration this is the first
    working instant at or after ``start``.
    """
    _require_aware(start)
    if duration < timedelta(0):
        return subtract_business_time(calendar, start, -duration)
    remaining = duration
    for day in _days_from(calendar, start, 1):
        for opens, closes in calendar.working_periods(day):
            if closes <= start:
                continue
            begin = max(opens, start)
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
    raise AssertionError("unreachable: _days_from raises when the search ends")


def subtract_business_time(calendar: Calendar, end: datetime, duration: timedelta) -> datetime:
    """The latest instant from which ``duration`` of working time ends at ``end``.

    Adding then subtracting the same duration gives back the start (or, if the start
    was outside working hours, the opening it was moved to).
    """
    _require_aware(end)
    if duration < timedelta(0):
        return add_business_time(calendar, end, -duration)
    remaining = duration
    for day in _days_from(calendar, end, -1):
        for opens, closes in reversed(calendar.working_periods(day)):
            if opens >= end:
                continue
            finish = min(closes, end)
            available = finish - opens
            if remaining <= available:
                return finish - remaining
            remaining -= available
    raise AssertionError("unreachable: _days_from raises when the search ends")


def business_time_between(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    """Working time between two instants; negative when ``end`` comes first."""
    _require_aware(start)
    _require_aware(end)
    if end < start:
        return -business_time_between(calendar, end, start)
    total = timedelta(0)
    day = calendar.local_date(start)
    last = calendar.local_date(end)
    while day <= last:
        for opens, closes in calendar.working_periods(day):
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def is_working_time(calendar: Calendar, instant: datetime) -> bool:
    """Whether ``instant`` lies within a working period, opening and closing included."""
    _require_aware(instant)
    day = calendar.local_date(instant)
    return any(
        opens <= instant <= closes
        for candidate in (day - timedelta(days=1), day)
        for opens, closes in calendar.working_periods(candidate)
    )
