"""Followup handlers: case.routed opens the case and schedules its first callback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from services.followup.domain import new_case
from services.followup.settings import FollowupSettings
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import CallbackScheduled, CaseRouted
from shared.envelope import Event, new_event
from shared.kafka import Handler
from shared.logging import log_context

log = logging.getLogger(__name__)
SOURCE = "/closeloop/followup"

CASES_OPENED = Counter(
    "closeloop_cases_opened_total",
    "Cases opened by followup, by priority and team",
    ["priority", "team"],
)


def make_handlers(store: FollowupStore, settings: FollowupSettings) -> dict[str, Handler]:
    async def on_case_routed(event: Event[Any]) -> Sequence[Event[Any]]:
        routed: CaseRouted = event.data
        with log_context(case_id=routed.case_id, feedback_id=routed.feedback.feedback_id):
            case = new_case(routed, utcnow(), settings.first_callback_hours)
            stored, created = await store.create_case(case)
            if created:
                CASES_OPENED.labels(routed.routing.priority.value, routed.routing.team).inc()
                log.info("case opened")
            callback = stored["callbacks"][0]
            await store.schedule(routed.case_id, callback)
            scheduled = CallbackScheduled(
                case_id=routed.case_id,
                customer_key=routed.feedback.customer_key,
                occurred_at=stored["created_at"],
                callback_id=callback["callback_id"],
                due_at=callback["due_at"],
                attempt=callback["attempt"],
                reason=callback["reason"],
            )
            return [
                new_event(
                    scheduled,
                    source=SOURCE,
                    cause=callback["callback_id"],
                    time=stored["created_at"],
                )
            ]

    return {CaseRouted.event_name: on_case_routed}
