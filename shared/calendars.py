"""Business calendars as the routing policy file writes them (``calendars``, and the
calendar of each team under ``teams``): the router times SLA deadlines with them and
followup times promises ("3 working days") with the same ones, read from the same file.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.business_time import Calendar, Span
from shared.config import load_yaml

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_span(text: str) -> Span:
    """``"09:00-18:00"`` as minutes from local midnight; ``24:00`` ends at midnight."""
    match = _SPAN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a span like 09:00-18:00")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise ValueError(f"{text!r} is not a valid time of day")
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if end <= start:
        raise ValueError(f"{text!r} ends before it starts (a span cannot cross midnight)")
    return start, end


def parse_spans(texts: list[str]) -> tuple[Span, ...]:
    spans = sorted(parse_span(text) for text in texts)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ValueError(f"working spans overlap: {', '.join(texts)}")
    return tuple(spans)


class CalendarPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time_zone: str = Field(description="IANA time zone, e.g. Asia/Shanghai")
    hours: dict[Weekday, list[str]] = Field(
        description="Working spans per weekday in local time; a missing day is closed"
    )
    holidays: list[date] = Field(default_factory=list, description="Closed all day")
    extra_workdays: dict[date, list[str]] = Field(
        default_factory=dict, description="Days worked although weekend or holiday, with hours"
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for spans in value.values():
            parse_spans(spans)
        if not any(value.values()):
            raise ValueError("a calendar needs working hours on at least one weekday")
        return value

    @field_validator("extra_workdays")
    @classmethod
    def _valid_extra(cls, value: dict[date, list[str]]) -> dict[date, list[str]]:
        for day, spans in value.items():
            if not spans:
                raise ValueError(f"{day}: an extra working day needs its working hours")
            parse_spans(spans)
        return value

    @model_validator(mode="after")
    def _no_day_both(self) -> CalendarPolicy:
        both = sorted(set(self.holidays) & set(self.extra_workdays))
        if both:
            raise ValueError(f"{both[0]} is both a holiday and an extra working day")
        return self

    def holidays_listed_until(self) -> date | None:
        """1 January after the last year whose public holidays this calendar lists: from
        then on it would count that year's holidays as working days. None when it lists
        none, as a calendar that works through public holidays does."""
        if not self.holidays:
            return None
        return date(max(day.year for day in self.holidays) + 1, 1, 1)

    def build(self) -> Calendar:
        return Calendar(
            time_zone=ZoneInfo(self.time_zone),
            weekly=tuple(parse_spans(self.hours.get(day, [])) for day in WEEKDAYS),
            holidays=frozenset(self.holidays),
            extra_workdays={day: parse_spans(spans) for day, spans in self.extra_workdays.items()},
        )


class _TeamCalendar(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    calendar: str


class TeamCalendars(BaseModel):
    """The calendars of a routing policy file and which team works by which; the rest
    of the file (rules, agents, SLA targets) is the router's and is not read here."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    calendars: dict[str, CalendarPolicy] = Field(min_length=1)
    teams: list[_TeamCalendar] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_calendars(self) -> TeamCalendars:
        for index, team in enumerate(self.teams):
            if team.calendar not in self.calendars:
                raise ValueError(f"teams.{index}.calendar: unknown calendar {team.calendar!r}")
        return self

    @cached_property
    def _built(self) -> Mapping[str, Calendar]:
        return {name: calendar.build() for name, calendar in self.calendars.items()}

    def of_team(self, team_id: str) -> Calendar | None:
        """The calendar team ``team_id`` works by; None for a team the file does not list."""
        name = next((t.calendar for t in self.teams if t.id == team_id), None)
        return None if name is None else self._built[name]


def load_team_calendars(path: Path) -> TeamCalendars:
    return load_yaml(path, TeamCalendars)
