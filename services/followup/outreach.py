"""What the customer is told, and when: the acknowledgement of a new case, the promise
notice, the apology for a missed resolution deadline, and the progress message (or
the request to the owner for one) when a case has gone too long without a
customer-facing update. Pure: decisions on a ``Draft``, no I/O.

Every message is rendered from the templates (services/followup/notifications.py) in
the customer's language for their channel, with its times in the customer's time zone
(the customer's own, else the owner team's, else UTC). It is kept on the case
(``Notice``) and on its timeline, and counts as a customer-facing update: the silence
timer starts again from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from services.followup.change import SOURCE, Decision, Draft
from services.followup.domain import (
    OPEN_STATUSES,
    Cancel,
    Case,
    DueItem,
    Notice,
    NoticeVia,
    Promise,
)
from services.followup.notifications import (
    DEFAULT_TEMPLATES,
    NoticeFacts,
    Templates,
    load_templates,
)
from services.followup.policy import FollowupPolicy
from shared.business_time import Calendar, add_business_time
from shared.calendars import TeamCalendars, load_team_calendars
from shared.contracts import CaseUpdateRequested, CustomerNotify, NotificationKind
from shared.envelope import Event, derive_id, new_event


@dataclass(frozen=True)
class Outreach:
    """What telling the customer needs: the templates, and the team calendars that time
    promises and silences in business hours (None: wall-clock hours for every team)."""

    templates: Templates
    calendars: TeamCalendars | None = None

    def calendar(self, team: str) -> Calendar | None:
        return None if self.calendars is None else self.calendars.of_team(team)


# The router's own routing file, as the image ships it: deployments mount theirs and
# point CLOSELOOP_FOLLOWUP_ROUTING_FILE at it.
DEFAULT_ROUTING_FILE = Path(__file__).parents[1] / "router" / "routing.yaml"


def load_outreach(
    templates_file: Path = DEFAULT_TEMPLATES, routing_file: Path = DEFAULT_ROUTING_FILE
) -> Outreach:
    """The templates and the team calendars, read and checked (at start)."""
    return Outreach(load_templates(templates_file), load_team_calendars(routing_file))


def to_millisecond(at: datetime) -> datetime:
    """``at`` at the precision MongoDB stores, so that it reads back equal."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def later_by_hours(calendar: Calendar | None, start: datetime, hours: float) -> datetime:
    """``hours`` after ``start``: business hours of ``calendar``, wall-clock without one."""
    span = timedelta(hours=hours)
    if calendar is None:
        return to_millisecond(start + span)
    return to_millisecond(add_business_time(calendar, start, span))


def customer_zone(case: Case, outreach: Outreach) -> ZoneInfo:
    """The time zone the customer is told times in."""
    if case.feedback.customer.time_zone:
        return ZoneInfo(case.feedback.customer.time_zone)
    calendar = outreach.calendar(case.team)
    return calendar.time_zone if calendar is not None else ZoneInfo("UTC")


def notice_event(notice: Notice) -> Event[CustomerNotify]:
    """The customer.notify of a stored notice, exactly as it was first sent."""
    data = CustomerNotify.model_validate(notice.data)
    return new_event(data, source=SOURCE, cause=notice.cause, time=notice.at)


def said_on_routing(case: Case, generation: int) -> list[Event[CustomerNotify]]:
    """The notices one routing generation caused (the answer to its case.routed)."""
    return [
        notice_event(n) for n in case.notices if n.via == "routing" and n.generation == generation
    ]


# --- telling the customer ----------------------------------------------------------


@dataclass(frozen=True)
class Telling:
    """One message to send: its kind, what caused it (its id derives from that) and the
    times it states."""

    kind: NotificationKind
    cause: str
    first_response_by: datetime | None = None
    resolution_by: datetime | None = None
    promise: Promise | None = None


def notify(
    d: Draft,
    telling: Telling,
    policy: FollowupPolicy,
    outreach: Outreach,
    *,
    via: NoticeVia = "case",
) -> None:
    """Render ``telling`` for the customer and send it: in the case's outbox, or (``via``
    routing) as an answer to the case.routed being handled."""
    case = d.case
    feedback = case.feedback
    zone = customer_zone(case, outreach)
    promise = telling.promise
    rendered = outreach.templates.render(
        telling.kind,
        language=feedback.language,
        channel=feedback.channel,
        facts=facts_of(case, telling, zone),
    )
    event = new_event(
        CustomerNotify(
            notification_id=_notification_id(telling.cause),
            case_id=case.id,
            reference=case.reference,
            customer_key=case.customer_key,
            customer=feedback.customer,
            channel=feedback.channel,
            reply_to=feedback.external_id,
            language=rendered.language,
            kind=telling.kind,
            template=rendered.template,
            email_subject=rendered.email_subject,
            text=rendered.text,
            time_zone=zone.key,
            first_response_by=telling.first_response_by,
            resolution_by=telling.resolution_by,
            promise_id=promise.promise_id if promise else None,
            occurred_at=d.now,
        ),
        source=SOURCE,
        cause=telling.cause,
        time=d.now,
    )
    (d.replies if via == "routing" else d.events).append(event)
    case.notices.append(
        Notice(
            notification_id=event.data.notification_id,
            kind=telling.kind,
            at=d.now,
            cause=telling.cause,
            via=via,
            generation=case.generation,
            data=event.data.model_dump(mode="json"),
        )
    )
    d.log("customer.notify", f"{telling.kind} via {feedback.channel.value}: {rendered.text}")
    d.count("notifications", telling.kind, feedback.channel.value, rendered.language)
    customer_updated(d, policy, outreach)


