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
CUSTOMERS_SCORED = Counter(
    "closeloop_insights_customers_scored_total",
    "Customers' health scores taken, by why (event: an event of one of their cases; decay: "
    "the sweep, as time fades their history)",
    ["why"],
)
CUSTOMER_SIGNALS = Counter(
    "closeloop_insights_customer_signals_total",
    "customer.signals events published, by event (customer.at_risk, customer.recovered)",
    ["event"],
)
CUSTOMERS_AT_RISK = Gauge(
    "closeloop_insights_customers_at_risk",
    "Customers insights last told at risk (refreshed by the sweep)",
)
