"""Followup handlers: case.routed opens a case, re-routes it, assigns it from the
queue, or links new feedback to it (``decide_routed``), one event at a time or a batch
of them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from services.followup import metrics
from services.followup.decisions import Decision, decide_routed
from services.followup.domain import RoutedMeaning, meaning_of_routed
from services.followup.outreach import Outreach
from services.followup.policy import FollowupPolicy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import CaseRouted, Topic
from shared.envelope import Event
from shared.kafka import BatchHandler, Handler
from shared.logging import log_context
from shared.outbox import until_applied

log = logging.getLogger(__name__)


# What followup consumes.
TOPICS = (Topic.CASE_ROUTED.value,)


def _say(meaning: RoutedMeaning, decision: Decision) -> None:
    """Count and log a written change."""
    metrics.record(decision.measures)
    if meaning == "new":
        log.info("case opened")
    elif meaning == "linked":
        log.info("feedback linked to the case")
    elif meaning == "rerouted" and decision.case is not None:
        log.info("case re-routed", extra={"generation": decision.case.generation})


async def route(
    store: FollowupStore, policy: FollowupPolicy, outreach: Outreach, routed: CaseRouted
) -> list[Event[Any]]:
    """Load, decide, apply (again if the case changed meanwhile); the events to send."""

    async def attempt() -> list[Event[Any]] | None:
        case = await store.get(routed.case_id)
        decision = decide_routed(case, routed, utcnow(), policy, outreach)
        if decision.refusal is not None:
            # Linked to a case this copy has not stored yet: the consumer loop retries,
            # then dead-letters it for replay.
            raise LookupError(decision.refusal.message)
        if await store.apply(decision) is None:
            return None
        if decision.writes:
            _say(meaning_of_routed(case, routed), decision)
        return list(decision.replies)

    with log_context(case_id=routed.case_id, feedback_id=routed.feedback.feedback_id):
        return await until_applied(attempt, what=f"case {routed.case_id}")


def make_handlers(
    store: FollowupStore, policy: FollowupPolicy, outreach: Outreach
) -> dict[str, Handler]:
    async def on_case_routed(event: Event[Any]) -> Sequence[Event[Any]]:
        return await route(store, policy, outreach, event.data)

    return {CaseRouted.event_name: on_case_routed}


def make_batch_handlers(
    store: FollowupStore,
    policy: FollowupPolicy,
    outreach: Outreach,
    handlers: dict[str, Handler],
) -> dict[str, BatchHandler]:
    """case.routed in batches: the cases a batch opens are decided as the single event
    would be and written together (``apply_many``: two round trips); everything else in
    the batch goes to the single-event handler, after those, in order."""
    one = handlers[CaseRouted.event_name]

    async def on_cases_routed(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        now = utcnow()
        opening: dict[str, tuple[Decision, Event[Any]]] = {}
        later: list[Event[Any]] = []
        for event in events:
            routed: CaseRouted = event.data
            if routed.case_id in opening or meaning_of_routed(None, routed) != "new":
                later.append(event)
                continue
            opening[routed.case_id] = (decide_routed(None, routed, now, policy, outreach), event)
        created = await store.apply_many([decision for decision, _ in opening.values()])
        out: list[Event[Any]] = []
        for case_id, (decision, event) in opening.items():
            if case_id not in created:
                later.append(event)  # stored before: the single-event handler decides
                continue
            with log_context(case_id=case_id, feedback_id=event.data.feedback.feedback_id):
                _say("new", decision)
            out += decision.replies
        order = {id(event): i for i, event in enumerate(events)}
        for event in sorted(later, key=lambda e: order[id(e)]):
            out += await one(event)
        return out

    return {CaseRouted.event_name: on_cases_routed}
