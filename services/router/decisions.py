"""Every change to a router case, as a pure function ``decide_<what>(case, ..., now,
policy) -> Decision``.

A decision is made on one revision of the case, with no I/O: the case after the change
and the ``case.routed`` events it emits (kept in the case's history under the key of
their cause), or nothing to write, with the reason and the events a redelivered cause
emitted before. The store applies a decision against the revision it was made on
(``RouterStore.apply``, shared/outbox.py); the decisions are made of the rules in
services/router/domain.py.

Choosing an agent needs the agents' live loads, so opening and re-routing are planned
first (``plan_open``, ``plan_reroute``: the policy's part), an agent takes the case
(queue.py), and the decision is then made with that agent.

Keys of the history: ``route``, ``link:<feedback>``, ``reopen:<round>``,
``escalation:<event>``, ``breach:<generation>:<sla>``, ``assign:<generation>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.router.domain import (
    ROUTE_KEY,
    SOURCE,
    Agent,
    Case,
    Eligibility,
    Placement,
    Recorded,
    Reroute,
    RerouteFor,
    agent_reason,
    build_routing,
    case_id_for,
    eligible_agents,
    escalation_lead,
    from_queue_reason,
    link_key,
    link_routing,
    place,
    place_reroute,
)
from services.router.policy import RoutingPolicy
from shared.contracts import CaseRouted, FeedbackClassified, Routing, urgency_rank
from shared.envelope import Event, new_event


@dataclass(frozen=True)
class Decision:
    """What one change of a case decided."""

    case: Case | None
    """The case after the change, at the revision it was decided on (0: a case to open);
    None: nothing to write."""
    recorded: tuple[Recorded, ...] = ()
    """The events the change emits, appended to the case's history."""
    replay: tuple[Event[CaseRouted], ...] = ()
    """Nothing to write: what a redelivered cause emitted before, said again."""
    reason: str = ""
    through_outbox: bool = False
    """The events are not caused by the event being handled (an assignment from the
    queue): they are queued with the change and published by whoever made it, or by
    the relay."""

    @classmethod
    def nothing(cls, reason: str, *replay: Event[CaseRouted]) -> Decision:
        return cls(case=None, replay=replay, reason=reason)

    @property
    def changes(self) -> bool:
        return self.case is not None

    @property
    def events(self) -> list[Event[CaseRouted]]:
        if self.case is None:
            return list(self.replay)
        return [entry.event for entry in self.recorded]


def change(before: Case, key: str, event: Event[CaseRouted], **fields: object) -> Decision:
    """``before`` with ``fields`` changed and ``event`` recorded under ``key``."""
    unknown = set(fields) - set(Case.model_fields)
    if unknown:  # model_copy would take them silently
        raise TypeError(f"a case has no {', '.join(sorted(unknown))}")
    entry = Recorded.of(key, event)
    history = None if before.history is None else (*before.history, entry)
    after = before.model_copy(update={**fields, "history": history})
    return Decision(case=after, recorded=(entry,))


# --- opening and linking ----------------------------------------------------------------


def handled_before(case: Case | None, feedback_id: str) -> Decision | None:
    """A feedback that opened a case or was linked to one already: its event again."""
    recorded = None if case is None else case.replay_for(feedback_id)
    if recorded is None:
        return None
    return Decision.nothing("feedback handled before", recorded.event)


def decide_link(case: Case, data: FeedbackClassified, why: str, now: datetime) -> Decision:
    """Link the feedback to the case: the case takes the feedback's urgency if higher,
    and one priority more then. Nothing (the caller opens a case) once it is closed."""
    feedback, classification = data.feedback, data.classification
    key = link_key(feedback.feedback_id)
    recorded = None if case.history is None else case.recorded(key)
    if recorded is not None:
        return Decision.nothing("feedback linked before", recorded.event)
    if case.status == "closed":
        return Decision.nothing(f"case {case.id} is closed")
    current = case.routing
    link = link_routing(current, case.urgency, classification, why)
    related = feedback.related_case_id == case.id
    rule = "link:related-case" if related else "link:same-customer-and-cause"
    routed = CaseRouted(
        case_id=case.id,
        feedback=feedback,
        classification=classification,
        routing=link.routing.model_copy(update={"rule": rule, "reason": link.reason}),
        linked_to=case.id,
    )
    event = new_event(routed, source=SOURCE, cause=f"{case.id}:{key}", time=now)
    fields: dict[str, object] = {
        "linked_feedback": tuple(dict.fromkeys((*case.linked_feedback, feedback.feedback_id)))
    }
    if urgency_rank(classification.urgency) > urgency_rank(case.urgency):
        fields["urgency"] = classification.urgency
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
            "priority": priority,
            "routed": case.routed.model_copy(update={"routing": raised}),
        }
    return change(case, key, event, **fields)


@dataclass(frozen=True)
class Opening:
    """A case about to be opened: what the policy decided, before an agent is chosen."""

    case_id: str
    data: FeedbackClassified
    placement: Placement
    eligibility: Eligibility
    at_risk: bool
    """Whether the customer was at risk when the case was planned."""


def plan_open(policy: RoutingPolicy, data: FeedbackClassified, *, at_risk: bool) -> Opening:
    feedback, classification = data.feedback, data.classification
    placement = place(policy, feedback, classification, at_risk=at_risk)
    eligibility = eligible_agents(
        policy, placement.team, feedback.language, classification.root_cause
    )
    return Opening(case_id_for(feedback.feedback_id), data, placement, eligibility, at_risk)


