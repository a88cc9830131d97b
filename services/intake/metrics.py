"""Intake's own metrics; request latency by route is the shared
``closeloop_http_request_duration_seconds``.

The label values known in advance are bound once (``ACCEPTED_BY_CHANNEL``,
``PUBLISH_SECONDS_BY_ENDPOINT``): a request then skips the label lookup, and every
channel shows up, at 0, from the start.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.contracts import Channel
from shared.metrics import LATENCY_BUCKETS

FEEDBACK_ACCEPTED = Counter(
    "closeloop_intake_feedback_accepted_total", "Feedback acknowledged by the broker", ["channel"]
)
REJECTED = Counter(
    "closeloop_intake_rejected_total",
    "Requests and batch items refused, by channel (unknown before it is known) and reason",
    ["channel", "reason"],
)
PUBLISH_SECONDS = Histogram(
    "closeloop_intake_publish_duration_seconds",
    "Time from handing feedback events to the producer until the broker acknowledged them",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
BATCH_ITEMS = Histogram(
    "closeloop_intake_batch_items",
    "Items per batch request",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500),
)

ACCEPTED_BY_CHANNEL = {channel: FEEDBACK_ACCEPTED.labels(channel.value) for channel in Channel}
PUBLISH_SECONDS_BY_ENDPOINT = {
    endpoint: PUBLISH_SECONDS.labels(endpoint) for endpoint in ("single", "batch")
}
