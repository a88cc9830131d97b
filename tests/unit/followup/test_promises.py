"""Promises without a database: deadlines in business time (holidays, extra working days,
time zones, daylight saving), and every decision about a promise."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.followup.decisions import Decision, decide_due, decide_routed
from services.followup.domain import (
    PROMISE_TIMERS,
    Case,
    CaseConflict,
    DueItem,
    NotFound,
    OutcomeRejected,
    closed_summary,
)
from services.followup.outreach import load_outreach
from services.followup.promises import (
    DueIn,
    MakePromise,
    SettlePromise,
    deadline,
    decide_promise,
    decide_promise_outcome,
    end_of_working_days,
    parse_due_in,
)
from shared.business_time import Calendar
from shared.contracts import CustomerNotify
from tests.unit.followup.test_decisions import LINKS, NOW, POLICY, routed, written

OUTREACH = load_outreach()
BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_FIVE = ((9 * 60, 17 * 60),)
WEEKDAYS = (NINE_TO_FIVE,) * 5 + ((), ())


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 working days", DueIn(3, "days", True)),
        ("1 business day", DueIn(1, "days", True)),
        ("4 business hours", DueIn(4, "hours", True)),
        ("  2   Days ", DueIn(2, "days", False)),
        ("90 minutes", DueIn(90, "minutes", False)),
        ("1.5 hours", DueIn(1.5, "hours", False)),
        ("3个工作日", DueIn(3, "days", True)),
        ("2 小时", DueIn(2, "hours", False)),
        ("4个工作小时", DueIn(4, "hours", True)),
    ],
)
def test_durations_are_read_in_english_and_chinese(text: str, expected: DueIn) -> None:
    assert parse_due_in(text) == expected


@pytest.mark.parametrize("text", ["soon", "3 weeks", "0 days", "-1 days", "1.5 working days", ""])
def test_a_duration_that_is_not_one_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="due_in"):
        parse_due_in(text)


def test_working_days_end_at_the_close_of_the_last_one_the_day_of_the_promise_not_counted() -> None:
    calendar = Calendar(BERLIN, WEEKDAYS)
    monday = berlin(2026, 6, 1, 10, 0)
    assert end_of_working_days(calendar, monday, 3) == berlin(2026, 6, 4, 17, 0)
    saturday = berlin(2026, 6, 6, 11, 0)
    assert end_of_working_days(calendar, saturday, 3) == berlin(2026, 6, 10, 17, 0)
    friday_evening = berlin(2026, 6, 5, 20, 0)
    assert end_of_working_days(calendar, friday_evening, 1) == berlin(2026, 6, 8, 17, 0)


def test_holidays_are_skipped_and_extra_working_days_count() -> None:
    calendar = Calendar(
        BERLIN,
        WEEKDAYS,
        holidays=frozenset({date(2026, 6, 2)}),
        extra_workdays={date(2026, 6, 6): ((10 * 60, 14 * 60),)},
    )
    monday = berlin(2026, 6, 1, 10, 0)
    # Tuesday is a holiday: Wednesday, Thursday, Friday.
    assert end_of_working_days(calendar, monday, 3) == berlin(2026, 6, 5, 17, 0)
    # The Saturday worked counts, closing at 14:00.
    assert end_of_working_days(calendar, monday, 4) == berlin(2026, 6, 6, 14, 0)


def test_a_deadline_across_a_daylight_saving_change_keeps_its_local_closing_time() -> None:
    calendar = Calendar(BERLIN, WEEKDAYS)
    friday = berlin(2026, 3, 27, 10, 0)  # clocks go forward on Sunday 29 March
    due = end_of_working_days(calendar, friday, 1)
    assert due == berlin(2026, 3, 30, 17, 0)
    assert due.astimezone(UTC) == datetime(2026, 3, 30, 15, 0, tzinfo=UTC)
    assert friday.astimezone(UTC).hour == 9  # winter time before the change


def test_business_hours_skip_the_night_and_the_weekend() -> None:
    calendar = Calendar(BERLIN, WEEKDAYS)
    friday = berlin(2026, 6, 5, 16, 0)
    due = deadline(DueIn(4, "hours", True), friday, calendar)
    assert due == berlin(2026, 6, 8, 12, 0)


def test_the_same_working_day_is_a_different_instant_in_another_time_zone() -> None:
    shanghai = Calendar(ZoneInfo("Asia/Shanghai"), WEEKDAYS)
    new_york = Calendar(ZoneInfo("America/New_York"), WEEKDAYS)
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # Monday in both
    assert end_of_working_days(shanghai, start, 1) == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    assert end_of_working_days(new_york, start, 1) == datetime(2026, 6, 2, 21, 0, tzinfo=UTC)


def test_clock_durations_need_no_calendar_and_business_ones_do() -> None:
    assert deadline(DueIn(2, "days", False), NOW, None) == NOW + timedelta(days=2)
    with pytest.raises(ValueError, match="business calendar"):
        deadline(DueIn(2, "days", True), NOW, None)


# --- decisions --------------------------------------------------------------------------


def opened() -> Case:
    return written(decide_routed(None, routed(), NOW, POLICY, OUTREACH))


def promise(case: Case, at: datetime = NOW, **fields: Any) -> Decision:
    values: dict[str, Any] = {"what": "refund the delivery fee", "by": "agent-wang-fang"}
    values |= {"client": "crm", "due_in": "2 days"} | fields
    return decide_promise(case, MakePromise(**values), at, POLICY, OUTREACH)


def settle(case: Case, pid: str, outcome: Any, at: datetime) -> Decision:
    return decide_promise_outcome(case, SettlePromise(pid, outcome, "agent-wang-fang"), at, POLICY)


def fire(case: Case, kind: Any, pid: str, at: datetime) -> Decision:
    return decide_due(case, DueItem(case.id, kind, pid, at), at, POLICY, LINKS, OUTREACH)


def promised() -> tuple[Case, str]:
    case = written(promise(opened()))
    (pid,) = case.promises
    return case, pid


def test_a_promise_is_tracked_with_three_timers_and_told_to_the_customer() -> None:
    decision = promise(opened())
    case = written(decision)
    (kept,) = case.promises.values()
    assert kept.due_at == NOW + timedelta(days=2)
    assert [e.name for e in decision.events] == ["promise.made", "customer.notify"]
    notice = decision.events[1].data
    assert isinstance(notice, CustomerNotify)
    assert notice.kind == "promise" and notice.promise_id == kept.promise_id
    kinds = sorted(item.kind for item in decision.schedule if item.kind != "silence")
    assert kinds == sorted(PROMISE_TIMERS)
    warning = next(i for i in decision.schedule if i.kind == "promise_warning")
    assert warning.due_at == NOW + timedelta(days=2) * 0.8
    overdue = next(i for i in decision.schedule if i.kind == "promise_overdue")
    assert overdue.due_at > kept.due_at
    assert ("promises", ("made", "logistics")) in [(m.metric, m.labels) for m in decision.measures]


def test_working_days_are_counted_in_the_owner_teams_calendar() -> None:
    # NOW is Monday 2 March 2026, 17:00 in Shanghai; the logistics hotline's calendar
    # closes at 20:00 every day.
    case = written(promise(opened(), due_in="3 working days"))
    (made,) = case.promises.values()
    assert made.due_at == datetime(2026, 3, 5, 20, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_the_same_promise_posted_again_is_the_one_promise() -> None:
    case, _ = promised()
    again = promise(case, NOW + timedelta(seconds=3))
    assert not again.writes


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"due_in": None}, "one of them"),
        ({"due_at": NOW + timedelta(days=1)}, "one of them"),
        ({"due_in": None, "due_at": NOW - timedelta(minutes=1)}, "has passed"),
        ({"due_in": "400 days"}, "within a year"),
        ({"due_in": "someday"}, "not a duration"),
    ],
)
def test_a_promise_without_a_usable_deadline_is_refused(
    fields: dict[str, Any], message: str
) -> None:
    decision = promise(opened(), **fields)
    assert isinstance(decision.refusal, OutcomeRejected)
    assert message in decision.refusal.message


def test_warning_due_and_overdue_come_in_turn_and_overdue_escalates() -> None:
    case, pid = promised()
    due = case.promises[pid].due_at
    warned = fire(case, "promise_warning", pid, due - timedelta(hours=2))
    assert [e.name for e in warned.events] == ["promise.warning"]
    case = written(warned)
    told = fire(case, "promise_due", pid, due)
    assert [e.name for e in told.events] == ["promise.due"]
    case = written(told)
    late = fire(case, "promise_overdue", pid, due + timedelta(days=1))
    assert [e.name for e in late.events] == ["promise.overdue", "case.escalated"]
    case = written(late)
    assert case.promises[pid].overdue
    assert not fire(case, "promise_overdue", pid, due + timedelta(days=2)).writes
    # Broken after it went overdue: recorded, not escalated a second time.
    broken = settle(case, pid, "broken", due + timedelta(days=2))
    assert [e.name for e in broken.events] == ["promise.broken"]


def test_a_broken_promise_escalates_the_case_one_step() -> None:
    case, pid = promised()
    decision = settle(case, pid, "broken", NOW + timedelta(hours=5))
    assert [e.name for e in decision.events] == ["promise.broken", "case.escalated"]
    escalated = decision.events[1].data
    assert escalated.priority.value == "P1"  # the case is P2
    assert "promise broken" in escalated.reason
    assert decision.cancel[0].kinds == PROMISE_TIMERS


def test_kept_late_says_so_and_timers_after_an_outcome_do_nothing() -> None:
    case, pid = promised()
    due = case.promises[pid].due_at
    decision = settle(case, pid, "kept", due + timedelta(minutes=5))
    assert decision.events[0].data.late is True
    case = written(decision)
    assert not fire(case, "promise_overdue", pid, due + timedelta(days=1)).writes
    assert not settle(case, pid, "kept", due + timedelta(hours=1)).writes
    conflict = settle(case, pid, "broken", due + timedelta(hours=1))
    assert isinstance(conflict.refusal, CaseConflict)
    assert isinstance(settle(case, "no-such", "kept", due).refusal, NotFound)


def test_case_closed_counts_the_promises() -> None:
    case = written(promise(opened()))
    case = written(promise(case, what="call back with the courier's answer", due_in="4 hours"))
    first, second = case.promises
    case = written(settle(case, first, "kept", NOW + timedelta(hours=1)))
    case = written(fire(case, "promise_overdue", second, NOW + timedelta(days=1)))
    summary = closed_summary(case, outcome="satisfied", closed_at=NOW + timedelta(days=2))
    assert (summary.promises_made, summary.promises_kept, summary.promises_broken) == (2, 1, 0)
    assert (summary.promises_overdue, summary.promises_open) == (1, 1)


def test_a_closed_case_takes_no_new_promise() -> None:
    case = opened().model_copy(update={"status": "closed"})
    assert isinstance(promise(case).refusal, CaseConflict)