def decide_open(
    opening: Opening, agent: Agent | None, now: datetime, policy: RoutingPolicy
) -> Decision:
    """The new case, owned by ``agent`` (who took it, at its load after the take) or
    waiting in its team's queue."""
    placement, data = opening.placement, opening.data
    reason = agent_reason(placement.team, agent, opening.eligibility)
    routing = build_routing(policy, placement, None if agent is None else agent.id, reason, now)
    routed = CaseRouted(
        case_id=opening.case_id,
        feedback=data.feedback,
        classification=data.classification,
        routing=routing,
    )
    event = new_event(routed, source=SOURCE, cause=f"{opening.case_id}:{ROUTE_KEY}", time=now)
    entry = Recorded.of(ROUTE_KEY, event)
    case = Case(
        id=opening.case_id,
        feedback_id=data.feedback.feedback_id,
        customer_key=data.feedback.customer_key,
        root_cause=data.classification.root_cause,
        urgency=data.classification.urgency,
        status="open",
        team=routing.team,
        agent=routing.agent,
        priority=routing.priority,
        waiting_in=routing.team if routing.queued else None,
        queued_at=now if routing.queued else None,
        generation=0,
        opened_at=now,
        routed=routed,
        seen=(),
        history=(entry,),
    )
    return Decision(case=case, recorded=(entry,))


# --- re-routes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rerouting:
    """A case about to be routed again: what the policy decided, before an agent is
    chosen."""

    cause: Reroute
    placement: Placement
    eligibility: Eligibility
    previous: str | None
    """The agent holding the case now, who keeps it when nobody else is free (if in
    the new team)."""


def plan_reroute(case: Case, cause_for: RerouteFor, policy: RoutingPolicy) -> Rerouting | Decision:
    """The re-route a cause asks for, or nothing: a stale breach, a redelivered cause (its
    event again), a closed case, or an open-only cause for a case not open."""
    cause = cause_for(case)
    if cause is None:
        return Decision.nothing("stale breach of a deadline replaced since: ignored")
    recorded = case.recorded(cause.key)
    if recorded is not None:
        return Decision.nothing("routed again before", recorded.event)
    if cause.generation is not None and cause.generation != case.generation:
        return Decision.nothing(f"case not routed again: {cause.why} of another routing")
    if case.status == "closed" or (case.status != "open" and not cause.reopens):
        return Decision.nothing(f"case not routed again: it is {case.status}")
    current = case.routing
    placement = place_reroute(policy, current, cause.why, cause.detail)
    eligibility = eligible_agents(
        policy,
        placement.team,
        case.routed.feedback.language,
        case.routed.classification.root_cause,
        exclude=(case.agent,) if case.agent else (),
        preferred=escalation_lead(policy, current.team),
    )
    return Rerouting(cause, placement, eligibility, case.agent)


def decide_reroute(
    case: Case,
    plan: Rerouting,
    agent: Agent | None,
    now: datetime,
    policy: RoutingPolicy,
    *,
    kept: bool = False,
) -> Decision:
    """The case routed again to ``agent`` (None: the team queue). ``kept``: the agent
    already held the case and keeps it, nobody else being free."""
    placement, cause = plan.placement, plan.cause
    if agent is not None and kept:
        reason = (
            f"agent {agent.id} keeps it: no other {placement.team} agent "
            f"{plan.eligibility.note} is free"
        )
    else:
        reason = agent_reason(placement.team, agent, plan.eligibility)
    routing = build_routing(
        policy,
        placement,
        None if agent is None else agent.id,
        reason,
        now,
        reroute_count=case.routing.reroute_count + 1,
        reroute_reason=cause.why,
    )
    routed = case.routed.model_copy(update={"routing": routing, "linked_to": None})
    event = new_event(routed, source=SOURCE, cause=f"{case.id}:{cause.key}", time=now)
    return change(
        case,
        cause.key,
        event,
        status="open",
        team=routing.team,
        agent=routing.agent,
        priority=routing.priority,
        waiting_in=routing.team if routing.queued else None,
        queued_at=queued_since(case, routing, now),
        generation=routing.reroute_count,
        routed=routed,
    )


def queued_since(case: Case, routing: Routing, now: datetime) -> datetime | None:
    """A case that stays queued in the same team keeps its place among its priority."""
    if not routing.queued:
        return None
    if case.waiting_in == routing.team and case.queued_at is not None:
        return case.queued_at
    return now


# --- the team queue and the end of a case ---------------------------------------------


def assign_key(generation: int) -> str:
    return f"assign:{generation}"


def decide_assignment(
    case: Case, agent: Agent, eligibility: Eligibility, now: datetime
) -> Decision:
    """A queued case given to ``agent`` (who took it, at its load after the take); the
    deadlines stay. The event goes through the outbox: nothing being handled caused it."""
    if case.status != "open" or case.waiting_in != case.team:
        return Decision.nothing("the case no longer waits in the queue")
    routing = case.routing
    reason = from_queue_reason(routing, agent_reason(case.team, agent, eligibility), now)
    assigned = case.routed.model_copy(
        update={
            "routing": routing.model_copy(
                update={"agent": agent.id, "queued": False, "reason": reason}
            )
        }
    )
    key = assign_key(case.generation)
    event = new_event(assigned, source=SOURCE, cause=f"{case.id}:{key}", time=now)
    decision = change(
        case, key, event, agent=agent.id, waiting_in=None, queued_at=None, routed=assigned
    )
    return Decision(case=decision.case, recorded=decision.recorded, through_outbox=True)


def decide_settle(case: Case, event_id: str, status: Literal["resolved", "closed"]) -> Decision:
    """case.resolved / case.closed: the case leaves any queue; once per event."""
    if case.seen is None:
        raise ValueError(f"case {case.id} was read without the events it saw")
    if event_id in case.seen:
        return Decision.nothing("lifecycle event applied before")
    after = case.model_copy(
        update={"status": status, "waiting_in": None, "seen": (*case.seen, event_id)}
    )
    return Decision(case=after)
