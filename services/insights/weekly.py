"""The weekly review on report.weekly: every finished week (Monday to Sunday, UTC), once
the settings' delay after it has passed, the summary of the cases opened that week per
root cause and per team, and the lessons recorded in it.

Each week is published once: the event's id is derived from the week, so a copy that
publishes it again (two copies at once, or a stop between publishing and noting it)
publishes the same event, which consumers recognise by its id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.insights.api import by_cause
from services.insights.reports import figures
from services.insights.store import InsightsStore
from shared.contracts import WeeklyReport
from shared.envelope import Event, new_event

SOURCE = "/closeloop/insights"


def last_finished_week(now: datetime, delay: timedelta) -> date:
    """The Monday of the latest week that ended at least ``delay`` before ``now``."""
    monday = (now.astimezone(UTC) - delay).date()
    monday -= timedelta(days=monday.weekday())
    return monday - timedelta(days=7)


def week_name(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


async def weekly_report(store: InsightsStore, monday: date) -> WeeklyReport:
    end = monday + timedelta(days=7)
    total = await store.rollups(monday, end, {}, None)
    groups: dict[str, list[dict[str, Any]]] = {}
    for by in ("root_cause", "team"):
        rows = [
            {by: value, **figures(sums)}
            for value, sums in (await store.rollups(monday, end, {}, by)).items()
        ]
        groups[by] = sorted(
            (row for row in rows if row["cases"] > 0), key=lambda row: (-row["cases"], row[by])
        )
    start_at = datetime.combine(monday, time(), UTC)
    lessons = await store.lessons_between(start_at, start_at + timedelta(days=7), {})
    return WeeklyReport(
        week=week_name(monday),
        start=monday,
        end=monday + timedelta(days=6),
        total=figures(total.get("all", {})),
        by_root_cause=groups["root_cause"],
        by_team=groups["team"],
        lessons=by_cause(lessons),
    )


async def publish_due_report(
    store: InsightsStore,
    publish: Callable[[Sequence[Event[Any]]], Awaitable[None]],
    now: datetime,
    delay: timedelta,
) -> str | None:
    """Publish the latest finished week's report if it has not been; its week, or None."""
    monday = last_finished_week(now, delay)
    week = week_name(monday)
    if await store.report_published(week):
        return None
    report = await weekly_report(store, monday)
    ended = datetime.combine(monday + timedelta(days=7), time(), UTC)
    event = new_event(report, source=SOURCE, cause=f"report.weekly/{week}", time=ended)
    await publish([event])
    await store.mark_published(week, event.id, now)
    return week
