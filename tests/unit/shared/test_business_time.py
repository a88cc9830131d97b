"""Business-time arithmetic: properties over generated calendars, and worked examples
across nights, weekends, holidays, make-up working days, time zones and DST changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.policy import load_policy
from shared.business_time import (
    Calendar,
    Span,
    add_business_time,
    business_time_between,
    is_working_time,
    subtract_business_time,
)

# Zones with DST in either hemisphere, at 01:00, 02:00, 02:45, at midnight, and without DST.
ZONES = [
    "UTC",
    "Asia/Shanghai",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
]
FULL_DAY: tuple[Span, ...] = ((0, 24 * 60),)
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Spec:
    """What a calendar is meant to be, in local wall time: the oracle the tests check
    results against, independently of how the calendar computes instants."""

    zone: str
    weekly: tuple[tuple[Span, ...], ...]
    holidays: frozenset[date]
    extra: Mapping[date, tuple[Span, ...]]

    def spans_on(self, day: date) -> tuple[Span, ...]:
        if day in self.extra:
            return self.extra[day]
        if day in self.holidays:
            return ()
        return self.weekly[day.weekday()]

    def calendar(self) -> Calendar:
        return Calendar(ZoneInfo(self.zone), self.weekly, self.holidays, self.extra)

    def works_just_before(self, instant: datetime) -> bool:
        """Whether the wall-clock moment just before ``instant`` is inside a working span:
        true exactly when ``instant`` is in working hours or at a closing time."""
        local = (instant - TICK).astimezone(ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        return any(start <= minute < end for start, end in self.spans_on(local.date()))


@st.composite
def day_spans(draw: st.DrawFn) -> tuple[Span, ...]:
    kind = draw(st.sampled_from(["closed", "one", "split", "full"]))
    if kind == "closed":
        return ()
    if kind == "full":
        return FULL_DAY
    start = draw(st.integers(5 * 60, 11 * 60))
    end = draw(st.integers(13 * 60, 22 * 60))
    if kind == "one":
        return ((start, end),)
    lunch = draw(st.integers(11 * 60 + 30, 12 * 60 + 30))
    return ((start, lunch), (lunch + 60, end))


DAYS = st.dates(min_value=date(2025, 12, 1), max_value=date(2027, 12, 31))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    weekly = tuple(draw(day_spans()) for _ in range(7))
    if not any(weekly):
        weekly = (((9 * 60, 17 * 60),), *weekly[1:])
    holidays = frozenset(draw(st.lists(DAYS, max_size=25)))
    extra_days = draw(st.lists(DAYS.filter(lambda d: d not in holidays), max_size=4))
    extra = {day: ((10 * 60, 16 * 60),) for day in extra_days}
    return Spec(draw(st.sampled_from(ZONES)), weekly, holidays, extra)


INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 6, 30), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
DURATIONS = st.integers(1, 200 * 3600 * 1000).map(lambda ms: timedelta(milliseconds=ms))
PROPERTY_SETTINGS = settings(max_examples=75, deadline=None)


@PROPERTY_SETTINGS
@given(spec=specs(), start=INSTANTS, duration=DURATIONS)
def test_a_deadline_never_falls_outside_working_hours(
    spec: Spec, start: datetime, duration: timedelta
) -> None:
    calendar = spec.calendar()
    deadline = add_business_time(calendar, start, duration)
    assert deadline > start
    assert spec.works_just_before(deadline)
    assert is_working_time(calendar, deadline)


@PROPERTY_SETTINGS
@given(spec=specs(), start=INSTANTS, duration=DURATIONS)
def test_adding_then_subtracting_returns_to_the_first_working_instant(
    spec: Spec, start: datetime, duration: timedelta
) -> None:
    calendar = spec.calendar()
    deadline = add_business_time(calendar, start, duration)
    opening = add_business_time(calendar, start, timedelta(0))
    assert subtract_business_time(calendar, deadline, duration) == opening
    assert business_time_between(calendar, start, deadline) == duration
    assert business_time_between(calendar, start, opening) == timedelta(0)


@PROPERTY_SETTINGS
@given(spec=specs(), end=INSTANTS, duration=DURATIONS)
def test_subtracting_then_adding_returns_to_the_last_working_instant(
    spec: Spec, end: datetime, duration: timedelta
) -> None:
    calendar = spec.calendar()
    begin = subtract_business_time(calendar, end, duration)
    assert begin < end
    assert add_business_time(calendar, begin, duration) == subtract_business_time(
        calendar, end, timedelta(0)
    )


@PROPERTY_SETTINGS
@given(spec=specs(), start=INSTANTS, a=DURATIONS, b=DURATIONS)
def test_more_working_time_never_gives_an_earlier_deadline(
    spec: Spec, start: datetime, a: timedelta, b: timedelta
) -> None:
    calendar = spec.calendar()
    short, long = sorted((a, b))
    assert add_business_time(calendar, start, short) <= add_business_time(calendar, start, long)
    if long > short:  # adding in two steps is adding once
        halfway = add_business_time(calendar, start, short)
        assert add_business_time(calendar, halfway, long - short) == add_business_time(
            calendar, start, long
        )


@PROPERTY_SETTINGS
@given(spec=specs(), start=INSTANTS, duration=DURATIONS, holiday=DAYS)
def test_a_holiday_is_never_worked_and_never_brings_a_deadline_forward(
    spec: Spec, start: datetime, duration: timedelta, holiday: date
) -> None:
    with_holiday = Spec(
        spec.zone,
        spec.weekly,
        spec.holidays | {holiday},
        {d: s for d, s in spec.extra.items() if d != holiday},
    )
    without = Spec(spec.zone, spec.weekly, spec.holidays - {holiday}, with_holiday.extra)
    deadline = add_business_time(with_holiday.calendar(), start, duration)
    assert deadline >= add_business_time(without.calendar(), start, duration)
    zone = ZoneInfo(spec.zone)
    assert (deadline - TICK).astimezone(zone).date() != holiday
    day_start = datetime(holiday.year, holiday.month, holiday.day, tzinfo=zone)
    day_end = day_start + timedelta(days=1)
    assert business_time_between(with_holiday.calendar(), day_start, day_end) == timedelta(0)


@PROPERTY_SETTINGS
@given(spec=specs(), points=st.lists(INSTANTS, min_size=3, max_size=3))
def test_working_time_between_instants_adds_up(spec: Spec, points: list[datetime]) -> None:
    calendar = spec.calendar()
    a, b, c = sorted(points)
    assert business_time_between(calendar, a, c) == business_time_between(
        calendar, a, b
    ) + business_time_between(calendar, b, c)
    assert business_time_between(calendar, c, a) == -business_time_between(calendar, a, c)


# --- worked examples --------------------------------------------------------------

NINE_TO_FIVE = ((9 * 60, 17 * 60),)
WEEKDAYS_ONLY = (NINE_TO_FIVE,) * 5 + ((), ())


def at(zone: str, year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=ZoneInfo(zone))


def test_the_clock_stops_overnight_and_over_the_weekend() -> None:
    calendar = Calendar(ZoneInfo("Europe/Berlin"), WEEKDAYS_ONLY)
    friday_4pm = at("Europe/Berlin", 2026, 6, 12, 16)
    assert add_business_time(calendar, friday_4pm, timedelta(hours=3)) == at(
        "Europe/Berlin", 2026, 6, 15, 11
    )


def test_a_start_outside_hours_counts_from_the_next_opening() -> None:
    calendar = Calendar(ZoneInfo("Europe/Berlin"), WEEKDAYS_ONLY)
    saturday = at("Europe/Berlin", 2026, 6, 13, 10)
    assert add_business_time(calendar, saturday, timedelta(hours=1)) == at(
        "Europe/Berlin", 2026, 6, 15, 10
    )


def test_a_deadline_can_fall_exactly_at_closing_time() -> None:
    calendar = Calendar(ZoneInfo("Asia/Shanghai"), WEEKDAYS_ONLY)
    monday_9am = at("Asia/Shanghai", 2026, 6, 15, 9)
    assert add_business_time(calendar, monday_9am, timedelta(hours=8)) == at(
        "Asia/Shanghai", 2026, 6, 15, 17
    )


def test_office_hours_stay_in_local_time_across_the_spring_dst_change() -> None:
    calendar = Calendar(ZoneInfo("America/New_York"), WEEKDAYS_ONLY)
    friday = at("America/New_York", 2026, 3, 6, 16)  # EST; clocks go forward on Sunday 8 March
    deadline = add_business_time(calendar, friday, timedelta(hours=2))
    assert deadline == at("America/New_York", 2026, 3, 9, 10)
    assert deadline.astimezone(UTC).hour == 14  # 10:00 EDT, not 10:00 EST


def test_a_round_the_clock_day_has_23_hours_in_spring_and_25_in_autumn() -> None:
    calendar = Calendar(ZoneInfo("Europe/Berlin"), (FULL_DAY,) * 7)
    assert add_business_time(
        calendar, at("Europe/Berlin", 2026, 3, 28, 12), timedelta(hours=24)
    ) == at("Europe/Berlin", 2026, 3, 29, 13)
    assert add_business_time(
        calendar, at("Europe/Berlin", 2026, 10, 24, 12), timedelta(hours=24)
    ) == at("Europe/Berlin", 2026, 10, 25, 11)


def test_southern_hemisphere_dst_ends_in_april() -> None:
    calendar = Calendar(ZoneInfo("Australia/Sydney"), (FULL_DAY,) * 7)
    before = at("Australia/Sydney", 2026, 4, 4, 12)  # AEDT; clocks go back on 5 April
    assert add_business_time(calendar, before, timedelta(hours=24)) == at(
        "Australia/Sydney", 2026, 4, 5, 11
    )


SHIPPED = load_policy()


def test_national_day_week_is_skipped_in_the_china_office_calendar() -> None:
    calendar = SHIPPED.calendar_of("quality")
    eve = at("Asia/Shanghai", 2026, 9, 30, 17)  # 1 hour before closing, then 1-7 October off
    deadline = add_business_time(calendar, eve, timedelta(hours=8))
    # 1h on 30 September, then 3h before lunch and 4h after it on Thursday 8 October.
    assert deadline == at("Asia/Shanghai", 2026, 10, 8, 17)


def test_a_weekend_make_up_day_is_worked_before_spring_festival() -> None:
    calendar = SHIPPED.calendar_of("quality")
    friday = at("Asia/Shanghai", 2026, 2, 13, 17)
    # Saturday 14 February is worked in exchange for the festival holidays.
    assert add_business_time(calendar, friday, timedelta(hours=4)) == at(
        "Asia/Shanghai", 2026, 2, 14, 12
    )
    # The festival runs from 15 to 23 February: the next working day is the 24th.
    assert add_business_time(calendar, friday, timedelta(hours=12)) == at(
        "Asia/Shanghai", 2026, 2, 24, 12
    )


def test_the_lunch_break_does_not_count() -> None:
    calendar = SHIPPED.calendar_of("billing")
    morning = at("Asia/Shanghai", 2026, 3, 2, 11)
    assert add_business_time(calendar, morning, timedelta(hours=2)) == at(
        "Asia/Shanghai", 2026, 3, 2, 14
    )


def test_naive_datetimes_are_refused() -> None:
    calendar = Calendar(ZoneInfo("UTC"), (FULL_DAY,) * 7)
    with pytest.raises(ValueError, match="time-zone-aware"):
        add_business_time(calendar, datetime(2026, 1, 1), timedelta(hours=1))


def test_a_calendar_without_working_time_is_refused() -> None:
    with pytest.raises(ValueError, match="working time"):
        Calendar(ZoneInfo("UTC"), ((),) * 7)
