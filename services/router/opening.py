"""Opening a case for classified feedback, or linking the feedback to the customer's
open case; one feedback at a time or a batch at once, through the same decisions.

A redelivered feedback emits the event it caused the first time (from the case's
history), whichever router copy handles it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.router.decisions import (
    Decision,
    Opening,
    decide_link,
    decide_open,
    handled_before,
    plan_open,
)
from services.router.domain import (
    Agent,
    AgentState,
    Case,
    Shares,
    case_id_for,
    link_rule,
    share_out,
    standing_from_signal,
)
from services.router.metrics import (
    AT_RISK_CASES,
    CASES_LINKED,
    CASES_ROUTED,
    CUSTOMER_SIGNALS,
    observe_agent,
)
from services.router.queue import drain, observe_assignment, release, take
from shared.contracts import CustomerSignal, FeedbackClassified
from shared.envelope import Event
from shared.logging import log_context
from shared.outbox import Conflict, until_applied

if TYPE_CHECKING:
    from services.router.flows import CaseRouter

log = logging.getLogger(__name__)

# How long the batch path may assign from the agents it last read (see AgentSnapshot).
AGENT_SNAPSHOT_S = 2.0


# --- one feedback -----------------------------------------------------------------------


async def route_feedback(router: CaseRouter, data: FeedbackClassified) -> list[Event[Any]]:
    """Open a case for the feedback, or link it to the customer's open case."""
    feedback = data.feedback
    case_id = case_id_for(feedback.feedback_id)
    with log_context(feedback_id=feedback.feedback_id, customer_key=feedback.customer_key):
        handled = await router.store.case_of_feedback(feedback.feedback_id, case_id)
        before = handled_before(handled, feedback.feedback_id)
        if before is not None:
            return list(before.events)
        now = router.clock()
        target, why = await _link_target(router, data)
        if target is not None:
            linked = await link(router, target, data, why, now)
            if linked:
                return linked
        return await open_case(router, data, now)


async def _link_target(router: CaseRouter, data: FeedbackClassified) -> tuple[Case | None, str]:
    related = data.feedback.related_case_id
    if related:
        case = await router.store.get_case(related)
        if case is not None and case.status != "closed":
            return case, f"the feedback continues case {related}"
        log.info("related case is closed or unknown", extra={"related_case_id": related})
    rule = link_rule(router.policy, data)
    case = rule.pick(await router.store.cases_of_customers([data.feedback.customer_key]))
    if case is None:
        return None, ""
    return case, rule.why(case, router.policy)


async def link(
    router: CaseRouter, case: Case, data: FeedbackClassified, why: str, now: datetime
) -> list[Event[Any]]:
    """Link the feedback to ``case``: its event, or none when the case closed meanwhile
    (the caller opens a case instead)."""

    async def attempt() -> list[Event[Any]] | None:
        nonlocal case
        decision = decide_link(case, data, why, now)
        if not decision.changes:
            return list(decision.events)
        if await router.store.apply(decision) is not None:
            CASES_LINKED.inc()
            priority = decision.events[0].data.routing.priority
            log.info(
                "feedback linked to an open case",
                extra={"case_id": case.id, "priority": priority.value},
            )
            return list(decision.events)
        fresh = await router.store.get_case(case.id)
        if fresh is None:
            return []
        case = fresh
        return None

    return await until_applied(attempt, what=f"case {case.id}")


async def open_case(
    router: CaseRouter, data: FeedbackClassified, now: datetime
) -> list[Event[Any]]:
    opening = plan_open(router.policy, data, at_risk=await _at_risk(router, data))
    agent = await take(router, opening.case_id, opening.eligibility.agent_ids)
    decision = decide_open(opening, agent, now, router.policy)
    if await router.store.apply(decision) is None:
        return await opened_elsewhere(router, opening.case_id, agent)
    _case_opened(router, decision, agent, now, at_risk=opening.at_risk)
    # An earlier attempt, or a copy racing on the same feedback, may hold a place
    # for this case: free it, and serve the queue it may have kept a case from.
    kept = None if agent is None else agent.id
    for team in sorted(await release(router, opening.case_id, keep=kept)):
        await drain(router, team)
    return decision.events


async def opened_elsewhere(
    router: CaseRouter, case_id: str, agent: Agent | None
) -> list[Event[Any]]:
    """Another router copy opened this case first; give back what this one took, and
    serve the team's queue: a case may have joined it while the place was held."""
    stored = await router.store.get_case(case_id)
    if stored is None:
        raise Conflict(f"case {case_id} could not be stored")
    if agent is not None and stored.agent != agent.id:
        given_back = await router.store.release_from(agent.id, case_id)
        if given_back is not None:
            observe_agent(given_back)
            await drain(router, given_back.team)
    before = handled_before(stored, stored.feedback_id)
    if before is None:
        raise Conflict(f"case {case_id} exists without its routing")
    return before.events


