"""Intake's HTTP API: validate, normalise, publish, and answer only after the ack."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel

from services.intake.domain import FeedbackIn, normalise
from services.intake.settings import IntakeSettings
from shared.contracts import FeedbackReceived
from shared.envelope import new_event
from shared.errors import BrokerUnavailable
from shared.http import PROBLEM_JSON, problem
from shared.logging import log_context
from shared.runtime import Service

log = logging.getLogger(__name__)
SOURCE = "/closeloop/intake"

FEEDBACK_ACCEPTED = Counter(
    "closeloop_intake_feedback_accepted_total", "Feedback acknowledged by the broker", ["channel"]
)

router = APIRouter(prefix="/v1", tags=["feedback"])


class Accepted(BaseModel):
    feedback_id: str
    status: str = "accepted"


PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}


@router.post(
    "/feedback",
    status_code=202,
    response_model=Accepted,
    responses={422: PROBLEM, 503: PROBLEM},
    summary="Submit one piece of feedback from any channel",
)
async def post_feedback(
    item: FeedbackIn,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    service: Service = request.app.state.service
    settings: IntakeSettings = request.app.state.settings
    feedback = normalise(item, now=datetime.now(UTC), idempotency_key=idempotency_key)
    event = new_event(
        FeedbackReceived(feedback=feedback), source=SOURCE, cause=feedback.feedback_id
    )
    with log_context(feedback_id=feedback.feedback_id, customer_key=feedback.customer_key):
        try:
            await service.producer.publish([event])
        except BrokerUnavailable as exc:
            log.warning("feedback not accepted, broker unavailable: %s", exc)
            retry_after = str(settings.retry_after_s)
            return problem(
                503,
                "Service unavailable",
                "the event broker did not acknowledge the feedback; nothing was accepted, "
                "retry later",
                headers={"Retry-After": retry_after},
            )
        FEEDBACK_ACCEPTED.labels(feedback.channel.value).inc()
        log.info("feedback accepted", extra={"channel": feedback.channel.value})
    return JSONResponse(Accepted(feedback_id=feedback.feedback_id).model_dump(), status_code=202)
