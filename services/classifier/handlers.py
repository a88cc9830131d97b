"""Classifier handlers: feedback.received in, feedback.classified out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.classifier import metrics
from services.classifier.domain import classify_batch
from services.classifier.model import CauseModel
from services.classifier.policy import Taxonomy
from shared.contracts import FeedbackClassified, FeedbackReceived, Topic
from shared.envelope import Event, new_event
from shared.kafka import BatchHandler, Handler

SOURCE = "/closeloop/classifier"


# What the classifier consumes.
TOPICS = (Topic.FEEDBACK_RECEIVED.value,)


def make_batch_handlers(taxonomy: Taxonomy, model: CauseModel) -> dict[str, BatchHandler]:
    """feedback.received in batches: the model scores a whole batch in one pass."""

    async def on_feedback_received(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        received: list[FeedbackReceived] = [event.data for event in events]
        classifications = classify_batch(taxonomy, model, [r.feedback for r in received])
        out: list[Event[Any]] = []
        for event, data, classification in zip(events, received, classifications, strict=True):
            metrics.observe(classification)
            classified = FeedbackClassified(feedback=data.feedback, classification=classification)
            out.append(new_event(classified, source=SOURCE, cause=event.id))
        return out

    return {FeedbackReceived.event_name: on_feedback_received}


def make_handlers(taxonomy: Taxonomy, model: CauseModel) -> dict[str, Handler]:
    metrics.running(f"{model.version}+{taxonomy.version}")
    batch = make_batch_handlers(taxonomy, model)[FeedbackReceived.event_name]

    async def on_feedback_received(event: Event[Any]) -> Sequence[Event[Any]]:
        return await batch([event])

    return {FeedbackReceived.event_name: on_feedback_received}