def facts_of(case: Case, telling: Telling, zone: ZoneInfo) -> NoticeFacts:
    """What a message about ``case`` may say."""
    promise = telling.promise
    expectation = case.classification.expectation
    return NoticeFacts(
        reference=case.reference,
        time_zone=zone,
        customer_name=case.feedback.customer.name,
        first_response_by=telling.first_response_by,
        resolution_by=telling.resolution_by,
        promise_what=promise.what if promise else None,
        promise_due=promise.due_at if promise else None,
        expected_outcome=expectation.outcome if expectation else None,
    )


def _notification_id(cause: str) -> str:
    return derive_id("notification", cause)


def acknowledge(d: Draft, policy: FollowupPolicy, outreach: Outreach) -> None:
    """The acknowledgement of a new case: we heard you, we are sorry, what happens next
    and by when (the deadlines of its routing)."""
    case = d.case
    if not policy.notify.acknowledge:
        schedule_silence(d, policy, outreach)
        return
    telling = Telling(
        "acknowledgement",
        f"{case.id}:notify:acknowledgement",
        first_response_by=case.first_response_due,
        resolution_by=case.resolution_due,
    )
    notify(d, telling, policy, outreach, via="routing")


def apologise(d: Draft, policy: FollowupPolicy, outreach: Outreach) -> None:
    """The resolution deadline the customer was given passed: sorry, and the new one."""
    case = d.case
    if not policy.notify.apologise:
        return
    telling = Telling(
        "apology",
        f"{case.id}:notify:apology:{case.generation}",
        resolution_by=case.resolution_due,
    )
    notify(d, telling, policy, outreach, via="routing")


# --- silence -----------------------------------------------------------------------


def silence_item(case: Case, policy: FollowupPolicy, outreach: Outreach) -> DueItem:
    """The check that the customer has not gone too long without an update: due the
    policy's business hours for the case's priority after it last heard from us (one
    per routing generation, since a new priority moves it)."""
    since = case.silent_since
    hours = policy.silence.after_hours[case.priority]
    due = later_by_hours(outreach.calendar(case.team), since, hours)
    return DueItem(case.id, "silence", since.astimezone(UTC).isoformat(), due, case.generation)


def schedule_silence(d: Draft, policy: FollowupPolicy, outreach: Outreach) -> None:
    """Check for silence from now on: the earlier check, if any, is no longer needed."""
    before = d.base.silent_since.astimezone(UTC).isoformat()
    item = silence_item(d.case, policy, outreach)
    if d.case.status in OPEN_STATUSES:
        d.schedule.append(item)
    if item.ref != before:
        d.cancel.append(Cancel(("silence",), (before,)))


def customer_updated(d: Draft, policy: FollowupPolicy, outreach: Outreach) -> None:
    """The customer was just told something (a message, an answer, a call)."""
    d.case.last_update_at = d.now
    schedule_silence(d, policy, outreach)


def decide_silence(
    case: Case, item: DueItem, now: datetime, policy: FollowupPolicy, outreach: Outreach
) -> Decision:
    """An open case the customer has heard nothing about for too long: a progress
    message (or a request to the owner for one), once per silence."""
    if case.status not in OPEN_STATUSES or now < item.due_at:
        return Decision.nothing(case)
    if item.ref != case.silent_since.astimezone(UTC).isoformat():
        return Decision.nothing(case)  # the customer heard from us since
    d = Draft(case, now)
    action = policy.silence.action
    if action == "notify":
        telling = Telling(
            "progress", f"{case.id}:notify:progress:{item.ref}", resolution_by=case.resolution_due
        )
        notify(d, telling, policy, outreach)
    else:
        d.emit(
            CaseUpdateRequested(
                case_id=case.id,
                customer_key=case.customer_key,
                occurred_at=now,
                team=case.team,
                agent=case.agent,
                silent_since=case.silent_since,
            ),
            f"{case.id}:update_requested:{item.ref}",
            f"no customer update since {case.silent_since.isoformat()}",
        )
        d.case.update_requested_at = now
        schedule_silence(d, policy, outreach)
    # The check being done is completed by the due queue, not cancelled.
    d.cancel = [c for c in d.cancel if not (c.kinds == ("silence",) and c.refs == (item.ref,))]
    d.count("silences", case.priority.value, action)
    return d.decision()
