"""What the router consumes, and what it does with each event: feedback.classified opens
or links a case (one by one, or a batch at once); case.lifecycle frees agents (resolved,
closed) and routes cases again (reopened, escalated, sla.breached); customer.signals
(at_risk, recovered) keep the customers' standing that routing rules can match. Each
handler decodes its event and calls the flow of its cause."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.router import opening, queue, rerouting
from services.router.domain import breach_reroute, escalation_reroute, reopen_reroute
from services.router.flows import CaseRouter
from shared.contracts import (
    CaseClosed,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CustomerAtRisk,
    CustomerRecovered,
    CustomerSignal,
    FeedbackClassified,
    SlaBreached,
    Topic,
)
from shared.envelope import Event
from shared.kafka import BatchHandler, Handler

# The router's own consumer group reads these; customer.signals has a group of its own
# (app.py says why).
TOPICS = (Topic.FEEDBACK_CLASSIFIED.value, Topic.CASE_LIFECYCLE.value)
SIGNAL_TOPICS = (Topic.CUSTOMER_SIGNALS.value,)


def make_batch_handlers(router: CaseRouter) -> dict[str, BatchHandler]:
    async def on_feedback_classified(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        batch: list[FeedbackClassified] = [event.data for event in events]
        return await opening.route_feedbacks(router, batch)

    return {FeedbackClassified.event_name: on_feedback_classified}


def make_handlers(router: CaseRouter) -> dict[str, Handler]:
    async def on_feedback_classified(event: Event[Any]) -> Sequence[Event[Any]]:
        data: FeedbackClassified = event.data
        return await opening.route_feedback(router, data)

    async def on_case_resolved(event: Event[Any]) -> Sequence[Event[Any]]:
        resolved: CaseResolved = event.data
        await queue.settle(router, resolved.case_id, event.id, "resolved")
        return []

    async def on_case_closed(event: Event[Any]) -> Sequence[Event[Any]]:
        closed: CaseClosed = event.data
        await queue.settle(router, closed.case_id, event.id, "closed")
        return []

    async def on_case_reopened(event: Event[Any]) -> Sequence[Event[Any]]:
        reopened: CaseReopened = event.data
        cause_for = reopen_reroute(reopened.reopen_count, reopened.reason)
        return await rerouting.reroute(router, reopened.case_id, cause_for)

    async def on_case_escalated(event: Event[Any]) -> Sequence[Event[Any]]:
        escalated: CaseEscalated = event.data
        if escalated.reopen_count is not None:
            # The escalation of a reopen round: one re-route with the reopen.
            cause_for = reopen_reroute(escalated.reopen_count, escalated.reason)
        else:
            cause_for = escalation_reroute(event.id, escalated.reason)
        return await rerouting.reroute(router, escalated.case_id, cause_for)

    async def on_sla_breached(event: Event[Any]) -> Sequence[Event[Any]]:
        breached: SlaBreached = event.data
        return await rerouting.reroute(router, breached.case_id, breach_reroute(breached))

    return {
        FeedbackClassified.event_name: on_feedback_classified,
        CaseResolved.event_name: on_case_resolved,
        CaseClosed.event_name: on_case_closed,
        CaseReopened.event_name: on_case_reopened,
        CaseEscalated.event_name: on_case_escalated,
        SlaBreached.event_name: on_sla_breached,
    }


def make_signal_handlers(router: CaseRouter) -> dict[str, Handler]:
    async def on_customer_signal(event: Event[Any]) -> Sequence[Event[Any]]:
        signal: CustomerSignal = event.data
        await opening.apply_signal(router, event.id, signal)
        return []

    return {
        CustomerAtRisk.event_name: on_customer_signal,
        CustomerRecovered.event_name: on_customer_signal,
    }
