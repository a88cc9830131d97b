"""The router's Prometheus metrics (docs/metrics.md, router section)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.router.domain import Agent

CASES_ROUTED = Counter(
    "closeloop_cases_routed_total",
    "Routing decisions for new and re-routed cases, by priority and team",
    ["priority", "team"],
)
CASES_QUEUED = Counter(
    "closeloop_cases_unassigned_total",
    "Routing decisions that found no agent free: the case waits in the team queue",
    ["team"],
)
TEAM_QUEUE_DEPTH = Gauge(
    "closeloop_team_queue_depth", "Cases waiting in the team queue for an agent", ["team"]
)
AGENT_LOAD = Gauge(
    "closeloop_agent_load",
    "Open cases an agent holds (its capacity is in the policy)",
    ["team", "agent"],
)
ASSIGNMENT_LATENCY = Histogram(
    "closeloop_assignment_latency_seconds",
    "From the routing decision to an agent holding the case, queue wait included",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400),
)
REROUTES = Counter(
    "closeloop_reroutes_total",
    "Cases routed again, by reason (reopened, escalated, sla_breached)",
    ["reason"],
)
CASES_LINKED = Counter(
    "closeloop_cases_linked_total",
    "Feedback linked to a customer's open case instead of opening another",
)
AGENT_RELEASES = Counter(
    "closeloop_agent_releases_total", "Resolved, closed or moved cases that freed an agent"
)
CUSTOMER_SIGNALS = Counter(
    "closeloop_router_customer_signals_total",
    "customer.signals events taken, by event and outcome: applied (a later crossing than "
    "the stored one) or stale (the same or an earlier one: redelivered or late, ignored)",
    ["event", "outcome"],
)
AT_RISK_CASES = Counter(
    "closeloop_at_risk_cases_routed_total",
    "New cases of customers at risk (customer.signals), by the rule that picked their team",
    ["rule"],
)

CALENDAR_HOLIDAYS_UNTIL = Gauge(
    "closeloop_calendar_holidays_until_timestamp_seconds",
    "Start (local midnight, 1 January) of the first year whose public holidays the "
    "calendar does not list; only calendars that list holidays",
    ["calendar"],
)


def observe_agent(agent: Agent) -> None:
    AGENT_LOAD.labels(agent.team, agent.id).set(agent.load)
