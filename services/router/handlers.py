"""Router handlers: feedback.classified in, case.routed out; lifecycle frees agents."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from services.router.config import RoutingPolicy
from services.router.domain import candidate_agents, deadlines, decide
from services.router.store import RouterStore
from shared.clock import utcnow
from shared.contracts import CaseClosed, CaseRouted, FeedbackClassified, Routing
from shared.envelope import Event, derive_id, new_event
from shared.kafka import Handler
from shared.logging import log_context

log = logging.getLogger(__name__)
SOURCE = "/closeloop/router"

ROUTED = Counter(
    "closeloop_cases_routed_total", "Cases routed, by priority and team", ["priority", "team"]
)
UNASSIGNED = Counter(
    "closeloop_cases_unassigned_total", "Cases routed to a team with no agent free", ["team"]
)
RELEASED = Counter("closeloop_agent_releases_total", "Cases that freed an agent's capacity")


def case_id_for(feedback_id: str) -> str:
    return derive_id("case", feedback_id)


async def assign_agent(
    store: RouterStore, policy: RoutingPolicy, team_id: str, language: str, case_id: str
) -> str | None:
    holder = await store.holder_of(case_id)
    if holder is not None:  # a redelivery after the assignment was made
        return holder
    team = policy.team(team_id)
    loads = await store.team_loads(team_id)
    agents = [a for a in team.agents if a.id in loads]
    for agent in candidate_agents(agents, language, loads):
        if await store.try_assign(agent.id, case_id):
            return agent.id
    return None


def make_handlers(store: RouterStore, policy: RoutingPolicy) -> dict[str, Handler]:
    async def on_feedback_classified(event: Event[Any]) -> Sequence[Event[Any]]:
        data: FeedbackClassified = event.data
        feedback = data.feedback
        case_id = case_id_for(feedback.feedback_id)
        with log_context(case_id=case_id, feedback_id=feedback.feedback_id):
            stored = await store.get_routing(case_id)
            if stored is None:
                stored = await route(case_id, data)
            routed = CaseRouted.model_validate(stored["event"])
            return [new_event(routed, source=SOURCE, cause=event.id, time=routed.routing.routed_at)]

    async def route(case_id: str, data: FeedbackClassified) -> dict[str, Any]:
        feedback, classification = data.feedback, data.classification
        now = utcnow()
        decision = decide(policy, feedback, classification)
        agent = await assign_agent(store, policy, decision.team, feedback.language, case_id)
        first_due, resolution_due = deadlines(policy, decision.priority, now)
        reason = decision.reason
        if agent is None:
            reason += "; no agent free, waiting in the team queue"
            UNASSIGNED.labels(decision.team).inc()
        routed = CaseRouted(
            case_id=case_id,
            feedback=feedback,
            classification=classification,
            routing=Routing(
                priority=decision.priority,
                team=decision.team,
                agent=agent,
                rule=decision.rule,
                reason=reason,
                routed_at=now,
                first_response_due=first_due,
                resolution_due=resolution_due,
            ),
        )
        stored = await store.save_routing(
            case_id, feedback.feedback_id, {"event": routed.model_dump(mode="json")}
        )
        winner = CaseRouted.model_validate(stored["event"])
        if agent is not None and winner.routing.agent != agent:
            # Another router copy routed this case first; give back what we took.
            await store.release_from(agent, case_id)
        else:
            ROUTED.labels(decision.priority.value, decision.team).inc()
            log.info(
                "case routed",
                extra={"priority": decision.priority.value, "team": decision.team, "agent": agent},
            )
        return stored

    async def on_case_closed(event: Event[Any]) -> Sequence[Event[Any]]:
        closed: CaseClosed = event.data
        if await store.release(closed.case_id):
            RELEASED.inc()
        return []

    return {
        FeedbackClassified.event_name: on_feedback_classified,
        CaseClosed.event_name: on_case_closed,
    }
