"""insights' handlers: every event of case.routed and case.lifecycle is folded into its
case's projection, and the customer's health score is taken again; what insights
publishes in return (customer.signals) goes through the customers' outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from services.insights.customers import Customers
from services.insights.metrics import EVENTS_FOLDED
from services.insights.store import InsightsStore
from shared.clock import utcnow
from shared.contracts import (
    EVENT_MODELS,
    CallbackDue,
    CallbackScheduled,
    CaseEvent,
    CaseRouted,
    CaseUpdateRequested,
    PromiseDue,
    PromiseMade,
    PromiseWarning,
    SlaWarning,
    SurveyRequested,
    Topic,
)
from shared.envelope import Event
from shared.kafka import Handler

# What insights reads (case.routed and case.lifecycle): the opening of each case and
# everything that happens to it.
TOPICS = (Topic.CASE_ROUTED.value, Topic.CASE_LIFECYCLE.value)
EVENT_NAMES = tuple(
    name
    for name, model in EVENT_MODELS.items()
    if model is CaseRouted or issubclass(model, CaseEvent)
)
# Events that change nothing the health score counts: no scoring after them. (A promise
# counts once broken or overdue; promise.kept is scored, for it may correct a broken one.)
UNSCORED = frozenset(
    model.event_name
    for model in (
        CallbackScheduled,
        CallbackDue,
        SlaWarning,
        SurveyRequested,
        PromiseMade,
        PromiseWarning,
        PromiseDue,
        CaseUpdateRequested,
    )
)


def make_handlers(
    store: InsightsStore, customers: Customers, clock: Callable[[], datetime] = utcnow
) -> dict[str, Handler]:
    async def fold_event(event: Event[Any]) -> Sequence[Event[Any]]:
        data = event.data
        assert isinstance(data, CaseRouted | CaseEvent)
        now = clock()
        folded = await store.apply(event, data.case_id, now)
        EVENTS_FOLDED.labels(data.event_name, "folded" if folded else "duplicate").inc()
        if data.event_name not in UNSCORED:
            # A redelivery scores too: a copy stopped after folding may not have.
            key = data.feedback.customer_key if isinstance(data, CaseRouted) else data.customer_key
            await customers.score(key, now, "event")
        return []

    return dict.fromkeys(EVENT_NAMES, fold_event)
