"""Routing decisions: priority, team, deadlines and agent choice. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.router.config import Agent, RoutingPolicy, Rule
from shared.contracts import Classification, Feedback, Priority

PRIORITY_ORDER = [Priority.P1, Priority.P2, Priority.P3, Priority.P4]


@dataclass(frozen=True)
class Decision:
    priority: Priority
    team: str
    rule: str
    reason: str


def raise_priority(priority: Priority, steps: int) -> Priority:
    index = max(0, min(len(PRIORITY_ORDER) - 1, PRIORITY_ORDER.index(priority) - steps))
    return PRIORITY_ORDER[index]


def decide_priority(
    policy: RoutingPolicy, feedback: Feedback, classification: Classification
) -> tuple[Priority, str]:
    base = policy.priority.by_urgency[classification.urgency]
    tier_steps = policy.priority.raise_by_tier.get(feedback.customer.tier, 0)
    cause_steps = policy.priority.raise_by_cause.get(classification.root_cause, 0)
    priority = raise_priority(base, tier_steps + cause_steps)
    parts = [f"urgency {classification.urgency.value} gives {base.value}"]
    if tier_steps:
        parts.append(f"{feedback.customer.tier.value} customer raises {tier_steps}")
    if cause_steps:
        parts.append(f"cause {classification.root_cause.value} raises {cause_steps}")
    return priority, "; ".join(parts)


def rule_matches(rule: Rule, feedback: Feedback, classification: Classification) -> bool:
    when = rule.when
    checks = [
        when.urgency is None or classification.urgency in when.urgency,
        when.root_cause is None or classification.root_cause in when.root_cause,
        when.language is None or feedback.language in when.language,
        when.channel is None or feedback.channel in when.channel,
        when.tier is None or feedback.customer.tier in when.tier,
        when.needs_review is None or classification.needs_review == when.needs_review,
    ]
    return all(checks)


def decide(policy: RoutingPolicy, feedback: Feedback, classification: Classification) -> Decision:
    priority, priority_reason = decide_priority(policy, feedback, classification)
    rule = next((r for r in policy.rules if rule_matches(r, feedback, classification)), None)
    if rule is None:
        raise ValueError("no routing rule matched; the policy needs a catch-all rule")
    reason = f"{priority_reason}; rule {rule.name} sends it to {rule.team}"
    return Decision(priority=priority, team=rule.team, rule=rule.name, reason=reason)


def deadlines(
    policy: RoutingPolicy, priority: Priority, start: datetime
) -> tuple[datetime, datetime]:
    """First-response and resolution deadlines, in elapsed hours from ``start``."""
    target = policy.sla_hours[priority]
    return (
        start + timedelta(hours=target.first_response),
        start + timedelta(hours=target.resolution),
    )


def candidate_agents(agents: Sequence[Agent], language: str, loads: dict[str, int]) -> list[Agent]:
    """Agents under capacity, those speaking the customer's language first, least loaded
    first; ties broken by id so every router copy orders them the same way."""
    open_agents = [a for a in agents if loads.get(a.id, 0) < a.capacity]
    return sorted(
        open_agents,
        key=lambda a: (language not in a.languages, loads.get(a.id, 0), a.id),
    )
