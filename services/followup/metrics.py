"""Followup's Prometheus metrics. Counters move only when the case change they count
was written (a redelivery or a retried request does not count twice)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from services.followup.change import Measure

CASES_OPENED = Counter(
    "closeloop_cases_opened_total",
    "Cases opened by followup, by priority and team",
    ["priority", "team"],
)
CASES_RESOLVED = Counter("closeloop_cases_resolved_total", "Resolutions recorded", ["team"])
CASES_CLOSED = Counter("closeloop_cases_closed_total", "Cases closed, by outcome", ["outcome"])
CASES_REOPENED = Counter("closeloop_cases_reopened_total", "Cases the customer reopened")
CASES_OPEN = Gauge(
    "closeloop_cases_open",
    "Cases not closed yet, by status (counted over the database by every copy)",
    ["status"],
)
RESOLUTION_SECONDS = Histogram(
    "closeloop_case_resolution_seconds",
    "Time from opening a case to its resolution",
    ["team"],
    buckets=(600, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600, 7 * 86400, 30 * 86400),
)
# SLA counters carry the case's priority at the time (from its current routing) so that
# attainment can be read per priority as well as per team and deadline.
SLA_WARNINGS = Counter(
    "closeloop_sla_warnings_total",
    "sla.warning events, by team, deadline and priority",
    ["team", "sla", "priority"],
)
SLA_BREACHES = Counter(
    "closeloop_sla_breaches_total",
    "Deadlines missed (sla.breached), by team, deadline and priority",
    ["team", "sla", "priority"],
)
SLA_MET = Counter(
    "closeloop_sla_met_total",
    "Deadlines met in time, by team, deadline and priority",
    ["team", "sla", "priority"],
)
CALLBACKS = Counter(
    "closeloop_callbacks_total", "Callback outcomes recorded by agents", ["outcome"]
)
CALLBACKS_OVERDUE = Gauge(
    "closeloop_callbacks_overdue",
    "Callbacks past their due time (plus the policy's grace) without an outcome",
)
SURVEYS_REQUESTED = Counter(
    "closeloop_surveys_requested_total", "Satisfaction checks sent (reminders not counted)"
)
SURVEY_REMINDERS = Counter(
    "closeloop_survey_reminders_total", "Reminders sent for unanswered satisfaction checks"
)
SURVEY_ANSWERS = Counter(
    "closeloop_survey_answers_total", "Survey answers, by verdict", ["verdict"]
)
SATISFACTION_RATIO = Histogram(
    "closeloop_satisfaction_ratio",
    "perceived / expected of each survey answer",
    buckets=(0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0, 5.0),
)
CSAT = Histogram(
    "closeloop_csat", "CSAT score (1-5) of each survey answer", buckets=(1, 2, 3, 4, 5)
)
DUE_PROCESSED = Counter(
    "closeloop_due_items_processed_total",
    "Due-queue items handled, by kind (callback, sla_warning, sla_breach, survey_reminder, "
    "survey_timeout, promise_warning, promise_due, promise_overdue, silence)",
    ["kind"],
)

NOTIFICATIONS = Counter(
    "closeloop_notifications_total",
    "customer.notify messages emitted, by kind, channel and language",
    ["kind", "channel", "language"],
)
PROMISES = Counter(
    "closeloop_promises_total",
    "Promises to customers: made, kept, broken and overdue, by team",
    ["event", "team"],
)
SILENCES = Counter(
    "closeloop_silences_total",
    "Open cases that went longer than the policy allows without a customer-facing update, "
    "by priority and what was done (notify, ask_owner)",
    ["priority", "action"],
)

# What the decisions name (services/followup/decisions.py ``Metric``), moved once a
# change is written.
BY_NAME: dict[str, Counter | Histogram] = {
    "cases_opened": CASES_OPENED,
    "cases_resolved": CASES_RESOLVED,
    "resolution_seconds": RESOLUTION_SECONDS,
    "cases_closed": CASES_CLOSED,
    "cases_reopened": CASES_REOPENED,
    "sla_warnings": SLA_WARNINGS,
    "sla_breaches": SLA_BREACHES,
    "sla_met": SLA_MET,
    "callbacks": CALLBACKS,
    "surveys_requested": SURVEYS_REQUESTED,
    "survey_reminders": SURVEY_REMINDERS,
    "survey_answers": SURVEY_ANSWERS,
    "satisfaction_ratio": SATISFACTION_RATIO,
    "csat": CSAT,
    "notifications": NOTIFICATIONS,
    "promises": PROMISES,
    "silences": SILENCES,
}


def record(measures: Iterable[Measure]) -> None:
    """Count or observe what a written change measured."""
    for measure in measures:
        metric = BY_NAME[measure.metric]
        target = metric.labels(*measure.labels) if measure.labels else metric
        if isinstance(target, Histogram):
            target.observe(measure.value)
        else:
            target.inc(measure.value)
