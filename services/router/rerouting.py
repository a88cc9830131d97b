"""Routing a case again: after a reopen, an escalation or a missed deadline, one
priority higher, to the team's escalation team if any, to a new agent (the escalation
lead first) or the queue, with new deadlines. Once per cause: a redelivered cause emits
the same event again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from services.router.decisions import Decision, Rerouting, decide_reroute, plan_reroute
from services.router.domain import Agent, Case, Eligibility, RerouteFor
from services.router.metrics import CASES_ROUTED, REROUTES
from services.router.queue import drain, give_back, observe_assignment, observe_depth, release, take
from shared.envelope import Event
from shared.logging import log_context
from shared.outbox import until_applied

if TYPE_CHECKING:
    from services.router.flows import CaseRouter

log = logging.getLogger(__name__)


async def reroute(router: CaseRouter, case_id: str, cause_for: RerouteFor) -> list[Event[Any]]:
    with log_context(case_id=case_id):

        async def attempt() -> list[Event[Any]] | None:
            case = await router.store.get_case(case_id)
            if case is None:
                log.warning("cannot route again a case this router never routed")
                return []
            plan = plan_reroute(case, cause_for, router.policy)
            if isinstance(plan, Decision):
                if not plan.replay:
                    log.info(plan.reason, extra={"status": case.status})
                return plan.events
            return await _route_again(router, case, plan)

        return await until_applied(attempt, what=f"case {case_id}")


async def _route_again(router: CaseRouter, case: Case, plan: Rerouting) -> list[Event[Any]] | None:
    """The re-route applied and its event, or None if the case changed meanwhile."""
    now = router.clock()
    team = plan.placement.team
    agent, taken = await _take_for_reroute(router, case.id, team, plan.previous, plan.eligibility)
    decision = decide_reroute(
        case, plan, agent, now, router.policy, kept=agent is not None and not taken
    )
    if decision.case is None or await router.store.apply(decision) is None:
        if agent is not None and taken:
            await give_back(router, agent.id, case.id)
        return None
    routing = decision.case.routing
    REROUTES.labels(plan.cause.why).inc()
    CASES_ROUTED.labels(routing.priority.value, routing.team).inc()
    if taken or agent is None:
        observe_assignment(router, routing, agent, now)
    freed = await release(router, case.id, keep=routing.agent)
    if case.waiting_in and case.waiting_in != routing.team:
        await observe_depth(router, case.team)
    log.info(
        "case routed again",
        extra={
            "why": plan.cause.why,
            "priority": routing.priority.value,
            "team": routing.team,
            "agent": routing.agent,
            "reroute_count": routing.reroute_count,
        },
    )
    for freed_team in freed:
        await drain(router, freed_team)
    return decision.events


async def _take_for_reroute(
    router: CaseRouter, case_id: str, team: str, previous: str | None, eligibility: Eligibility
) -> tuple[Agent | None, bool]:
    """A new agent: the escalation lead first, then the least loaded eligible agent;
    when none is free, the previous agent if in the team (True: newly taken)."""
    for lead in eligibility.preferred:
        agent = await take(router, case_id, [lead])
        if agent is not None:
            return agent, True
    agent = await take(router, case_id, eligibility.agent_ids)
    if agent is not None:
        return agent, True
    if previous is None or router.policy.team(team).agent(previous) is None:
        return None, False
    if await router.store.holds(previous, case_id):
        return await router.store.get_agent(previous), False
    agent = await take(router, case_id, [previous])
    return agent, agent is not None
