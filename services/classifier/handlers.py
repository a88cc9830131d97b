"""Classifier handlers: feedback.received in, feedback.classified out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.classifier.config import Taxonomy
from services.classifier.domain import classify_batch
from services.classifier.model import CauseModel
from shared.contracts import Classification, FeedbackClassified, FeedbackReceived
from shared.envelope import Event, new_event
from shared.kafka import BatchHandler, Handler

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


def observe(classification: Classification) -> None:
    CLASSIFIED.labels(classification.root_cause.value, classification.urgency.value).inc()
    CONFIDENCE.observe(classification.confidence)
    if classification.needs_review:
        NEEDS_REVIEW.inc()


def make_batch_handlers(taxonomy: Taxonomy, model: CauseModel) -> dict[str, BatchHandler]:
    """feedback.received in batches: the model scores a whole batch in one pass."""

    async def on_feedback_received(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        received: list[FeedbackReceived] = [event.data for event in events]
        classifications = classify_batch(taxonomy, model, [r.feedback for r in received])
        out: list[Event[Any]] = []
        for event, data, classification in zip(events, received, classifications, strict=True):
            observe(classification)
            classified = FeedbackClassified(feedback=data.feedback, classification=classification)
            out.append(new_event(classified, source=SOURCE, cause=event.id))
        return out

    return {FeedbackReceived.event_name: on_feedback_received}


def make_handlers(taxonomy: Taxonomy, model: CauseModel) -> dict[str, Handler]:
    MODEL_INFO.labels(f"{model.version}+{taxonomy.version}").set(1)
    batch = make_batch_handlers(taxonomy, model)[FeedbackReceived.event_name]

    async def on_feedback_received(event: Event[Any]) -> Sequence[Event[Any]]:
        return await batch([event])

    return {FeedbackReceived.event_name: on_feedback_received}
