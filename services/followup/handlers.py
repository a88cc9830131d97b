"""Followup handlers: case.routed opens a case, re-routes it, assigns it from the
queue, or links new feedback to it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from services.followup import metrics
from services.followup.domain import (
    Case,
    DueItem,
    callback_item,
    link,
    meaning_of_routed,
    new_case,
    reroute,
    sla_timers,
)
from services.followup.policy import FollowupPolicy
from services.followup.store import FollowupStore
from shared.clock import utcnow
from shared.contracts import CallbackScheduled, CaseRouted
from shared.envelope import Event, derive_id, new_event
from shared.kafka import BatchHandler, Handler
from shared.logging import log_context

log = logging.getLogger(__name__)
SOURCE = "/closeloop/followup"
ATTEMPTS = 8


class CaseChanging(Exception):
    """The case kept changing under the handler; the consumer loop retries the event."""


def routing_callback_event(case: Case, generation: int) -> list[Event[Any]]:
    """callback.scheduled for the callback of one routing generation, as stored: a
    redelivery emits the very same event again."""
    callback_id = derive_id("callback", case["_id"], "after_routing", str(generation))
    callback = (case.get("callbacks") or {}).get(callback_id)
    if callback is None:
        return []
    scheduled = CallbackScheduled(
        case_id=case["_id"],
        customer_key=case["customer_key"],
        occurred_at=callback["scheduled_at"],
        callback_id=callback_id,
        due_at=callback["due_at"],
        attempt=callback["attempt"],
        reason=callback["reason"],
    )
    return [new_event(scheduled, source=SOURCE, cause=callback_id, time=callback["scheduled_at"])]


def timers_of(case: Case, policy: FollowupPolicy) -> list[DueItem]:
    """The timed work the current routing generation of a case needs."""
    items: list[DueItem] = []
    generation = int(case.get("generation", 0))
    callback_id = derive_id("callback", case["_id"], "after_routing", str(generation))
    callback = (case.get("callbacks") or {}).get(callback_id)
    if callback is not None and callback["status"] == "scheduled":
        items.append(callback_item(case["_id"], callback))
    if case["status"] in ("open", "reopened"):
        items += sla_timers(case["_id"], case["sla"], policy.sla.warning_share)
    return items


def make_batch_handlers(
    store: FollowupStore, policy: FollowupPolicy, handlers: dict[str, Handler]
) -> dict[str, BatchHandler]:
    """case.routed in batches: the cases a batch opens take two round trips together
    (insert those not stored yet, then schedule their timed work); everything else in
    the batch goes to the single-event handler, after those, in order. A crash between
    the two leaves a case without timers: its redelivery finds the case and schedules
    them (``timers_of``), as the single-event handler does."""
    one = handlers[CaseRouted.event_name]

    async def on_cases_routed(events: Sequence[Event[Any]]) -> Sequence[Event[Any]]:
        now = utcnow()
        opening: dict[str, tuple[Case, list[DueItem], Event[Any]]] = {}
        later: list[Event[Any]] = []
        for event in events:
            routed: CaseRouted = event.data
            if routed.case_id in opening or meaning_of_routed(None, routed) != "new":
                later.append(event)
                continue
            case, items = new_case(routed, now, policy)
            opening[routed.case_id] = (case, items, event)
        created = await store.insert_cases([case for case, _, _ in opening.values()])
        await store.schedule(
            [
                item
                for case_id, (_, items, _) in opening.items()
                if case_id in created
                for item in items
            ]
        )
        out: list[Event[Any]] = []
        for case_id, (case, _, event) in opening.items():
            if case_id not in created:
                later.append(event)  # stored before: the single-event handler decides
                continue
            routing = event.data.routing
            metrics.CASES_OPENED.labels(routing.priority.value, routing.team).inc()
            with log_context(case_id=case_id, feedback_id=event.data.feedback.feedback_id):
                log.info("case opened")
            out += routing_callback_event(case, 0)
        order = {id(event): i for i, event in enumerate(events)}
        for event in sorted(later, key=lambda e: order[id(e)]):
            out += await one(event)
        return out

    return {CaseRouted.event_name: on_cases_routed}


def make_handlers(store: FollowupStore, policy: FollowupPolicy) -> dict[str, Handler]:
    async def on_case_routed(event: Event[Any]) -> Sequence[Event[Any]]:
        routed: CaseRouted = event.data
        with log_context(case_id=routed.case_id, feedback_id=routed.feedback.feedback_id):
            for _ in range(ATTEMPTS):
                case = await store.get(routed.case_id)
                meaning = meaning_of_routed(case, routed)
                if meaning == "new":
                    return await open_case(routed)
                if case is None:
                    # Linked to a case this copy has not stored yet: the consumer loop
                    # retries, then dead-letters it for replay.
                    raise LookupError(f"feedback linked to unknown case {routed.case_id}")
                done = await apply(meaning, case, routed)
                if done is not None:
                    return done
            raise CaseChanging(f"case {routed.case_id} kept changing")

    async def open_case(routed: CaseRouted) -> list[Event[Any]]:
        case, items = new_case(routed, utcnow(), policy)
        await store.schedule(items)
        stored, created = await store.create_case(case)
        if created:
            metrics.CASES_OPENED.labels(routed.routing.priority.value, routed.routing.team).inc()
            log.info("case opened")
        else:
            await store.schedule(timers_of(stored, policy))
        return routing_callback_event(stored, int(stored.get("generation", 0)))

    async def apply(meaning: str, case: Case, routed: CaseRouted) -> list[Event[Any]] | None:
        """The events to emit, or None if the case changed under us (decide again)."""
        now = utcnow()
        generation = routed.routing.reroute_count
        if meaning == "linked":
            if any(
                f["feedback_id"] == routed.feedback.feedback_id
                for f in case.get("linked_feedback") or []
            ):
                return []
            change = link(case, routed, now)
            if (
                await store.transition(
                    case,
                    set_fields=change.set_fields,
                    timeline=change.timeline,
                    events=[],
                    now=now,
                    push=change.push,
                )
                is None
            ):
                return None
            log.info("feedback linked to the case")
            return []
        if meaning == "rerouted":
            change = reroute(case, routed, now, policy)
            await store.schedule(change.schedule)
            updated = await store.transition(
                case, set_fields=change.set_fields, timeline=change.timeline, events=[], now=now
            )
            if updated is None:
                return None
            await store.cancel(
                case["_id"], kinds=["sla_warning", "sla_breach"], generation_below=generation
            )
            if change.superseded_callbacks:
                await store.cancel(
                    case["_id"], kinds=["callback"], refs=change.superseded_callbacks
                )
            log.info("case re-routed", extra={"generation": generation})
            return routing_callback_event(updated, generation)
        if meaning == "assigned":
            updated = await store.transition(
                case,
                set_fields={
                    "agent": routed.routing.agent,
                    "queued": False,
                    "routing": routed.routing.model_dump(mode="json"),
                },
                timeline=[{"at": now, "event": "case.assigned", "detail": routed.routing.agent}],
                events=[],
                now=now,
            )
            return None if updated is None else []
        # A redelivery, or an older routing: make sure the timed work of the current
        # routing exists (a crash may have come between the steps) and say it again.
        await store.schedule(timers_of(case, policy))
        if generation == int(case.get("generation", 0)):
            return routing_callback_event(case, generation)
        return []

    return {CaseRouted.event_name: on_case_routed}
