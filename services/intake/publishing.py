"""Accepted feedback becomes one ``feedback.received`` event each, published before
intake answers: 202 only once the broker acknowledged, 503 with Retry-After when it
did not. A batch is answered item by item (``BatchResult``)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from services.intake.admission import (
    JSON,
    Admitted,
    feedback_items,
    forbid_unless_allowed,
    intake_of,
)
from services.intake.domain import FeedbackIn, Invalid, Source, normalise_from
from services.intake.metrics import (
    ACCEPTED_BY_CHANNEL,
    BATCH_ITEMS,
    PUBLISH_SECONDS_BY_ENDPOINT,
    REJECTED,
)
from services.intake.policy import Integration
from services.intake.problems import UNKNOWN_CHANNEL, Rejected, field_error, invalid
from services.intake.schemas import Accepted
from shared.contracts import Channel, Feedback, FeedbackReceived
from shared.envelope import Event, new_event
from shared.errors import BrokerUnavailable
from shared.runtime import Service

log = logging.getLogger(__name__)
SOURCE = "/closeloop/intake"
CHANNEL_VALUES = frozenset(channel.value for channel in Channel)
Endpoint = Literal["single", "batch"]


async def publish(request: Request, feedbacks: Sequence[Feedback], endpoint: Endpoint) -> None:
    """Publish and wait for the broker's ack: 503 with Retry-After when it does not come.

    One log line per request, a batch included: the ids of what was accepted (feedback
    ids and the pseudonymous customer keys, never personal data).
    """
    service: Service = request.app.state.service
    events = _events(feedbacks)
    started = time.perf_counter()
    try:
        await service.producer.publish(events)
    except BrokerUnavailable as exc:
        log.warning("feedback not accepted, broker unavailable: %s", exc)
        raise _broker_unavailable(feedbacks, intake_of(request).settings.retry_after_s) from exc
    PUBLISH_SECONDS_BY_ENDPOINT[endpoint].observe(time.perf_counter() - started)
    counts = Counter(feedback.channel for feedback in feedbacks)
    for channel, count in counts.items():
        ACCEPTED_BY_CHANNEL[channel].inc(count)
    _log_accepted(feedbacks, counts, endpoint, getattr(request.state, "integration", None))


def _events(feedbacks: Sequence[Feedback]) -> list[Event[FeedbackReceived]]:
    # One time for the events published together (and one event per feedback id: the
    # same message twice in a batch is one feedback).
    published_at = datetime.now(UTC)
    events = {
        feedback.feedback_id: new_event(
            FeedbackReceived(feedback=feedback),
            source=SOURCE,
            cause=feedback.feedback_id,
            time=published_at,
        )
        for feedback in feedbacks
    }
    return list(events.values())


def _broker_unavailable(feedbacks: Sequence[Feedback], retry_after_s: int) -> Rejected:
    channels = {feedback.channel.value for feedback in feedbacks}
    return Rejected(
        503,
        "Service unavailable",
        "broker_unavailable",
        [
            field_error(
                "(broker)",
                "the event broker did not acknowledge the feedback; nothing was accepted, "
                "retry later",
            )
        ],
        channel=channels.pop() if len(channels) == 1 else UNKNOWN_CHANNEL,
        headers={"Retry-After": str(retry_after_s)},
    )


def _log_accepted(
    feedbacks: Sequence[Feedback],
    counts: Counter[Channel],
    endpoint: Endpoint,
    integration: str | None,
) -> None:
    if endpoint == "single":
        (feedback,) = feedbacks
        log.info(
            "feedback accepted",
            extra={
                "feedback_id": feedback.feedback_id,
                "customer_key": feedback.customer_key,
                "channel": feedback.channel.value,
                "integration": integration,
            },
        )
        return
    log.info(
        "feedback batch accepted",
        extra={
            "accepted": len(feedbacks),
            # In the order of the batch: feedback_ids[i] belongs to customer_keys[i].
            "feedback_ids": [feedback.feedback_id for feedback in feedbacks],
            "customer_keys": [feedback.customer_key for feedback in feedbacks],
            "channels": {channel.value: count for channel, count in counts.items()},
            "integration": integration,
        },
    )


async def accept_one(request: Request, admitted: Admitted, feedback: Feedback) -> JSONResponse:
    forbid_unless_allowed(admitted.integration, feedback.channel)
    await publish(request, [feedback], "single")
    return JSONResponse(Accepted(feedback_id=feedback.feedback_id).model_dump(), status_code=202)


# --- batches --------------------------------------------------------------------------


async def accept_batch(request: Request, admitted: Admitted) -> Response:
    """202 with the answer per item once the accepted ones are published; 422 when no
    item is acceptable."""
    # Reading, validating and normalising up to 500 items takes a while: in a worker
    # thread, so that the event loop goes on serving other requests meanwhile.
    results, accepted, errors = await run_in_threadpool(
        read_batch, admitted, intake_of(request).settings.max_batch_items
    )
    if not accepted:
        raise Rejected(422, "Invalid request", "invalid", errors, counted=False)
    await publish(request, accepted, "batch")
    answer = {"accepted": len(accepted), "rejected": len(results) - len(accepted), "items": results}
    return Response(to_json(answer), status_code=202, media_type=JSON)


def read_batch(
    admitted: Admitted, max_items: int
) -> tuple[list[dict[str, Any]], list[Feedback], list[dict[str, str]]]:
    """Per item of the batch, in order, its answer; the accepted feedback; the errors."""
    items = feedback_items(admitted.body, max_items)
    BATCH_ITEMS.observe(len(items))
    # One arrival time for the whole request: every item was received at once.
    source = admitted.generic_source()
    # The answer is plain data in the shape of BatchResult (which documents it): a
    # validated model per item would only check what this function just wrote.
    results: list[dict[str, Any]] = []
    accepted: list[Feedback] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        key = f"{admitted.idempotency_key}/{index}" if admitted.idempotency_key else None
        try:
            feedback = _batch_item(item, admitted.integration, source, key)
        except Rejected as exc:
            REJECTED.labels(exc.channel, exc.reason).inc()
            item_errors = [
                field_error(_item_field(index, error["field"]), error["message"])
                for error in exc.errors
            ]
            errors += item_errors
            results.append({"index": index, "status": "rejected", "errors": item_errors})
            continue
        accepted.append(feedback)
        results.append(
            {
                "index": index,
                "status": "accepted",
                "feedback_id": feedback.feedback_id,
                "errors": [],
            }
        )
    return results, accepted, errors


def _item_field(index: int, field: str) -> str:
    return f"items.{index}" if field == "(body)" else f"items.{index}.{field}"


def _batch_item(
    raw: FeedbackIn | Any, integration: Integration, source: Source, idempotency_key: str | None
) -> Feedback:
    if isinstance(raw, FeedbackIn):
        item = raw
    else:
        channel = raw.get("channel") if isinstance(raw, dict) else None
        label = channel if isinstance(channel, str) and channel in CHANNEL_VALUES else None
        try:
            item = FeedbackIn.model_validate(raw)
        except ValidationError as exc:
            raise invalid(exc, label or UNKNOWN_CHANNEL) from exc
    forbid_unless_allowed(integration, item.channel)
    if idempotency_key is not None:
        source = replace(source, idempotency_key=idempotency_key)
    try:
        return normalise_from(item, source)
    except (Invalid, ValidationError) as exc:
        raise invalid(exc, item.channel.value) from exc
