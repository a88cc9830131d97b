"""What the router does when something happens: open, link or re-route a case, free an
agent, serve a team queue. Decisions come from the domain, state from the store.

Every ``case.routed`` the router emits is kept in the case's history under the key of
what caused it (``route``, ``link:<feedback>``, ``reopen:<round>``, ``escalation:<event>``,
``breach:<generation>:<sla>``, ``assign:<generation>``) and its event id is derived from
that key, so a redelivered cause emits the same event again and nothing twice.
Assignments from a queue are not caused by the event being handled: they go through the
case's outbox and are published at once, or by the relay if the broker is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.router.config import RoutingPolicy
from services.router.domain import (
    AgentState,
    Decision,
    Eligibility,
    RerouteReason,
    Shares,
    assignment_reason,
    case_id_for,
    deadlines,
    deadlines_reason,
    decide,
    decide_reroute,
    eligible_agents,
    escalation_lead,
    from_queue_reason,
    least_loaded,
    link_cutoff,
    link_routing,
    more_urgent,
    priority_rank,
    queued_reason,
    share_out,
    standing_from_signal,
)
from services.router.metrics import (
    AGENT_RELEASES,
    ASSIGNMENT_LATENCY,
    AT_RISK_CASES,
    CASES_LINKED,
    CASES_QUEUED,
    CASES_ROUTED,
    CUSTOMER_SIGNALS,
    REROUTES,
    TEAM_QUEUE_DEPTH,
    observe_agent,
)
from services.router.store import (
    SOURCE,
    RouterStore,
    event_from_history,
    find_history,
    history_entry,
)
from shared.clock import utcnow
from shared.contracts import (
    CaseRouted,
    Classification,
    CustomerSignal,
    Feedback,
    FeedbackClassified,
    Routing,
    SlaBreached,
    Urgency,
)
from shared.envelope import Event, new_event
from shared.errors import BrokerUnavailable
from shared.logging import log_context

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Event[Any]]], Awaitable[None]]
Clock = Callable[[], datetime]

QUEUE_BATCH = 100
# Each failed attempt means another router took a case: the loop always makes progress.
TAKE_ATTEMPTS = 1000
# Optimistic updates retried this often before the handler fails (and is retried).
CHANGE_ATTEMPTS = 8
ROUTE_KEY = "route"
# How long the batch path may assign from the agents it last read (see CaseRouter).
AGENT_SNAPSHOT_S = 2.0


class CaseKeptChanging(RuntimeError):
    """The case changed under every attempt to update it; the handler is retried."""


def link_key(feedback_id: str) -> str:
    return f"link:{feedback_id}"


@dataclass(frozen=True)
class Reroute:
    """Why a case is routed again, and the key that makes it happen once."""

    key: str
    why: RerouteReason
    detail: str
    reopens: bool = False
    """A reopen: routes a resolved case again. Other causes only move open cases."""
    generation: int | None = None
    """For a breach: the routing generation whose deadline was missed."""


RerouteFor = Callable[[dict[str, Any]], Reroute | None]


@dataclass(frozen=True)
class OpenPlan:
    """A case about to be opened: what the policy decided, before an agent is chosen."""

    case_id: str
    data: FeedbackClassified
    decision: Decision
    eligibility: Eligibility
    at_risk: bool
    """Whether the customer was at risk when the case was planned."""

    @property
    def feedback(self) -> Feedback:
        return self.data.feedback

    @property
    def classification(self) -> Classification:
        return self.data.classification


def customer_case(
    cases: Sequence[dict[str, Any]],
    feedback: Feedback,
    classification: Classification,
    case_id: str,
    opened_since: datetime,
) -> dict[str, Any] | None:
    """Among ``cases``, the customer's most recent open case with this root cause opened
    at or after ``opened_since`` (the one new feedback links to), other than ``case_id``."""
    matching = [
        case
        for case in cases
        if case["customer_key"] == feedback.customer_key
        and case["root_cause"] == classification.root_cause.value
        and case["status"] != "closed"
        and case["opened_at"] >= opened_since
        and case["_id"] != case_id
    ]
    return max(matching, key=lambda case: case["opened_at"], default=None)


def same_cause_reason(
    case: dict[str, Any], classification: Classification, policy: RoutingPolicy
) -> str:
    opened, window = case["opened_at"], policy.linking.window_days
    return (
        f"same customer and root cause {classification.root_cause.value} as case "
        f"{case['_id']} opened {opened:%Y-%m-%d}, within {window:g} days"
    )


def reopen_reroute(reopen_count: int, reason: str) -> RerouteFor:
    """case.reopened and the case.escalated of the same round are one re-route."""
    detail = f"round {reopen_count}: {reason[:200]}"
    return lambda case: Reroute(
        key=f"reopen:{reopen_count}", why="reopened", detail=detail, reopens=True
    )


def escalation_reroute(event_id: str, reason: str) -> RerouteFor:
    return lambda case: Reroute(key=f"escalation:{event_id}", why="escalated", detail=reason[:200])


def breach_reroute(breached: SlaBreached) -> RerouteFor:
    """Once per (routing generation, SLA kind): the generation is the routing whose
    deadline the breach names; a breach of a deadline replaced since is stale."""

    def resolve(case: dict[str, Any]) -> Reroute | None:
        routings = [CaseRouted.model_validate(case["routed"]).routing]
        routings += [
            CaseRouted.model_validate(entry["data"]).routing
            for entry in case.get("history", [])
            if not entry["key"].startswith("link:")
        ]
        for routing in routings:
            due = (
                routing.first_response_due
                if breached.sla == "first_response"
                else routing.resolution_due
            )
            if abs(due - breached.due_at) < timedelta(seconds=1):
                kind = breached.sla.replace("_", " ")
                return Reroute(
                    key=f"breach:{routing.reroute_count}:{breached.sla}",
                    why="sla_breached",
                    detail=f"{kind} due {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC was missed",
                    generation=routing.reroute_count,
                )
        return None

    return resolve


class CaseRouter:
    def __init__(
        self,
        store: RouterStore,
        policy: RoutingPolicy,
        publish: Publish,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy
        self.publish = publish
        self.clock = clock
        # Agents as last read or changed by this router, for the batch path: used for
        # at most AGENT_SNAPSHOT_S and only while this router changed no agent in any
        # other way. Takes are conditional on the load read, so a snapshot another
        # router made stale costs a retry, never an overfilled agent; a place another
        # copy freed meanwhile may go unseen for that long, and the case waits in the
        # queue for the next drain (a resolution, or the sweep).
        self._agents: dict[str, dict[str, Any]] = {}
        self._agents_teams: frozenset[str] = frozenset()
        self._agents_writes = -1
        self._agents_at = 0.0

    # --- feedback.classified -------------------------------------------------------

    async def route_feedback(self, data: FeedbackClassified) -> list[Event[Any]]:
        """Open a case for the feedback, or link it to the customer's open case."""
        feedback, classification = data.feedback, data.classification
        case_id = case_id_for(feedback.feedback_id)
        with log_context(feedback_id=feedback.feedback_id, customer_key=feedback.customer_key):
            handled = await self.store.case_of_feedback(feedback.feedback_id, case_id)
            if handled is not None:
                key = ROUTE_KEY if handled["_id"] == case_id else link_key(feedback.feedback_id)
                entry = find_history(handled, key)
                if entry is not None:
                    return [event_from_history(entry)]
            now = self.clock()
            target, why = await self._link_target(feedback, classification, case_id)
            if target is not None:
                linked = await self._link(target, feedback, classification, why, now)
                if linked is not None:
                    return linked
            return await self._open_case(case_id, feedback, classification, now)

    async def _link_target(
        self, feedback: Feedback, classification: Classification, case_id: str
    ) -> tuple[dict[str, Any] | None, str]:
        related = feedback.related_case_id
        if related:
            case = await self.store.get_case(related)
            if case is not None and case["status"] != "closed":
                return case, f"the feedback continues case {related}"
            log.info("related case is closed or unknown", extra={"related_case_id": related})
        case = await self.store.open_case_for(
            feedback.customer_key,
            classification.root_cause.value,
            link_cutoff(self.policy, feedback),
            exclude=case_id,
        )
        if case is None:
            return None, ""
        return case, same_cause_reason(case, classification, self.policy)

    async def _link(
        self,
        case: dict[str, Any],
        feedback: Feedback,
        classification: Classification,
        why: str,
        now: datetime,
    ) -> list[Event[Any]] | None:
        key = link_key(feedback.feedback_id)
        for _ in range(CHANGE_ATTEMPTS):
            if case["status"] == "closed":
                return None
            current = CaseRouted.model_validate(case["routed"]).routing
            case_urgency = Urgency(case["urgency"])
            link = link_routing(current, case_urgency, classification, why)
            rule = (
                "link:related-case"
                if feedback.related_case_id == case["_id"]
                else "link:same-customer-and-cause"
            )
            routed = CaseRouted(
                case_id=case["_id"],
                feedback=feedback,
                classification=classification,
                routing=link.routing.model_copy(update={"rule": rule, "reason": link.reason}),
                linked_to=case["_id"],
            )
            event = new_event(routed, source=SOURCE, cause=f"{case['_id']}:{key}", time=now)
            fields: dict[str, Any] = {}
            if more_urgent(classification.urgency, case_urgency):
                fields["urgency"] = classification.urgency.value
            if link.raised:
                priority = link.routing.priority
                raised = current.model_copy(
                    update={
                        "priority": priority,
                        "reason": f"{current.reason}; raised to {priority.value} by linked "
                        f"feedback {feedback.feedback_id}",
                    }
                )
                fields |= {
                    "priority": priority.value,
                    "priority_rank": priority_rank(priority),
                    "routed.routing": raised.model_dump(mode="json"),
                }
            changed = await self.store.change_case(
                case["_id"],
                case["version"],
                fields,
                entry=history_entry(key, event),
                add={"linked_feedback": feedback.feedback_id},
                only_if={"status": {"$ne": "closed"}},
            )
            if changed:
                CASES_LINKED.inc()
                log.info(
                    "feedback linked to an open case",
                    extra={"case_id": case["_id"], "priority": link.routing.priority.value},
                )
                return [event]
            fresh = await self.store.get_case(case["_id"])
            if fresh is None:
                return None
            entry = find_history(fresh, key)
            if entry is not None:
                return [event_from_history(entry)]
            case = fresh
        raise CaseKeptChanging(f"case {case['_id']} kept changing while linking feedback")

    async def _open_case(
        self,
        case_id: str,
        feedback: Feedback,
        classification: Classification,
        now: datetime,
    ) -> list[Event[Any]]:
        plan = self._plan_open(
            case_id,
            FeedbackClassified(feedback=feedback, classification=classification),
            at_risk=await self._at_risk(feedback.customer_key),
        )
        agent = await self._take(case_id, plan.eligibility.agent_ids)
        event = self._opened_event(plan, agent, now)
        stored, created = await self.store.insert_case(new_case(event.data, event, now))
        if not created:
            return await self._opened_elsewhere(stored, agent)
        await self._case_opened(event, agent, now, at_risk=plan.at_risk)
        # An earlier attempt, or a copy racing on the same feedback, may hold a place
        # for this case: free it, and serve the queue it may have kept a case from.
        routing = event.data.routing
        freed = await self._released(await self.store.release_case(case_id, keep=routing.agent))
        for team in sorted(freed):
            await self.drain(team)
        return [event]

    def _plan_open(self, case_id: str, data: FeedbackClassified, *, at_risk: bool) -> OpenPlan:
        feedback, classification = data.feedback, data.classification
        decision = decide(self.policy, feedback, classification, at_risk=at_risk)
        eligibility = eligible_agents(
            self.policy, decision.team, feedback.language, classification.root_cause
        )
        return OpenPlan(case_id, data, decision, eligibility, at_risk)

    async def _at_risk(self, customer_key: str) -> bool:
        """The customer's standing, for a new case; not read when no rule looks at it."""
        if not self.policy.uses_at_risk:
            return False
        return await self.store.customer_at_risk(customer_key)

    async def _at_risk_among(self, customer_keys: Sequence[str]) -> set[str]:
        if not self.policy.uses_at_risk or not customer_keys:
            return set()
        return await self.store.customers_at_risk(customer_keys)

    def _opened_event(
        self, plan: OpenPlan, agent: dict[str, Any] | None, now: datetime
    ) -> Event[CaseRouted]:
        decision = plan.decision
        first, last = deadlines(self.policy, decision.team, decision.priority, now)
        routing = Routing(
            priority=decision.priority,
            team=decision.team,
            agent=None if agent is None else agent["_id"],
            rule=decision.rule,
            reason="; ".join(
                [
                    decision.reason,
                    self._agent_reason(decision.team, agent, plan.eligibility),
                    deadlines_reason(self.policy, decision.team, first, last),
                ]
            ),
            routed_at=now,
            first_response_due=first,
            resolution_due=last,
            queued=agent is None,
        )
        routed = CaseRouted(
            case_id=plan.case_id,
            feedback=plan.feedback,
            classification=plan.classification,
            routing=routing,
        )
        return new_event(routed, source=SOURCE, cause=f"{plan.case_id}:{ROUTE_KEY}", time=now)

    async def _opened_elsewhere(
        self, stored: dict[str, Any], agent: dict[str, Any] | None
    ) -> list[Event[Any]]:
        """Another router copy opened this case first; give back what this one took, and
        serve the team's queue: a case may have joined it while the place was held."""
        if agent is not None and stored.get("agent") != agent["_id"]:
            given_back = await self.store.release_from(agent["_id"], stored["_id"])
            if given_back is not None:
                observe_agent(given_back)
                await self.drain(str(given_back["team"]))
        entry = find_history(stored, ROUTE_KEY)
        if entry is None:
            raise CaseKeptChanging(f"case {stored['_id']} exists without its routing")
        return [event_from_history(entry)]

    async def _case_opened(
        self,
        event: Event[CaseRouted],
        agent: dict[str, Any] | None,
        now: datetime,
        *,
        at_risk: bool,
    ) -> None:
        routing = event.data.routing
        CASES_ROUTED.labels(routing.priority.value, routing.team).inc()
        if at_risk:
            AT_RISK_CASES.labels(routing.rule).inc()
        await self._observe_assignment(routing, agent, now)
        log.info(
            "case routed",
            extra={
                "case_id": event.data.case_id,
                "feedback_id": event.data.feedback.feedback_id,
                "priority": routing.priority.value,
                "team": routing.team,
                "agent": routing.agent,
                "rule": routing.rule,
                "at_risk": at_risk,
            },
        )

    # --- feedback.classified, a batch at once ------------------------------------------

    async def route_feedbacks(self, batch: Sequence[FeedbackClassified]) -> list[Event[Any]]:
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
                events += await self._route_run(run)
                run, customers = [], set()
            if feedback.related_case_id:
                events += await self.route_feedback(data)
                continue
            run.append(data)
            customers.add(feedback.customer_key)
        events += await self._route_run(run)
        return events

    async def _route_run(self, run: Sequence[FeedbackClassified]) -> list[Event[Any]]:
        """Feedback of different customers, none naming a related case."""
        if not run:
            return []
        now = self.clock()
        events: list[Event[Any]] = []
        one_by_one: list[FeedbackClassified] = []
        to_plan: list[tuple[str, FeedbackClassified]] = []
        known = await self.store.cases_of_customers([d.feedback.customer_key for d in run])
        for data in run:
            feedback, classification = data.feedback, data.classification
            case_id = case_id_for(feedback.feedback_id)
            if any(
                case["_id"] == case_id or feedback.feedback_id in case.get("linked_feedback", [])
                for case in known
            ):
                one_by_one.append(data)  # handled before: say it again from its history
                continue
            cutoff = link_cutoff(self.policy, feedback)
            target = customer_case(known, feedback, classification, case_id, cutoff)
            if target is None:
                to_plan.append((case_id, data))
                continue
            why = same_cause_reason(target, classification, self.policy)
            with log_context(feedback_id=feedback.feedback_id, customer_key=feedback.customer_key):
                linked = await self._link(target, feedback, classification, why, now)
            if linked is None:
                one_by_one.append(data)
            else:
                events += linked
        # One read of the standing for every new case of the run; links need none.
        at_risk = await self._at_risk_among([data.feedback.customer_key for _, data in to_plan])
        to_open = [
            self._plan_open(case_id, data, at_risk=data.feedback.customer_key in at_risk)
            for case_id, data in to_plan
        ]
        if to_open:
            opened, left = await self._open_cases(to_open, now)
            events += opened
            one_by_one += [plan.data for plan in left]
        order = {id(data): i for i, data in enumerate(run)}
        for data in sorted(one_by_one, key=lambda d: order[id(d)]):
            events += await self.route_feedback(data)
        return events

    def _agents_snapshot(self, teams: frozenset[str]) -> dict[str, dict[str, Any]] | None:
        """The agents of ``teams`` as this router last saw them, if that may be used:
        recent enough, and no agent changed by this router in another way since."""
        fresh = time.monotonic() - self._agents_at < AGENT_SNAPSHOT_S
        if not fresh or self._agents_writes != self.store.agent_writes:
            return None
        return self._agents if teams <= self._agents_teams else None

    async def _read_agents(
        self, teams: frozenset[str], case_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        docs = await self.store.agents_of_teams(sorted(teams), case_ids)
        self._agents = {str(doc["_id"]): doc for doc in docs}
        self._agents_teams = teams
        self._agents_writes = self.store.agent_writes
        self._agents_at = time.monotonic()
        return self._agents

    @staticmethod
    def _share_out(plans: Sequence[OpenPlan], agents: dict[str, dict[str, Any]]) -> Shares:
        case_ids = [plan.case_id for plan in plans]
        return share_out(
            [(plan.case_id, plan.eligibility.agent_ids) for plan in plans],
            {
                agent_id: AgentState(
                    id=agent_id,
                    load=int(agent["load"]),
                    capacity=int(agent["capacity"]),
                    available=bool(agent.get("available")) and not agent.get("retired"),
                    holds=frozenset(agent.get("open_cases", [])).intersection(case_ids),
                )
                for agent_id, agent in agents.items()
            },
        )

    async def _open_cases(
        self, plans: Sequence[OpenPlan], now: datetime
    ) -> tuple[list[Event[Any]], list[OpenPlan]]:
        """Open the cases of ``plans``; returns their events and the plans left for the
        one-by-one path."""
        case_ids = [plan.case_id for plan in plans]
        teams = frozenset(plan.decision.team for plan in plans)
        agents = self._agents_snapshot(teams) or await self._read_agents(teams, case_ids)
        shares = self._share_out(plans, agents)
        chosen, takes, unsettled = shares.agent_of, shares.takes, set(shares.unsettled)
        before = {a: int(agents[a]["load"]) for a in takes}
        reads = {a: (before[a], int(agents[a]["capacity"]), c) for a, c in takes.items()}
        if await self.store.take_many(reads):
            for agent_id, cases in takes.items():
                taken = agents[agent_id]
                taken["load"] = before[agent_id] + len(cases)
                taken["open_cases"] = [*taken.get("open_cases", []), *cases]
            self._agents_writes = self.store.agent_writes
        else:
            # Another router changed some of these agents meanwhile: keep the takes that
            # went through, route the others one by one.
            self._agents_writes = -1
            holding = await self.store.agents_holding(case_ids)
            for agent_id, cases in takes.items():
                for case_id in set(cases) - holding.get(agent_id, set()):
                    chosen.pop(case_id)
                    unsettled.add(case_id)
        # Each case names its agent at the load right after taking it.
        running = dict(before)
        opened: list[tuple[Event[CaseRouted], dict[str, Any] | None, bool]] = []
        for plan in plans:
            if plan.case_id not in chosen:
                continue
            taker = chosen[plan.case_id]
            agent: dict[str, Any] | None = None
            if taker is not None and plan.case_id in takes.get(taker, []):
                running[taker] += 1
                agent = {**agents[taker], "load": running[taker]}
            elif taker is not None:
                agent = agents[taker]
            opened.append((self._opened_event(plan, agent, now), agent, plan.at_risk))
        created = await self.store.insert_cases([new_case(e.data, e, now) for e, _, _ in opened])
        events: list[Event[Any]] = []
        for event, agent, at_risk in opened:
            case_id = event.data.case_id
            if case_id in created:
                await self._case_opened(event, agent, now, at_risk=at_risk)
                events.append(event)
                continue
            stored = await self.store.get_case(case_id)
            if stored is None:
                raise CaseKeptChanging(f"case {case_id} could not be stored")
            events += await self._opened_elsewhere(stored, agent)
        return events, [plan for plan in plans if plan.case_id in unsettled]

    def _agent_reason(
        self, team: str, agent: dict[str, Any] | None, eligibility: Eligibility
    ) -> str:
        if agent is None:
            return queued_reason(team, eligibility)
        return assignment_reason(
            team, agent["_id"], int(agent["load"]), int(agent["capacity"]), eligibility
        )

    async def _observe_assignment(
        self, routing: Routing, agent: dict[str, Any] | None, decided_at: datetime
    ) -> None:
        if agent is None:
            CASES_QUEUED.labels(routing.team).inc()
            # The exact depth is read back on every drain and sweep; counting the queue
            # for each case that joins it would cost more than the case itself.
            TEAM_QUEUE_DEPTH.labels(routing.team).inc()
            return
        observe_agent(agent)
        elapsed = (self.clock() - decided_at).total_seconds()
        ASSIGNMENT_LATENCY.observe(max(0.0, elapsed))

    # --- re-routes -------------------------------------------------------------------

    async def reroute(self, case_id: str, cause_for: RerouteFor) -> list[Event[Any]]:
        """Route the case again: one priority higher, to the escalation team if any,
        to a new agent (or the queue), with new deadlines. Once per cause key."""
        with log_context(case_id=case_id):
            for _ in range(CHANGE_ATTEMPTS):
                case = await self.store.get_case(case_id)
                if case is None:
                    log.warning("cannot route again a case this router never routed")
                    return []
                cause = cause_for(case)
                if cause is None:
                    log.info("stale breach of a deadline replaced since: ignored")
                    return []
                entry = find_history(case, cause.key)
                if entry is not None:
                    return [event_from_history(entry)]
                if not self._reroutable(case, cause):
                    log.info(
                        "case not routed again",
                        extra={"status": case["status"], "why": cause.why},
                    )
                    return []
                events = await self._try_reroute(case, cause)
                if events is not None:
                    return events
            raise CaseKeptChanging(f"case {case_id} kept changing while routing it again")

    @staticmethod
    def _reroutable(case: dict[str, Any], cause: Reroute) -> bool:
        if cause.generation is not None and cause.generation != case["generation"]:
            return False
        if case["status"] == "closed":
            return False
        return case["status"] == "open" or cause.reopens

    async def _try_reroute(self, case: dict[str, Any], cause: Reroute) -> list[Event[Any]] | None:
        case_id = case["_id"]
        now = self.clock()
        routed = CaseRouted.model_validate(case["routed"])
        current = routed.routing
        decision = decide_reroute(self.policy, current, cause.why, cause.detail)
        previous = case.get("agent")
        eligibility = eligible_agents(
            self.policy,
            decision.team,
            routed.feedback.language,
            routed.classification.root_cause,
            exclude=(previous,) if previous else (),
            preferred=escalation_lead(self.policy, current.team),
        )
        agent, taken = await self._take_for_reroute(case_id, decision.team, previous, eligibility)
        first, last = deadlines(self.policy, decision.team, decision.priority, now)
        if agent is not None and not taken:
            agent_reason = (
                f"agent {agent['_id']} keeps it: no other {decision.team} agent "
                f"{eligibility.note} is free"
            )
        else:
            agent_reason = self._agent_reason(decision.team, agent, eligibility)
        routing = Routing(
            priority=decision.priority,
            team=decision.team,
            agent=None if agent is None else agent["_id"],
            rule=decision.rule,
            reason="; ".join(
                [
                    decision.reason,
                    agent_reason,
                    deadlines_reason(self.policy, decision.team, first, last),
                ]
            ),
            routed_at=now,
            first_response_due=first,
            resolution_due=last,
            reroute_count=current.reroute_count + 1,
            reroute_reason=cause.why,
            queued=agent is None,
        )
        new_routed = routed.model_copy(update={"routing": routing, "linked_to": None})
        event = new_event(new_routed, source=SOURCE, cause=f"{case_id}:{cause.key}", time=now)
        changed = await self.store.change_case(
            case_id,
            case["version"],
            {
                "status": "open",
                "team": routing.team,
                "agent": routing.agent,
                "priority": routing.priority.value,
                "priority_rank": priority_rank(routing.priority),
                "waiting_in": routing.team if routing.queued else None,
                "queued_at": self._queued_since(case, routing, now),
                "generation": routing.reroute_count,
                "routed": new_routed.model_dump(mode="json"),
            },
            entry=history_entry(cause.key, event),
        )
        if not changed:
            if agent is not None and taken:
                await self._give_back(agent["_id"], case_id)
            return None
        REROUTES.labels(cause.why).inc()
        CASES_ROUTED.labels(routing.priority.value, routing.team).inc()
        if taken or agent is None:
            await self._observe_assignment(routing, agent, now)
        freed = await self._released(await self.store.release_case(case_id, keep=routing.agent))
        if case.get("waiting_in") and case["waiting_in"] != routing.team:
            await self._observe_depth(case["team"])
        log.info(
            "case routed again",
            extra={
                "why": cause.why,
                "priority": routing.priority.value,
                "team": routing.team,
                "agent": routing.agent,
                "reroute_count": routing.reroute_count,
            },
        )
        for team in freed:
            await self.drain(team)
        return [event]

    async def _take(self, case_id: str, agent_ids: Sequence[str]) -> dict[str, Any] | None:
        """The least loaded of ``agent_ids`` able to take the case takes it; None when
        none of them can."""
        for _ in range(TAKE_ATTEMPTS):
            loads = await self.store.candidate_loads(case_id, agent_ids)
            if not loads:
                return None
            chosen = least_loaded(loads, case_id)
            taken = await self.store.take_at_load(case_id, chosen, loads[chosen])
            if taken is not None:
                return taken
        raise CaseKeptChanging(f"agents kept changing while assigning case {case_id}")

    @staticmethod
    def _queued_since(case: dict[str, Any], routing: Routing, now: datetime) -> datetime | None:
        """A case that stays queued in the same team keeps its place among its priority."""
        if not routing.queued:
            return None
        if case.get("waiting_in") == routing.team and case.get("queued_at"):
            queued_at: datetime = case["queued_at"]
            return queued_at
        return now

    async def _take_for_reroute(
        self, case_id: str, team: str, previous: str | None, eligibility: Eligibility
    ) -> tuple[dict[str, Any] | None, bool]:
        """A new agent: the escalation lead first, then the least loaded eligible agent;
        when none is free, the previous agent if in the team (True: newly taken)."""
        for lead in eligibility.preferred:
            agent = await self._take(case_id, [lead])
            if agent is not None:
                return agent, True
        agent = await self._take(case_id, eligibility.agent_ids)
        if agent is not None:
            return agent, True
        if previous is None or self.policy.team(team).agent(previous) is None:
            return None, False
        if await self.store.holds(previous, case_id):
            return await self.store.get_agent(previous), False
        agent = await self._take(case_id, [previous])
        return agent, agent is not None

    async def _give_back(self, agent_id: str, case_id: str) -> None:
        """Undo a take that lost a race, unless the winner gave the case to the same agent."""
        fresh = await self.store.get_case(case_id)
        if fresh is None or fresh.get("agent") != agent_id or fresh.get("status") != "open":
            released = await self.store.release_from(agent_id, case_id)
            if released is not None:
                observe_agent(released)

    async def _released(self, agents: list[dict[str, Any]]) -> set[str]:
        for agent in agents:
            AGENT_RELEASES.inc()
            observe_agent(agent)
        return {str(agent["team"]) for agent in agents}

    # --- customer.signals -------------------------------------------------------------

    async def apply_signal(self, event_id: str, signal: CustomerSignal) -> bool:
        """Keep the customer's standing for the routing of their next new case: once per
        crossing, the latest crossing winning. False for a stale signal."""
        standing = standing_from_signal(signal, event_id)
        applied = await self.store.apply_standing(standing)
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

    # --- resolution and closure ---------------------------------------------------

    async def settle(self, case_id: str, event_id: str, status: str) -> None:
        """case.resolved / case.closed: the agent's capacity is free again (once), and the
        team queue is served. A closed case also stops absorbing new feedback."""
        with log_context(case_id=case_id):
            case = await self.store.get_case(case_id)
            marked = await self.store.mark_lifecycle(case_id, event_id, status)
            if case is not None and not marked and case["status"] not in ("resolved", "closed"):
                return  # a redelivered event for a case that was routed again since
            teams = await self._released(await self.store.release_case(case_id))
            if case is not None and case.get("waiting_in"):
                teams.add(case["waiting_in"])  # it left the queue
            for team in sorted(teams):
                await self.drain(team)

    # --- team queues ----------------------------------------------------------------

    async def drain(self, team_id: str) -> list[Event[Any]]:
        """Give queued cases of the team to agents with free places, highest priority
        then oldest first, and publish the assignments. A case no free agent can serve
        (skills) keeps its place and does not hold up the cases behind it."""
        if not self.policy.has_team(team_id):
            return []
        assigned: list[tuple[str, Event[Any]]] = []
        places = await self.store.free_places(team_id)
        skipped = 0
        while places:
            page_size = max(10, 2 * sum(places.values()))
            page = await self.store.queued_cases(team_id, page_size, skip=skipped)
            for case in page:
                if not places:
                    break
                event = await self._assign_queued(case, places)
                if event is None:
                    skipped += 1
                else:
                    assigned.append((f"assign:{case['generation']}", event))
            if len(page) < page_size:
                break
        await self._observe_depth(team_id)
        await self._publish_outbox(assigned)
        return [event for _, event in assigned]

    async def _assign_queued(
        self, case: dict[str, Any], places: dict[str, int]
    ) -> Event[Any] | None:
        case_id = case["_id"]
        routed = CaseRouted.model_validate(case["routed"])
        routing = routed.routing
        eligibility = eligible_agents(
            self.policy, case["team"], routed.feedback.language, routed.classification.root_cause
        )
        candidates = [a for a in eligibility.agent_ids if a in places]
        if not candidates:
            return None
        agent = await self._take(case_id, candidates)
        if agent is None:
            for candidate in candidates:
                places.pop(candidate, None)
            return None
        agent_id = str(agent["_id"])
        places[agent_id] = int(agent["capacity"]) - int(agent["load"])
        if places[agent_id] <= 0:
            places.pop(agent_id)
        now = self.clock()
        key = f"assign:{case['generation']}"
        reason = from_queue_reason(
            routing, self._agent_reason(case["team"], agent, eligibility), now
        )
        assigned = routed.model_copy(
            update={
                "routing": routing.model_copy(
                    update={"agent": agent_id, "queued": False, "reason": reason}
                )
            }
        )
        event = new_event(assigned, source=SOURCE, cause=f"{case_id}:{key}", time=now)
        changed = await self.store.change_case(
            case_id,
            case["version"],
            {
                "agent": agent_id,
                "waiting_in": None,
                "queued_at": None,
                "routed": assigned.model_dump(mode="json"),
            },
            entry=history_entry(key, event),
            to_outbox=now,
            only_if={"waiting_in": case["team"], "status": "open"},
        )
        if not changed:
            await self._give_back(agent_id, case_id)
            return None
        await self._released(await self.store.release_case(case_id, keep=agent_id))
        observe_agent(agent)
        ASSIGNMENT_LATENCY.observe(max(0.0, (now - routing.routed_at).total_seconds()))
        log.info(
            "queued case assigned",
            extra={"case_id": case_id, "team": case["team"], "agent": agent_id},
        )
        return event

    async def _publish_outbox(self, entries: Sequence[tuple[str, Event[Any]]]) -> None:
        if not entries:
            return
        try:
            await self.publish([event for _, event in entries])
        except BrokerUnavailable as exc:
            log.warning("assignments left in the outbox for the relay: %s", exc)
            return
        for key, event in entries:
            await self.store.settle_outbox(event.data.case_id, [key])

    async def _observe_depth(self, team_id: str) -> None:
        TEAM_QUEUE_DEPTH.labels(team_id).set(await self.store.queue_depth(team_id))

    # --- runtime changes and housekeeping ------------------------------------------

    async def set_availability(self, agent_id: str, available: bool) -> dict[str, Any] | None:
        """An agent going online serves the team queue at once."""
        agent = await self.store.set_availability(agent_id, available)
        if agent is None:
            return None
        log.info("agent availability changed", extra={"agent": agent_id, "available": available})
        if available:
            await self.drain(str(agent["team"]))
            agent = await self.store.get_agent(agent_id)
        return agent

    async def relay_outbox(self, older_than: datetime) -> int:
        """Publish assignments whose publication did not complete (broker down, crash)."""
        published = 0
        for case in await self.store.stale_outboxes(older_than):
            keys = [o["key"] for o in case.get("outbox", []) if o["at"] < older_than]
            entries = [(k, find_history(case, k)) for k in keys]
            ready = [(k, event_from_history(e)) for k, e in entries if e is not None]
            await self._publish_outbox(ready)
            published += len(ready)
        return published

    async def sweep(self, now: datetime, outbox_after: timedelta) -> None:
        """Serve every queue, publish what the outbox still holds, refresh the gauges.
        The safety net for an assignment a missed trigger would otherwise delay."""
        depths = await self.store.queue_depths()
        for team in self.policy.teams:
            TEAM_QUEUE_DEPTH.labels(team.id).set(depths.get(team.id, 0))
            if depths.get(team.id):
                await self.drain(team.id)
        await self.relay_outbox(now - outbox_after)
        for agent in await self.store.list_agents():
            observe_agent(agent)


def new_case(routed: CaseRouted, event: Event[CaseRouted], now: datetime) -> dict[str, Any]:
    routing = routed.routing
    return {
        "_id": routed.case_id,
        "feedback_id": routed.feedback.feedback_id,
        "customer_key": routed.feedback.customer_key,
        "root_cause": routed.classification.root_cause.value,
        "urgency": routed.classification.urgency.value,
        "status": "open",
        "team": routing.team,
        "agent": routing.agent,
        "priority": routing.priority.value,
        "priority_rank": priority_rank(routing.priority),
        "waiting_in": routing.team if routing.queued else None,
        "queued_at": now if routing.queued else None,
        "generation": 0,
        "opened_at": now,
        "version": 0,
        "routed": routed.model_dump(mode="json"),
        "history": [history_entry(ROUTE_KEY, event)],
        "outbox": [],
        "seen": [],
        "linked_feedback": [],
    }
