"""Prometheus metrics every service exposes on ``/metrics``.

Service-specific metrics are declared in each service's own module; the names here
are the pipeline-wide ones that dashboards and alert rules rely on. All names start
with ``closeloop_``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

SERVICE_INFO = Info("closeloop_service", "Which closeloop service this process runs")

EVENTS_CONSUMED = Counter(
    "closeloop_events_consumed_total",
    "Messages taken from a topic, by outcome (handled, skipped, dead_lettered)",
    ["topic", "event_type", "outcome"],
)
EVENTS_PRODUCED = Counter(
    "closeloop_events_produced_total",
    "Events acknowledged by the broker",
    ["topic", "event_type"],
)
PRODUCE_FAILURES = Counter(
    "closeloop_produce_failures_total",
    "Produce attempts the broker did not acknowledge",
    ["topic"],
)
DLQ_MESSAGES = Counter(
    "closeloop_dlq_messages_total",
    "Messages sent to a dead-letter topic, by source topic and reason class",
    ["topic", "reason"],
)
HANDLER_RETRIES = Counter(
    "closeloop_handler_retries_total",
    "Handler attempts that failed and were retried, by failure kind",
    ["event_type", "kind"],
)
HANDLER_SECONDS = Histogram(
    "closeloop_handler_duration_seconds",
    "Time to handle one event, including its writes and produced output",
    ["event_type"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "closeloop_consumer_batch_size",
    "Events handed to a batch handler in one call",
    ["event_type"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
BATCH_FALLBACKS = Counter(
    "closeloop_consumer_batch_fallbacks_total",
    "Batches that failed and were handled again one event at a time",
    ["event_type"],
)
PIPELINE_LATENCY = Histogram(
    "closeloop_event_age_seconds",
    "Age of an event (now minus its CloudEvents time) when a consumer has handled it",
    ["event_type"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "closeloop_consumer_lag",
    "Messages behind the end of the partition, per consumed partition",
    ["topic", "partition"],
)
DEPENDENCY_UP = Gauge(
    "closeloop_dependency_up",
    "1 when the connection to a dependency (kafka, mongodb) was up at the last check",
    ["dependency"],
)
HTTP_REQUESTS = Counter(
    "closeloop_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "closeloop_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
DB_COMMANDS = Counter(
    "closeloop_db_commands_total",
    "Database round trips (commands sent to MongoDB), by command and outcome",
    ["command", "outcome"],
)
DB_SECONDS = Histogram(
    "closeloop_db_command_duration_seconds",
    "Time of one database round trip, by command",
    ["command"],
    buckets=LATENCY_BUCKETS,
)
