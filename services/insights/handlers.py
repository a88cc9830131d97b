"""insights' handlers: every event of case.routed and case.lifecycle is folded into its
case's projection; nothing is published in return."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.insights.metrics import EVENTS_FOLDED
from services.insights.store import InsightsStore
from shared.clock import utcnow
from shared.contracts import EVENT_MODELS, CaseEvent, CaseRouted
from shared.envelope import Event
from shared.kafka import Handler

# What insights reads (case.routed and case.lifecycle): the opening of each case and
# everything that happens to it.
EVENT_NAMES = tuple(
    name
    for name, model in EVENT_MODELS.items()
    if model is CaseRouted or issubclass(model, CaseEvent)
)


def make_handlers(store: InsightsStore) -> dict[str, Handler]:
    async def fold_event(event: Event[Any]) -> Sequence[Event[Any]]:
        data = event.data
        assert isinstance(data, CaseRouted | CaseEvent)
        folded = await store.apply(event, data.case_id, utcnow())
        EVENTS_FOLDED.labels(data.event_name, "folded" if folded else "duplicate").inc()
        return []

    return dict.fromkeys(EVENT_NAMES, fold_event)
