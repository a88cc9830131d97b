"""Classifier handlers: feedback.received in, feedback.classified out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.classifier.config import Taxonomy
from services.classifier.domain import classify
from services.classifier.model import CauseModel
from shared.contracts import FeedbackClassified, FeedbackReceived
from shared.envelope import Event, new_event
from shared.kafka import Handler

SOURCE = "/closeloop/classifier"

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
MODEL_INFO = Gauge(
    "closeloop_classifier_model_info",
    "The model and taxonomy version this classifier runs (value 1)",
    ["model_version"],
)


def make_handlers(taxonomy: Taxonomy, model: CauseModel) -> dict[str, Handler]:
    MODEL_INFO.labels(f"{model.version}+{taxonomy.version}").set(1)

    async def on_feedback_received(event: Event[Any]) -> Sequence[Event[Any]]:
        received: FeedbackReceived = event.data
        classification = classify(taxonomy, model, received.feedback)
        CLASSIFIED.labels(classification.root_cause.value, classification.urgency.value).inc()
        CONFIDENCE.observe(classification.confidence)
        if classification.needs_review:
            NEEDS_REVIEW.inc()
        out = FeedbackClassified(feedback=received.feedback, classification=classification)
        return [new_event(out, source=SOURCE, cause=event.id)]

    return {FeedbackReceived.event_name: on_feedback_received}