def _case_opened(
    router: CaseRouter, decision: Decision, agent: Agent | None, now: datetime, *, at_risk: bool
) -> None:
    routed = decision.events[0].data
    routing = routed.routing
    CASES_ROUTED.labels(routing.priority.value, routing.team).inc()
    if at_risk:
        AT_RISK_CASES.labels(routing.rule).inc()
    observe_assignment(router, routing, agent, now)
    log.info(
        "case routed",
        extra={
            "case_id": routed.case_id,
            "feedback_id": routed.feedback.feedback_id,
            "priority": routing.priority.value,
            "team": routing.team,
            "agent": routing.agent,
            "rule": routing.rule,
            "at_risk": at_risk,
        },
    )


async def _at_risk(router: CaseRouter, data: FeedbackClassified) -> bool:
    """The customer's standing, for a new case; not read when no rule looks at it."""
    if not router.policy.uses_at_risk:
        return False
    return await router.store.customer_at_risk(data.feedback.customer_key)


async def _at_risk_among(router: CaseRouter, customer_keys: Sequence[str]) -> set[str]:
    if not router.policy.uses_at_risk or not customer_keys:
        return set()
    return await router.store.customers_at_risk(customer_keys)


# --- a batch ----------------------------------------------------------------------------


async def route_feedbacks(
    router: CaseRouter, batch: Sequence[FeedbackClassified]
) -> list[Event[Any]]:
    """What ``route_feedback`` does for each, in order, in four database round trips
    for a run of feedback from different customers: one read of those customers'
    cases, one of the agents who may take them, one conditional update of those
    agents and one insert of the new cases; five when a rule looks at whether the
    customer is at risk: one read of the standing of the customers with new cases.
    A customer's second feedback starts a new run (it may link to the case the first
    opened); the unusual (a related case, a redelivery, a race with another router
    copy) goes one by one."""
    events: list[Event[Any]] = []
    run: list[FeedbackClassified] = []
    customers: set[str] = set()
    for data in batch:
        feedback = data.feedback
        if feedback.related_case_id or feedback.customer_key in customers:
            events += await _route_run(router, run)
            run, customers = [], set()
        if feedback.related_case_id:
            events += await route_feedback(router, data)
            continue
        run.append(data)
        customers.add(feedback.customer_key)
    events += await _route_run(router, run)
    return events


async def _route_run(router: CaseRouter, run: Sequence[FeedbackClassified]) -> list[Event[Any]]:
    """Feedback of different customers, none naming a related case."""
    if not run:
        return []
    now = router.clock()
    events: list[Event[Any]] = []
    one_by_one: list[FeedbackClassified] = []
    to_open: list[FeedbackClassified] = []
    known = await router.store.cases_of_customers([d.feedback.customer_key for d in run])
    for data in run:
        feedback = data.feedback
        rule = link_rule(router.policy, data)
        if any(c.id == rule.exclude or feedback.feedback_id in c.linked_feedback for c in known):
            one_by_one.append(data)  # handled before: say it again from its history
            continue
        target = rule.pick(known)
        if target is None:
            to_open.append(data)
            continue
        with log_context(feedback_id=feedback.feedback_id, customer_key=feedback.customer_key):
            linked = await link(router, target, data, rule.why(target, router.policy), now)
        if linked:
            events += linked
        else:
            one_by_one.append(data)
    # One read of the standing for every new case of the run; links need none.
    at_risk = await _at_risk_among(router, [data.feedback.customer_key for data in to_open])
    openings = [
        plan_open(router.policy, data, at_risk=data.feedback.customer_key in at_risk)
        for data in to_open
    ]
    if openings:
        opened, left = await _open_many(router, openings, now)
        events += opened
        one_by_one += [opening.data for opening in left]
    order = {id(data): i for i, data in enumerate(run)}
    for data in sorted(one_by_one, key=lambda d: order[id(d)]):
        events += await route_feedback(router, data)
    return events


@dataclass
class AgentSnapshot:
    """Agents as this router last read or changed them, for the batch path: used for at
    most AGENT_SNAPSHOT_S and only while this router changed no agent in any other way.
    Takes are conditional on the load read, so a snapshot another router made stale
    costs a retry, never an overfilled agent; a place another copy freed meanwhile may
    go unseen for that long, and the case waits in the queue for the next drain (a
    resolution, or the sweep)."""

    agents: dict[str, Agent] = field(default_factory=dict)
    teams: frozenset[str] = frozenset()
    writes: int = -1
    at: float = 0.0

    def usable(self, teams: frozenset[str], writes: int) -> bool:
        fresh = time.monotonic() - self.at < AGENT_SNAPSHOT_S
        return fresh and self.writes == writes and teams <= self.teams


