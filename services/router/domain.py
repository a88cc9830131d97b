"""The router's case as typed models, and the rules about priority, team, deadlines,
eligible agents, links and re-routes that the decisions (services/router/decisions.py)
are made of.

Pure: no I/O, no clock reads (``now`` is passed in). A case is a typed model
(:class:`Case`); only the store knows its documents. Every ``case.routed`` the router
emits for a case is kept in the case's history (:class:`Recorded`) under the key of its
cause, so a redelivered cause emits it again, with the same id.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.router.policy import RoutingPolicy, Rule
from shared.business_time import add_business_time
from shared.contracts import (
    CaseRouted,
    Classification,
    CustomerAtRisk,
    CustomerSignal,
    ExpectedOutcome,
    Feedback,
    FeedbackClassified,
    Priority,
    RootCause,
    Routing,
    ScoreReason,
    SlaBreached,
    Urgency,
    raise_priority,
    urgency_rank,
)
from shared.envelope import Event, derive_id

SOURCE = "/closeloop/router"
ROUTE_KEY = "route"

RerouteReason = Literal["reopened", "escalated", "sla_breached"]
REROUTE_REASONS: tuple[RerouteReason, ...] = ("reopened", "escalated", "sla_breached")
CaseStatus = Literal["open", "resolved", "closed"]


def case_id_for(feedback_id: str) -> str:
    """A new case's id: every router copy and every redelivery derives the same one."""
    return derive_id("case", feedback_id)


def link_key(feedback_id: str) -> str:
    return f"link:{feedback_id}"


# --- the state --------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Agent(_Model):
    """An agent as stored: the policy's skills and capacity, and the live state."""

    id: str
    team: str
    languages: tuple[str, ...] = ()
    root_causes: tuple[str, ...] = ()
    capacity: int
    load: int
    available: bool
    retired: bool = False
    open_cases: tuple[str, ...] = ()


class Recorded(_Model):
    """One ``case.routed`` the router emitted for a case, under the key of its cause: a
    redelivered cause emits it again, with the same id."""

    key: str
    event_id: str
    time: datetime
    routed: CaseRouted

    @classmethod
    def of(cls, key: str, event: Event[CaseRouted]) -> Recorded:
        return cls(key=key, event_id=event.id, time=event.time, routed=event.data)

    @property
    def event(self) -> Event[CaseRouted]:
        return Event(id=self.event_id, source=SOURCE, time=self.time, data=self.routed)


class Case(_Model):
    """The router's view of a case: the current ``case.routed`` and what routing needs."""

    id: str
    rev: int = 0
    """The stored revision; 0 for a case not stored yet."""
    feedback_id: str
    customer_key: str
    root_cause: RootCause
    urgency: Urgency
    """The highest urgency of the case's feedback."""
    status: CaseStatus
    team: str
    agent: str | None
    priority: Priority
    waiting_in: str | None
    """The team whose queue holds the case; None when an agent holds it or it is done."""
    queued_at: datetime | None
    generation: int
    """The routing round: ``reroute_count`` of the current routing."""
    opened_at: datetime
    routed: CaseRouted
    linked_feedback: tuple[str, ...] = ()
    seen: tuple[str, ...] | None = None
    """case.lifecycle events applied (resolution, closure); None: not read."""
    history: tuple[Recorded, ...] | None = None
    """Every case.routed emitted for the case; None: not read (a partial read)."""

    @property
    def routing(self) -> Routing:
        return self.routed.routing

    def recorded(self, key: str) -> Recorded | None:
        if self.history is None:
            raise ValueError(f"case {self.id} was read without its history")
        return next((entry for entry in self.history if entry.key == key), None)

    def replay_for(self, feedback_id: str) -> Recorded | None:
        """What the feedback caused on this case (opened it or was linked), if anything."""
        key = ROUTE_KEY if self.feedback_id == feedback_id else link_key(feedback_id)
        return self.recorded(key)


# --- the policy's part: priority, team, skills, deadlines -------------------------------


