"""Router handlers, one per consumed event type: feedback.classified opens or links a
case; case.lifecycle frees agents (resolved, closed) and routes cases again (reopened,
escalated, sla.breached); customer.signals (at_risk, recovered) keep the customers'
standing that routing rules can match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.router.flows import (
    CaseRouter,
    breach_reroute,
    escalation_reroute,
    reopen_reroute,
)
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
)
from shared.envelope import Event
from shared.kafka import BatchHandler, Handler


def make_batch_handlers(router: CaseRouter) -> dict[str, BatchHandler]:
    async def on_feedback_classified(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        return await router.route_feedbacks([event.data for event in events])

    return {FeedbackClassified.event_name: on_feedback_classified}


def make_handlers(router: CaseRouter) -> dict[str, Handler]:
    async def on_feedback_classified(event: Event[Any]) -> Sequence[Event[Any]]:
        data: FeedbackClassified = event.data
        return await router.route_feedback(data)

    async def on_case_resolved(event: Event[Any]) -> Sequence[Event[Any]]:
        resolved: CaseResolved = event.data
        await router.settle(resolved.case_id, event.id, "resolved")
        return []

    async def on_case_closed(event: Event[Any]) -> Sequence[Event[Any]]:
        closed: CaseClosed = event.data
        await router.settle(closed.case_id, event.id, "closed")
        return []

    async def on_case_reopened(event: Event[Any]) -> Sequence[Event[Any]]:
        reopened: CaseReopened = event.data
        return await router.reroute(
            reopened.case_id, reopen_reroute(reopened.reopen_count, reopened.reason)
        )

    async def on_case_escalated(event: Event[Any]) -> Sequence[Event[Any]]:
        escalated: CaseEscalated = event.data
        if escalated.reopen_count is not None:
            cause_for = reopen_reroute(escalated.reopen_count, escalated.reason)
        else:
            cause_for = escalation_reroute(event.id, escalated.reason)
        return await router.reroute(escalated.case_id, cause_for)

    async def on_sla_breached(event: Event[Any]) -> Sequence[Event[Any]]:
        breached: SlaBreached = event.data
        return await router.reroute(breached.case_id, breach_reroute(breached))

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
        await router.apply_signal(event.id, signal)
        return []

    return {
        CustomerAtRisk.event_name: on_customer_signal,
        CustomerRecovered.event_name: on_customer_signal,
    }
