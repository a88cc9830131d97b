"""Routing decisions: priority, team, deadlines, eligible agents, re-routes and links, and
the customers' standing (at risk or not) that insights' customer.signals tell.

Pure functions over the policy and the event contracts; the caller passes ``now``.
Every decision carries a human-readable reason that travels in ``case.routed``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.router.business_time import add_business_time
from services.router.config import RoutingPolicy, Rule
from shared.contracts import (
    Classification,
    CustomerAtRisk,
    CustomerSignal,
    Feedback,
    Priority,
    RootCause,
    Routing,
    ScoreReason,
    Urgency,
)
from shared.envelope import derive_id

PRIORITY_ORDER = (Priority.P1, Priority.P2, Priority.P3, Priority.P4)
URGENCY_ORDER = (Urgency.LOW, Urgency.MEDIUM, Urgency.HIGH, Urgency.CRITICAL)

RerouteReason = Literal["reopened", "escalated", "sla_breached"]
REROUTE_REASONS: tuple[RerouteReason, ...] = ("reopened", "escalated", "sla_breached")


def case_id_for(feedback_id: str) -> str:
    """A new case's id: every router copy and every redelivery derives the same one."""
    return derive_id("case", feedback_id)


def priority_rank(priority: Priority) -> int:
    """0 for P1 up to 3 for P4: the team queue serves the lowest rank first."""
    return PRIORITY_ORDER.index(priority)


def raise_priority(priority: Priority, steps: int) -> Priority:
    index = max(0, min(len(PRIORITY_ORDER) - 1, priority_rank(priority) - steps))
    return PRIORITY_ORDER[index]


def more_urgent(a: Urgency, b: Urgency) -> bool:
    return URGENCY_ORDER.index(a) > URGENCY_ORDER.index(b)


@dataclass(frozen=True)
class Decision:
    priority: Priority
    team: str
    rule: str
    reason: str


def decide_priority(
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
        parts.append(f"root cause {classification.root_cause.value} raises {cause_steps}")
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
    ]
    return all(checks)


AT_RISK_REASON = "customer at risk (insights' health score)"


def decide(
    policy: RoutingPolicy,
    feedback: Feedback,
    classification: Classification,
    *,
    at_risk: bool = False,
) -> Decision:
    """Priority and team of a new case, with the rule that picked the team. ``at_risk``:
    insights last said the customer is at risk (customer.signals)."""
    # The policy validates that the last rule matches everything.
    rule = next(
        r for r in policy.rules if rule_matches(r, feedback, classification, at_risk=at_risk)
    )
    priority, priority_reason = decide_priority(policy, feedback, classification, rule)
    sends = f"rule {rule.name} sends it to {rule.team}"
    if rule.when.at_risk:
        team_reason = f"{AT_RISK_REASON}: {sends}"
    elif at_risk:
        # A rule before any at-risk one took the case: its owner should still know.
        team_reason = f"{sends}; {AT_RISK_REASON}"
    else:
        team_reason = sends
    reason = f"priority {priority.value}: {priority_reason}; {team_reason}"
    return Decision(priority=priority, team=rule.team, rule=rule.name, reason=reason)


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
        chosen, note = both, f"speaking {language} and handling {cause.value}"
    elif speaking:
        chosen, note = speaking, f"speaking {language} (nobody handles {cause.value})"
    else:
        chosen, note = agents, f"of the team (nobody speaks {language})"
    ids = tuple(a.id for a in chosen)
    return Eligibility(
        preferred=tuple(p for p in preferred if p in ids),
        agent_ids=ids,
        note=note,
    )


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


def from_queue_reason(routing: Routing, agent_reason: str, now: datetime) -> str:
    waited = max(timedelta(0), now - routing.routed_at)
    minutes = int(waited.total_seconds() // 60)
    return f"{routing.reason}; assigned from the queue after {minutes} min: {agent_reason}"


def decide_reroute(
    policy: RoutingPolicy, current: Routing, why: RerouteReason, detail: str
) -> Decision:
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
    return Decision(priority=priority, team=target, rule=f"reroute:{why}", reason="; ".join(parts))


def escalation_lead(policy: RoutingPolicy, from_team: str) -> tuple[str, ...]:
    if not policy.has_team(from_team):
        return ()
    lead = policy.team(from_team).escalation_lead
    return (lead,) if lead else ()


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
    raised = more_urgent(classification.urgency, case_urgency)
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


def link_cutoff(policy: RoutingPolicy, feedback: Feedback) -> datetime:
    """Open cases opened at or after this instant absorb the customer's new feedback."""
    return feedback.received_at - policy.linking.window