@dataclass(frozen=True)
class Placement:
    """Priority and team of a case, with the rule that picked the team and why."""

    priority: Priority
    team: str
    rule: str
    reason: str


def priority_of(
    policy: RoutingPolicy,
    feedback: Feedback,
    classification: Classification,
    rule: Rule | None = None,
) -> tuple[Priority, str]:
    """The matrix cell for (urgency, tier), raised by root cause, channel reach and the
    rule that picked the team."""
    tier, urgency = feedback.customer.tier, classification.urgency
    cell = policy.priority.matrix[urgency][tier]
    cause_steps = policy.priority.raise_by_cause.get(classification.root_cause, 0)
    channel_steps = policy.priority.raise_by_channel.get(feedback.channel, 0)
    rule_steps = rule.raise_priority if rule is not None else 0
    priority = raise_priority(cell, cause_steps + channel_steps + rule_steps)
    parts = [f"urgency {urgency.value} for a {tier.value} customer gives {cell.value}"]
    if cause_steps:
        parts.append(f"root cause {classification.root_cause} raises {cause_steps}")
    if channel_steps:
        parts.append(f"public channel {feedback.channel.value} raises {channel_steps}")
    if rule is not None and rule_steps:
        parts.append(f"rule {rule.name} raises {rule_steps}")
    if priority is not cell:
        parts.append(f"so {priority.value}")
    return priority, ", ".join(parts)


def rule_matches(
    rule: Rule, feedback: Feedback, classification: Classification, *, at_risk: bool = False
) -> bool:
    when = rule.when
    checks = [
        when.urgency is None or classification.urgency in when.urgency,
        when.root_cause is None or classification.root_cause in when.root_cause,
        when.language is None or feedback.language in when.language,
        when.channel is None or feedback.channel in when.channel,
        when.tier is None or feedback.customer.tier in when.tier,
        when.needs_review is None or classification.needs_review == when.needs_review,
        when.at_risk is None or at_risk == when.at_risk,
        when.expected_outcome is None or expects_one_of(classification, when.expected_outcome),
    ]
    return all(checks)


def expects_one_of(classification: Classification, outcomes: list[ExpectedOutcome]) -> bool:
    """Whether the customer asks for one of these outcomes; nothing said matches none."""
    expectation = classification.expectation
    return expectation is not None and expectation.outcome in outcomes


AT_RISK_REASON = "customer at risk (insights' health score)"


def place(
    policy: RoutingPolicy,
    feedback: Feedback,
    classification: Classification,
    *,
    at_risk: bool = False,
) -> Placement:
    """Priority and team of a new case, with the rule that picked the team. ``at_risk``:
    insights last said the customer is at risk (customer.signals)."""
    # The policy validates that the last rule matches everything.
    rule = next(
        r for r in policy.rules if rule_matches(r, feedback, classification, at_risk=at_risk)
    )
    priority, priority_reason = priority_of(policy, feedback, classification, rule)
    sends = f"rule {rule.name} sends it to {rule.team}"
    if rule.when.expected_outcome and classification.expectation is not None:
        # The owner sees at once what the customer asks for, as the rule did.
        sends += f" (expected outcome: {classification.expectation.outcome.value})"
    if rule.when.at_risk:
        team_reason = f"{AT_RISK_REASON}: {sends}"
    elif at_risk:
        # A rule before any at-risk one took the case: its owner should still know.
        team_reason = f"{sends}; {AT_RISK_REASON}"
    else:
        team_reason = sends
    reason = f"priority {priority.value}: {priority_reason}; {team_reason}"
    return Placement(priority=priority, team=rule.team, rule=rule.name, reason=reason)


