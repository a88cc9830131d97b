"""Agents and team queues: taking a case (one atomic conditional update per agent),
giving a place back, serving a team's queue when places free up, agents going online or
offline, and the end of a case (resolved, closed), which frees its agent.

An assignment from a queue is not caused by the event being handled: its ``case.routed``
is queued in the case's outbox with the change and published at once, or by the relay
if the broker is down (shared/outbox.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from services.router.decisions import Decision, decide_assignment, decide_settle
from services.router.domain import Agent, Case, least_loaded, queue_eligibility
from services.router.metrics import (
    AGENT_RELEASES,
    ASSIGNMENT_LATENCY,
    CASES_QUEUED,
    TEAM_QUEUE_DEPTH,
    observe_agent,
)
from shared.contracts import Routing
from shared.envelope import Event
from shared.errors import BrokerUnavailable
from shared.logging import log_context
from shared.outbox import Conflict, until_applied

if TYPE_CHECKING:
    from services.router.flows import CaseRouter

log = logging.getLogger(__name__)

# Each failed attempt means another router took a case: the loop always makes progress.
TAKE_ATTEMPTS = 1000


# --- places -----------------------------------------------------------------------------


async def take(router: CaseRouter, case_id: str, agent_ids: Sequence[str]) -> Agent | None:
    """The least loaded of ``agent_ids`` able to take the case takes it; None when none
    of them can. Returns the agent after the take."""
    for _ in range(TAKE_ATTEMPTS):
        loads = await router.store.candidate_loads(case_id, agent_ids)
        if not loads:
            return None
        chosen = least_loaded(loads, case_id)
        taken = await router.store.take_at_load(case_id, chosen, loads[chosen])
        if taken is not None:
            return taken
    raise Conflict(f"agents kept changing while assigning case {case_id}")


async def give_back(router: CaseRouter, agent_id: str, case_id: str) -> None:
    """Undo a take that lost a race, unless the winner gave the case to the same agent."""
    fresh = await router.store.get_case(case_id)
    if fresh is None or fresh.agent != agent_id or fresh.status != "open":
        released = await router.store.release_from(agent_id, case_id)
        if released is not None:
            observe_agent(released)


async def release(router: CaseRouter, case_id: str, keep: str | None = None) -> set[str]:
    """Free every agent holding the case but ``keep``; the teams of the agents freed."""
    agents = await router.store.release_case(case_id, keep=keep)
    for agent in agents:
        AGENT_RELEASES.inc()
        observe_agent(agent)
    return {agent.team for agent in agents}


def observe_assignment(
    router: CaseRouter, routing: Routing, agent: Agent | None, decided_at: datetime
) -> None:
    if agent is None:
        CASES_QUEUED.labels(routing.team).inc()
        # The exact depth is read back on every drain and sweep; counting the queue
        # for each case that joins it would cost more than the case itself.
        TEAM_QUEUE_DEPTH.labels(routing.team).inc()
        return
    observe_agent(agent)
    elapsed = (router.clock() - decided_at).total_seconds()
    ASSIGNMENT_LATENCY.observe(max(0.0, elapsed))


async def observe_depth(router: CaseRouter, team_id: str) -> None:
    TEAM_QUEUE_DEPTH.labels(team_id).set(await router.store.queue_depth(team_id))


# --- team queues ------------------------------------------------------------------------


async def drain(router: CaseRouter, team_id: str) -> list[Event[Any]]:
    """Give queued cases of the team to agents with free places, highest priority
    then oldest first, and publish the assignments. A case no free agent can serve
    (skills) keeps its place and does not hold up the cases behind it."""
    if not router.policy.has_team(team_id):
        return []
    assigned: list[Decision] = []
    places = await router.store.free_places(team_id)
    skipped = 0
    while places:
        page_size = max(10, 2 * sum(places.values()))
        page = await router.store.queued_cases(team_id, page_size, skip=skipped)
        for case in page:
            if not places:
                break
            decision = await _assign_queued(router, case, places)
            if decision is None:
                skipped += 1
            else:
                assigned.append(decision)
        if len(page) < page_size:
            break
    await observe_depth(router, team_id)
    await _publish_queued(router, assigned)
    return [event for decision in assigned for event in decision.events]


async def _assign_queued(router: CaseRouter, case: Case, places: dict[str, int]) -> Decision | None:
    """Give one queued case to the least loaded eligible agent with a free place; the
    decision applied, or None (nobody can take it, or the case changed meanwhile)."""
    eligibility = queue_eligibility(case, router.policy)
    candidates = [a for a in eligibility.agent_ids if a in places]
    if not candidates:
        return None
    agent = await take(router, case.id, candidates)
    if agent is None:
        for candidate in candidates:
            places.pop(candidate, None)
        return None
    places[agent.id] = agent.capacity - agent.load
    if places[agent.id] <= 0:
        places.pop(agent.id)
    now = router.clock()
    decision = decide_assignment(case, agent, eligibility, now)
    if not decision.changes or await router.store.apply(decision) is None:
        await give_back(router, agent.id, case.id)
        return None
    await release(router, case.id, keep=agent.id)
    observe_agent(agent)
    ASSIGNMENT_LATENCY.observe(max(0.0, (now - case.routing.routed_at).total_seconds()))
    log.info(
        "queued case assigned", extra={"case_id": case.id, "team": case.team, "agent": agent.id}
    )
    return decision


async def _publish_queued(router: CaseRouter, decisions: Sequence[Decision]) -> None:
    """Publish what the decisions queued in the cases' outboxes, and drop it from there;
    left for the relay if the broker is unavailable."""
    if not decisions:
        return
    try:
        await router.publish([event for decision in decisions for event in decision.events])
    except BrokerUnavailable as exc:
        log.warning("assignments left in the outbox for the relay: %s", exc)
        return
    for decision in decisions:
        if decision.case is not None:
            await router.store.settle(decision.case.id, [e.id for e in decision.events])


# --- agents and the end of a case -------------------------------------------------------


async def settle(
    router: CaseRouter, case_id: str, event_id: str, status: Literal["resolved", "closed"]
) -> None:
    """case.resolved / case.closed: the agent's capacity is free again (once), and the
    team queue is served. A closed case also stops absorbing new feedback."""
    with log_context(case_id=case_id):

        async def attempt() -> tuple[Case | None, bool] | None:
            case = await router.store.get_case(case_id)
            if case is None:
                return None, False
            decision = decide_settle(case, event_id, status)
            if not decision.changes:
                return case, False
            applied = await router.store.apply(decision)
            return None if applied is None else (case, True)

        case, marked = await until_applied(attempt, what=f"case {case_id}")
        if case is not None and not marked and case.status not in ("resolved", "closed"):
            return  # a redelivered event for a case that was routed again since
        teams = await release(router, case_id)
        if case is not None and case.waiting_in:
            teams.add(case.waiting_in)  # it left the queue
        for team in sorted(teams):
            await drain(router, team)


async def set_availability(router: CaseRouter, agent_id: str, available: bool) -> Agent | None:
    """An agent going online serves the team queue at once."""
    agent = await router.store.set_availability(agent_id, available)
    if agent is None:
        return None
    log.info("agent availability changed", extra={"agent": agent_id, "available": available})
    if available:
        await drain(router, agent.team)
        agent = await router.store.get_agent(agent_id)
    return agent


async def sweep(router: CaseRouter, outbox_after: timedelta) -> None:
    """Serve every queue, publish what the outboxes still hold, refresh the gauges. The
    safety net for an assignment a missed trigger would otherwise delay."""
    depths = await router.store.queue_depths()
    for team in router.policy.teams:
        TEAM_QUEUE_DEPTH.labels(team.id).set(depths.get(team.id, 0))
        if depths.get(team.id):
            await drain(router, team.id)
    await router.store.relay(router.publish, router.clock() - outbox_after)
    for agent in await router.store.list_agents():
        observe_agent(agent)
