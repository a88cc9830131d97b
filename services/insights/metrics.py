"""insights' own metrics (besides every service's HTTP, consumer and database metrics)."""

from prometheus_client import Counter, Gauge

EVENTS_FOLDED = Counter(
    "closeloop_insights_events_folded_total",
    "Events folded into a case's projection, by event type and outcome "
    "(folded, duplicate: the case had it already)",
    ["event", "outcome"],
)
PENDING_SETTLED = Counter(
    "closeloop_insights_pending_settled_total",
    "Cases whose rollup deltas, left pending by a stopped copy, the sweep added",
)
LAST_OPENED = Gauge(
    "closeloop_insights_latest_case_opened_timestamp_seconds",
    "When the latest case in the projection was opened (how far the reports reach)",
)