async def _agents_for(
    router: CaseRouter, teams: frozenset[str], case_ids: Sequence[str]
) -> dict[str, Agent]:
    snapshot = router.agents
    if snapshot.usable(teams, router.store.agent_writes) and snapshot.agents:
        return snapshot.agents
    agents = await router.store.agents_of_teams(sorted(teams), case_ids)
    snapshot.agents = {agent.id: agent for agent in agents}
    snapshot.teams, snapshot.writes = teams, router.store.agent_writes
    snapshot.at = time.monotonic()
    return snapshot.agents


def _share_out(openings: Sequence[Opening], agents: dict[str, Agent]) -> Shares:
    case_ids = {opening.case_id for opening in openings}
    return share_out(
        [(opening.case_id, opening.eligibility.agent_ids) for opening in openings],
        {
            agent.id: AgentState(
                id=agent.id,
                load=agent.load,
                capacity=agent.capacity,
                available=agent.available and not agent.retired,
                holds=frozenset(agent.open_cases).intersection(case_ids),
            )
            for agent in agents.values()
        },
    )


async def _take_shares(
    router: CaseRouter, openings: Sequence[Opening], agents: dict[str, Agent]
) -> tuple[Shares, dict[str, int]]:
    """Share the cases out and take the places in one round trip; the shares that hold
    (a case whose take did not go through is left unsettled) and each taker's load
    before its takes."""
    shares = _share_out(openings, agents)
    takes = shares.takes
    before = {agent_id: agents[agent_id].load for agent_id in takes}
    reads = {a: (before[a], agents[a].capacity, cases) for a, cases in takes.items()}
    if await router.store.take_many(reads):
        for agent_id, cases in takes.items():
            taker = agents[agent_id]
            agents[agent_id] = taker.model_copy(
                update={
                    "load": before[agent_id] + len(cases),
                    "open_cases": (*taker.open_cases, *cases),
                }
            )
        router.agents.writes = router.store.agent_writes
        return shares, before
    # Another router changed some of these agents meanwhile: keep the takes that went
    # through, route the others one by one.
    router.agents.writes = -1
    holding = await router.store.agents_holding([opening.case_id for opening in openings])
    for agent_id, cases in takes.items():
        for case_id in set(cases) - holding.get(agent_id, set()):
            shares.agent_of.pop(case_id)
            shares.unsettled.append(case_id)
    return shares, before


async def _open_many(
    router: CaseRouter, openings: Sequence[Opening], now: datetime
) -> tuple[list[Event[Any]], list[Opening]]:
    """Open the cases of ``openings``; their events, and the openings left for the one
    by one path."""
    teams = frozenset(opening.placement.team for opening in openings)
    agents = await _agents_for(router, teams, [opening.case_id for opening in openings])
    shares, running = await _take_shares(router, openings, agents)
    # Each case names its agent at the load right after taking it.
    decided: list[tuple[Decision, Agent | None, bool]] = []
    for opening in openings:
        if opening.case_id not in shares.agent_of:
            continue
        taker = shares.agent_of[opening.case_id]
        agent = None if taker is None else agents[taker]
        if taker is not None and opening.case_id in shares.takes.get(taker, []):
            running[taker] += 1
            agent = agents[taker].model_copy(update={"load": running[taker]})
        decision = decide_open(opening, agent, now, router.policy)
        decided.append((decision, agent, opening.at_risk))
    created = await router.store.apply_many([decision for decision, _, _ in decided])
    events: list[Event[Any]] = []
    for decision, agent, at_risk in decided:
        case_id = decision.events[0].data.case_id
        if case_id in created:
            _case_opened(router, decision, agent, now, at_risk=at_risk)
            events += decision.events
        else:
            events += await opened_elsewhere(router, case_id, agent)
    unsettled = set(shares.unsettled)
    return events, [opening for opening in openings if opening.case_id in unsettled]


# --- customers' standing ----------------------------------------------------------------


async def apply_signal(router: CaseRouter, event_id: str, signal: CustomerSignal) -> bool:
    """Keep the customer's standing for the routing of their next new case: once per
    crossing, the latest crossing winning. False for a stale signal."""
    standing = standing_from_signal(signal, event_id)
    applied = await router.store.apply_standing(standing)
    CUSTOMER_SIGNALS.labels(signal.event_name, "applied" if applied else "stale").inc()
    log.info(
        "customer standing applied" if applied else "stale customer signal ignored",
        extra={
            "customer_key": signal.customer_key,
            "at_risk": standing.at_risk,
            "crossing": standing.crossing,
        },
    )
    return applied
