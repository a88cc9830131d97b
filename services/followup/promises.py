"""Promises to the customer: when one is due, its timers and its outcome.

"Say what you do, do what you say": an agent records what was promised and by when,
as a time or as a duration such as "3 working days" in the owner team's business
calendar. Each promise gets a warning before it is due, promise.due at its deadline
(for the agent or the dialer), and becomes overdue when the policy's grace passes with
no outcome. A broken or overdue promise escalates the case (once per promise). Pure:
decisions on a ``Draft``, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.followup.change import Decision, Draft
from services.followup.domain import (
    PROMISE_TIMERS,
    Cancel,
    Case,
    CaseConflict,
    DueItem,
    NotFound,
    OutcomeRejected,
    Promise,
    PromiseOutcome,
    warning_time,
)
from services.followup.outreach import Outreach, Telling, later_by_hours, notify, to_millisecond
from services.followup.policy import FollowupPolicy
from shared.business_time import Calendar
from shared.contracts import (
    CaseEscalated,
    PromiseBroken,
    PromiseDue,
    PromiseKept,
    PromiseMade,
    PromiseOverdue,
    PromiseWarning,
    raise_priority,
)
from shared.envelope import derive_id

# A promise further out than this is a plan, not a promise to track.
LONGEST_PROMISE = timedelta(days=366)

Unit = Literal["minutes", "hours", "days"]


@dataclass(frozen=True)
class DueIn:
    """A promise's deadline as a duration: ``amount`` minutes, hours or days, of working
    time (``business``) or of the clock."""

    amount: float
    unit: Unit
    business: bool


_UNITS: dict[str, Unit] = {
    "minute": "minutes",
    "min": "minutes",
    "hour": "hours",
    "hr": "hours",
    "h": "hours",
    "day": "days",
    "d": "days",
    "分钟": "minutes",
    "小时": "hours",
    "天": "days",
    "日": "days",
}
_ENGLISH = re.compile(
    r"^(?P<amount>\d+(?:\.\d+)?)\s*(?P<business>working|business|work)?\s*"
    r"(?P<unit>minute|min|hour|hr|h|day|d)s?$"
)
_CHINESE = re.compile(
    r"^(?P<amount>\d+(?:\.\d+)?)\s*个?\s*(?P<business>工作)?\s*(?P<unit>分钟|小时|天|日)$"
)


def parse_due_in(text: str) -> DueIn:
    """``"3 working days"``, ``"4 business hours"``, ``"2 days"``, ``"90 minutes"``,
    ``"3个工作日"``, ``"2小时"``: a ValueError saying what is accepted otherwise."""
    cleaned = " ".join(text.strip().lower().split())
    match = _ENGLISH.match(cleaned) or _CHINESE.match(cleaned)
    if match is None:
        raise ValueError(
            f"due_in {text!r} is not a duration such as '3 working days', '4 business "
            "hours', '2 days', '90 minutes' or '3个工作日'"
        )
    amount = float(match["amount"])
    unit = _UNITS[match["unit"]]
    business = match["business"] is not None
    if amount <= 0:
        raise ValueError(f"due_in {text!r} must be more than nothing")
    if business and unit == "days" and not amount.is_integer():
        raise ValueError(f"due_in {text!r}: working days are counted whole")
    return DueIn(amount, unit, business)


def end_of_working_days(calendar: Calendar, start: datetime, days: int) -> datetime:
    """The close of the ``days``-th working day after the day of ``start``: "within 3
    working days" from Monday is Thursday's close; from a Saturday, Wednesday's. The
    day the promise is made does not count, holidays are skipped, extra working days
    count."""
    day = calendar.local_date(start)
    counted = 0
    for _ in range(days * 7 + 400):
        day += timedelta(days=1)
        periods = calendar.working_periods(day)
        if periods:
            counted += 1
            if counted == days:
                return periods[-1][1]
    raise ValueError(f"the calendar has no {days} working days within a year")


def deadline(due_in: DueIn, start: datetime, calendar: Calendar | None) -> datetime:
    """When a promise made at ``start`` with deadline ``due_in`` is due."""
    if not due_in.business:
        return to_millisecond(start + timedelta(**{due_in.unit: due_in.amount}))
    if calendar is None:
        raise ValueError("the owner team has no business calendar: give due_at or clock time")
    if due_in.unit == "days":
        return to_millisecond(end_of_working_days(calendar, start, int(due_in.amount)))
    hours = due_in.amount / 60 if due_in.unit == "minutes" else due_in.amount
    return later_by_hours(calendar, start, hours)


# --- commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class MakePromise:
    what: str
    by: str
    client: str
    due_at: datetime | None = None
    due_in: str | None = None


@dataclass(frozen=True)
class SettlePromise:
    promise_id: str
    outcome: PromiseOutcome
    by: str
    note: str | None = None


def promise_id_for(case: Case, cmd: MakePromise) -> str:
    """The same promise posted again (a retry) is the one promise while it is open; made
    again after it was settled, it is a new one."""
    due = cmd.due_in or (
        to_millisecond(cmd.due_at.astimezone(UTC)).isoformat() if cmd.due_at else ""
    )
    first = derive_id("promise", case.id, cmd.what, due, cmd.by)
    for again in range(len(case.promises) + 1):
        candidate = first if again == 0 else derive_id(first, str(again))
        existing = case.promises.get(candidate)
        if existing is None or existing.status == "open":
            return candidate
    raise AssertionError("unreachable: one candidate more than there are promises")


def made_promise(case: Case, cmd: MakePromise) -> Promise:
    """The promise ``cmd`` made (or found already made) on ``case``: the latest alike."""
    alike = [
        p
        for p in case.promises.values()
        if p.what == cmd.what
        and p.made_by == cmd.by
        and p.due_in == cmd.due_in
        and (cmd.due_at is None or p.due_at == to_millisecond(cmd.due_at))
    ]
    if not alike:
        raise LookupError("the case has no such promise")
    return alike[-1]


def _due_of(case: Case, cmd: MakePromise, now: datetime, outreach: Outreach) -> datetime | str:
    """The deadline, or why there is none."""
    if (cmd.due_at is None) == (cmd.due_in is None):
        return "give the deadline as due_at (a time) or due_in (a duration), one of them"
    if cmd.due_at is not None:
        due = to_millisecond(cmd.due_at)
    else:
        assert cmd.due_in is not None
        try:
            due = deadline(parse_due_in(cmd.due_in), now, outreach.calendar(case.team))
        except ValueError as exc:
            return str(exc)
    if due <= now:
        return f"the promise is due {due.isoformat()}, which has passed"
    if due - now > LONGEST_PROMISE:
        return "a promise is due within a year"
    return due


def promise_timers(
    case: Case, promise: Promise, policy: FollowupPolicy, outreach: Outreach
) -> list[DueItem]:
    """The warning, the deadline and the overdue check of a promise."""
    pid = promise.promise_id
    warn_at = warning_time(promise.made_at, promise.due_at, policy.promises.warning_share)
    overdue_at = later_by_hours(
        outreach.calendar(case.team), promise.due_at, policy.promises.overdue_after_hours
    )
    return [
        DueItem(case.id, "promise_warning", pid, warn_at),
        DueItem(case.id, "promise_due", pid, promise.due_at),
        DueItem(case.id, "promise_overdue", pid, overdue_at),
    ]


def _common(case: Case, promise: Promise, now: datetime) -> dict[str, Any]:
    return {
        "case_id": case.id,
        "customer_key": case.customer_key,
        "occurred_at": now,
        "promise_id": promise.promise_id,
        "what": promise.what,
        "due_at": promise.due_at,
        "made_by": promise.made_by,
        "team": case.team,
        "agent": case.agent,
    }


# --- decisions ------------------------------------------------------------------------


def decide_promise(
    case: Case, cmd: MakePromise, now: datetime, policy: FollowupPolicy, outreach: Outreach
) -> Decision:
    """An agent promised the customer something by a deadline: tracked with its timers,
    and the customer is told (if the policy says so)."""
    if case.status == "closed":
        return Decision.refuse(case, CaseConflict(f"case {case.id} is closed"))
    pid = promise_id_for(case, cmd)
    if pid in case.promises:
        return Decision.nothing(case)  # the same promise again
    due = _due_of(case, cmd, now, outreach)
    if isinstance(due, str):
        return Decision.refuse(case, OutcomeRejected(due))
    promise = Promise(
        promise_id=pid,
        what=cmd.what,
        due_at=due,
        due_in=cmd.due_in,
        made_by=cmd.by,
        made_at=now,
        client=cmd.client,
    )
    d = Draft(case, now)
    d.case.promises[pid] = promise
    d.schedule += promise_timers(case, promise, policy, outreach)
    d.emit(
        PromiseMade(**_common(case, promise, now), due_in=cmd.due_in),
        f"{pid}:made",
        f"{cmd.what!r} by {due.isoformat()} ({cmd.by})",
    )
    d.count("promises", "made", case.team)
    if policy.promises.tell_customer:
        notify(d, Telling("promise", f"{pid}:notify", promise=promise), policy, outreach)
    return d.decision()


def decide_promise_outcome(
    case: Case, cmd: SettlePromise, now: datetime, policy: FollowupPolicy
) -> Decision:
    """Kept or broken; the same outcome again changes nothing. A broken promise escalates
    the case unless its being overdue already did."""
    promise = case.promises.get(cmd.promise_id)
    if promise is None:
        return Decision.refuse(case, NotFound(f"no promise {cmd.promise_id} on case {case.id}"))
    if promise.status == cmd.outcome:
        return Decision.nothing(case)
    if promise.status != "open":
        return Decision.refuse(
            case, CaseConflict(f"promise {cmd.promise_id} was already recorded {promise.status}")
        )
    d = Draft(case, now)
    settled = d.case.promises[cmd.promise_id]
    settled.status, settled.outcome_at, settled.outcome_by = cmd.outcome, now, cmd.by
    settled.note = cmd.note
    common = _common(case, promise, now)
    if cmd.outcome == "kept":
        late = now > promise.due_at
        d.emit(
            PromiseKept(**common, recorded_by=cmd.by, late=late, note=cmd.note),
            f"{cmd.promise_id}:kept",
            f"{promise.what!r} kept{' late' if late else ''} ({cmd.by})",
        )
    else:
        d.emit(
            PromiseBroken(**common, recorded_by=cmd.by, note=cmd.note),
            f"{cmd.promise_id}:broken",
            f"{promise.what!r} broken ({cmd.by})",
        )
        if not promise.overdue:
            _escalate(d, promise, "promise broken")
    d.cancel.append(Cancel(PROMISE_TIMERS, (cmd.promise_id,)))
    d.count("promises", cmd.outcome, case.team)
    return d.decision()


def _escalate(d: Draft, promise: Promise, why: str) -> None:
    """Escalate the case for a promise not kept (a closed case has nothing to route)."""
    case = d.case
    if case.status == "closed":
        return
    to = raise_priority(case.priority)
    d.emit(
        CaseEscalated(
            case_id=case.id,
            customer_key=case.customer_key,
            occurred_at=d.now,
            reason=f"{why}: {promise.what}"[:500],
            priority=to,
        ),
        f"{promise.promise_id}:escalate",
        f"{why}; asks for {to.value}",
    )


def decide_promise_timer(
    case: Case, item: DueItem, now: datetime, policy: FollowupPolicy
) -> Decision:
    """A promise's warning, deadline or overdue check; nothing once it has an outcome."""
    promise = case.promises.get(item.ref)
    if promise is None or promise.status != "open" or not _timer_due(promise, item, now):
        return Decision.nothing(case)
    d = Draft(case, now)
    current = d.case.promises[item.ref]
    common = _common(case, promise, now)
    if item.kind == "promise_warning":
        current.warned = True
        d.emit(PromiseWarning(**common), f"{item.ref}:warning", f"{promise.what!r} due soon")
    elif item.kind == "promise_due":
        current.due_told = True
        d.emit(PromiseDue(**common), f"{item.ref}:due", f"{promise.what!r} is due")
    else:
        current.overdue = True
        d.emit(PromiseOverdue(**common), f"{item.ref}:overdue", f"{promise.what!r} is overdue")
        _escalate(d, promise, "promise overdue")
        d.count("promises", "overdue", case.team)
    return d.decision()


def _timer_due(promise: Promise, item: DueItem, now: datetime) -> bool:
    """Whether a promise timer still has its work to do (decided before copying the case)."""
    if item.kind == "promise_warning":
        return not promise.warned and now < promise.due_at
    if item.kind == "promise_due":
        return not promise.due_told and now >= promise.due_at
    return not promise.overdue and now >= item.due_at