def place_reroute(
    policy: RoutingPolicy, current: Routing, why: RerouteReason, detail: str
) -> Placement:
    """One priority higher, to the team's escalation team if it has one."""
    priority = raise_priority(current.priority, 1)
    team = policy.team(current.team) if policy.has_team(current.team) else None
    target = team.escalation_team if team and team.escalation_team else current.team
    if not policy.has_team(target):  # the team left the policy since the case was routed
        target = policy.rules[-1].team
    parts = [f"{why.replace('_', ' ')} ({detail})"]
    if priority is current.priority:
        parts.append(f"priority stays {priority.value}")
    else:
        parts.append(f"priority {current.priority.value} raised to {priority.value}")
    if target == current.team:
        parts.append(f"stays with team {target}")
    else:
        parts.append(f"team {current.team} escalates to {target}")
    return Placement(priority=priority, team=target, rule=f"reroute:{why}", reason="; ".join(parts))


def deadlines(
    policy: RoutingPolicy, team_id: str, priority: Priority, start: datetime
) -> tuple[datetime, datetime]:
    """First-response and resolution deadlines, in the team's business hours from ``start``."""
    target = policy.sla_hours[priority]
    calendar = policy.calendar_of(team_id)
    return (
        add_business_time(calendar, start, timedelta(hours=target.first_response)),
        add_business_time(calendar, start, timedelta(hours=target.resolution)),
    )


def deadlines_reason(policy: RoutingPolicy, team_id: str, first: datetime, last: datetime) -> str:
    calendar_name = policy.team(team_id).calendar
    zone = policy.calendars[calendar_name].time_zone
    tz = policy.calendar_of(team_id).time_zone
    return (
        f"first response by {first.astimezone(tz):%Y-%m-%d %H:%M} and resolution by "
        f"{last.astimezone(tz):%Y-%m-%d %H:%M} {zone}, in {calendar_name} hours"
    )


def build_routing(
    policy: RoutingPolicy,
    placement: Placement,
    agent: str | None,
    agent_reason: str,
    now: datetime,
    *,
    reroute_count: int = 0,
    reroute_reason: RerouteReason | None = None,
) -> Routing:
    """The routing of a case placed at ``now``: its owner, deadlines and every reason."""
    first, last = deadlines(policy, placement.team, placement.priority, now)
    return Routing(
        priority=placement.priority,
        team=placement.team,
        agent=agent,
        rule=placement.rule,
        reason="; ".join(
            [placement.reason, agent_reason, deadlines_reason(policy, placement.team, first, last)]
        ),
        routed_at=now,
        first_response_due=first,
        resolution_due=last,
        reroute_count=reroute_count,
        reroute_reason=reroute_reason,
        queued=agent is None,
    )


# --- agents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    """The agents who may take a case, in the order to try them, and why."""

    preferred: tuple[str, ...]
    """Tried first, in this order (an escalation lead)."""
    agent_ids: tuple[str, ...]
    """Then the least loaded of these."""
    note: str


def eligible_agents(
    policy: RoutingPolicy,
    team_id: str,
    language: str,
    cause: RootCause,
    *,
    exclude: tuple[str, ...] = (),
    preferred: tuple[str, ...] = (),
) -> Eligibility:
    """Agents of the team whose skills match the case: language and root cause.

    When nobody in the team has both skills, language alone decides; when nobody speaks
    the language either, every agent of the team may take it, so a case is never
    stranded in a queue that no agent could ever serve.
    """
    team = policy.team(team_id)
    agents = [a for a in team.agents if a.id not in exclude]
    both = [a for a in agents if a.speaks(language) and a.handles(cause)]
    speaking = [a for a in agents if a.speaks(language)]
    if both:
        chosen, note = both, f"speaking {language} and handling {cause}"
    elif speaking:
        chosen, note = speaking, f"speaking {language} (nobody handles {cause})"
    else:
        chosen, note = agents, f"of the team (nobody speaks {language})"
    ids = tuple(a.id for a in chosen)
    return Eligibility(
        preferred=tuple(p for p in preferred if p in ids),
        agent_ids=ids,
        note=note,
    )


def escalation_lead(policy: RoutingPolicy, from_team: str) -> tuple[str, ...]:
    if not policy.has_team(from_team):
        return ()
    lead = policy.team(from_team).escalation_lead
    return (lead,) if lead else ()


