"""The classifier's metrics (docs/metrics.md): what it classified, how sure it was, what
the customers expect, and which model and taxonomy it runs."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.contracts import Classification

CLASSIFIED = Counter(
    "closeloop_classifications_total",
    "Feedback classified, by root cause and urgency",
    ["root_cause", "urgency"],
)
NEEDS_REVIEW = Counter(
    "closeloop_classifications_needs_review_total", "Classifications below the confidence threshold"
)
CONFIDENCE = Histogram(
    "closeloop_classification_confidence",
    "Confidence of each classification",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
EXPECTATIONS = Counter(
    "closeloop_classifier_expectations_total",
    "Feedback classified, by where its expectation came from (customer, inferred, none) and"
    " the outcome expected (none when nothing said)",
    ["source", "outcome"],
)
MODEL_INFO = Gauge(
    "closeloop_classifier_model_info",
    "The model and taxonomy version this classifier runs (value 1)",
    ["model_version"],
)


def observe(classification: Classification) -> None:
    CLASSIFIED.labels(classification.root_cause, classification.urgency.value).inc()
    CONFIDENCE.observe(classification.confidence)
    if classification.needs_review:
        NEEDS_REVIEW.inc()
    expectation = classification.expectation
    if expectation is None:
        EXPECTATIONS.labels("none", "none").inc()
    else:
        EXPECTATIONS.labels(expectation.source, expectation.outcome.value).inc()


def running(model_version: str) -> None:
    """Says which model and taxonomy this classifier runs."""
    MODEL_INFO.labels(model_version).set(1)