def least_loaded(loads: Mapping[str, int], case_id: str) -> str:
    """The agent with the lowest load. Ties go to an agent chosen by the case id: the
    same case always picks the same agent, while concurrent routers handling different
    cases spread over the tied agents instead of all contending for one."""
    lowest = min(loads.values())
    tied = sorted(agent for agent, load in loads.items() if load == lowest)
    return tied[zlib.crc32(case_id.encode()) % len(tied)]


@dataclass(frozen=True)
class AgentState:
    """What sharing out cases needs to know of an agent, as read in one snapshot."""

    id: str
    load: int
    capacity: int
    available: bool
    holds: frozenset[str] = frozenset()
    """Those of the cases being shared out that the agent holds already."""


@dataclass
class Shares:
    """The outcome of sharing out a batch of new cases."""

    agent_of: dict[str, str | None]
    """Each case's agent; None: the case waits in its team queue."""
    takes: dict[str, list[str]]
    """For each agent, the cases it takes now (not those it held already)."""
    unsettled: list[str]
    """Cases held in a way the batch cannot settle (by several agents, or by one no
    longer eligible): they are routed one by one."""


def share_out(
    cases: Sequence[tuple[str, Sequence[str]]], agents: Mapping[str, AgentState]
) -> Shares:
    """Give each case, in order, to the least loaded of its eligible agents who is
    available and under capacity, counting the cases given before it; the same choice
    ``least_loaded`` makes for one case at a time. A case an agent holds already (an
    earlier attempt) stays with that agent."""
    loads = {a.id: a.load for a in agents.values() if a.available}
    shares = Shares(agent_of={}, takes={}, unsettled=[])
    for case_id, eligible in cases:
        holders = [a.id for a in agents.values() if case_id in a.holds]
        if holders:
            if len(holders) == 1 and holders[0] in eligible:
                shares.agent_of[case_id] = holders[0]
            else:
                shares.unsettled.append(case_id)
            continue
        free = {a: loads[a] for a in eligible if a in loads and loads[a] < agents[a].capacity}
        if not free:
            shares.agent_of[case_id] = None
            continue
        chosen = least_loaded(free, case_id)
        loads[chosen] += 1
        shares.agent_of[case_id] = chosen
        shares.takes.setdefault(chosen, []).append(case_id)
    return shares


def assignment_reason(
    team_id: str, agent_id: str, load: int, capacity: int, eligibility: Eligibility
) -> str:
    if agent_id in eligibility.preferred:
        return f"agent {agent_id}: the escalation lead (load {load} of {capacity})"
    return (
        f"agent {agent_id}: least loaded available {team_id} agent {eligibility.note} "
        f"(load {load} of {capacity})"
    )


def queued_reason(team_id: str, eligibility: Eligibility) -> str:
    return (
        f"no available {team_id} agent {eligibility.note} is under capacity: "
        "waiting in the team queue"
    )


def agent_reason(team_id: str, agent: Agent | None, eligibility: Eligibility) -> str:
    if agent is None:
        return queued_reason(team_id, eligibility)
    return assignment_reason(team_id, agent.id, agent.load, agent.capacity, eligibility)


def from_queue_reason(routing: Routing, agent_reason: str, now: datetime) -> str:
    waited = max(timedelta(0), now - routing.routed_at)
    minutes = int(waited.total_seconds() // 60)
    return f"{routing.reason}; assigned from the queue after {minutes} min: {agent_reason}"


# --- linking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRule:
    """The one case new feedback joins instead of opening another: the customer's most
    recent case with the same root cause, not closed, opened at or after
    ``opened_since`` (the policy's linking window)."""

    customer_key: str
    root_cause: RootCause
    opened_since: datetime
    exclude: str
    """The case the feedback itself would open."""

    def admits(self, case: Case) -> bool:
        return (
            case.customer_key == self.customer_key
            and case.root_cause == self.root_cause
            and case.status != "closed"
            and case.opened_at >= self.opened_since
            and case.id != self.exclude
        )

    def pick(self, cases: Sequence[Case]) -> Case | None:
        return max(
            (case for case in cases if self.admits(case)),
            key=lambda case: case.opened_at,
            default=None,
        )

    def why(self, case: Case, policy: RoutingPolicy) -> str:
        return (
            f"same customer and root cause {self.root_cause} as case {case.id} opened "
            f"{case.opened_at:%Y-%m-%d}, within {policy.linking.window_days:g} days"
        )


def link_rule(policy: RoutingPolicy, data: FeedbackClassified) -> LinkRule:
    feedback = data.feedback
    return LinkRule(
        customer_key=feedback.customer_key,
        root_cause=data.classification.root_cause,
        opened_since=feedback.received_at - policy.linking.window,
        exclude=case_id_for(feedback.feedback_id),
    )


@dataclass(frozen=True)
class Link:
    routing: Routing
    raised: bool
    reason: str


def link_routing(
    current: Routing,
    case_urgency: Urgency,
    classification: Classification,
    why: str,
) -> Link:
    """The routing a linked feedback carries: the case's own, one priority higher when
    the new feedback is more urgent than anything the case has seen."""
    raised = urgency_rank(classification.urgency) > urgency_rank(case_urgency)
    priority = raise_priority(current.priority, 1) if raised else current.priority
    reason = f"linked to the open case: {why}"
    if raised and priority is not current.priority:
        reason += (
            f"; urgency {classification.urgency.value} above {case_urgency.value} raises "
            f"{current.priority.value} to {priority.value}"
        )
    elif raised:
        reason += f"; urgency {classification.urgency.value}, priority stays {priority.value}"
    routing = current.model_copy(update={"priority": priority})
    return Link(routing=routing, raised=priority is not current.priority, reason=reason)


# --- re-routes -----------------------------------------------------------------------


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


RerouteFor = Callable[[Case], Reroute | None]


def reopen_reroute(reopen_count: int, reason: str) -> RerouteFor:
    """case.reopened and the case.escalated of the same round are one re-route."""
    cause = Reroute(
        key=f"reopen:{reopen_count}",
        why="reopened",
        detail=f"round {reopen_count}: {reason[:200]}",
        reopens=True,
    )
    return lambda case: cause


def escalation_reroute(event_id: str, reason: str) -> RerouteFor:
    cause = Reroute(key=f"escalation:{event_id}", why="escalated", detail=reason[:200])
    return lambda case: cause


def breach_reroute(breached: SlaBreached) -> RerouteFor:
    """Once per (routing generation, SLA kind): the generation is the routing whose
    deadline the breach names; a breach of a deadline replaced since is stale."""

    def resolve(case: Case) -> Reroute | None:
        routings = [case.routing]
        routings += [
            entry.routed.routing
            for entry in case.history or ()
            if not entry.key.startswith("link:")
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


# --- the team queue -------------------------------------------------------------------


def queue_eligibility(case: Case, policy: RoutingPolicy) -> Eligibility:
    """Who may take a case waiting in its team's queue."""
    return eligible_agents(
        policy, case.team, case.routed.feedback.language, case.routed.classification.root_cause
    )


# --- customers' standing -----------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """What insights last said of a customer on customer.signals: at risk or not, as of
    its ``crossing``-th crossing of the health-score thresholds. A later crossing replaces
    an earlier one whatever order they arrive in; an older or the same one changes
    nothing."""

    customer_key: str
    at_risk: bool
    crossing: int
    since: datetime
    """When the score crossed the threshold."""
    score: float
    reasons: tuple[ScoreReason, ...]
    """The largest parts of the score, largest first."""
    signal_id: str
    """The customer.signals event it comes from."""


TOP_REASONS = 3


def standing_from_signal(signal: CustomerSignal, event_id: str) -> Standing:
    return Standing(
        customer_key=signal.customer_key,
        at_risk=isinstance(signal, CustomerAtRisk),
        crossing=signal.crossing,
        since=signal.occurred_at,
        score=signal.score,
        reasons=tuple(signal.reasons[:TOP_REASONS]),
        signal_id=event_id,
    )
