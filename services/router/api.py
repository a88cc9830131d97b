"""The router's HTTP API: agents (availability, load) and team queues. Thin: validate,
call the store or the flows, answer.

Every route needs an API key (shared/auth.py): a key with the read scope (a dashboard)
may read agents and queues; changing availability needs the write scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.router.domain import Agent
from services.router.flows import CaseRouter
from services.router.policy import RoutingPolicy
from shared.auth import api_client
from shared.business_time import business_time_between
from shared.clock import utcnow
from shared.contracts import Priority
from shared.http import PROBLEM_JSON

PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}
# What any route may answer before its own work: no valid key, a key without the scope,
# an address over the limit on failed attempts.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: PROBLEM, 403: PROBLEM, 429: PROBLEM}

router = APIRouter(prefix="/v1", dependencies=[Depends(api_client)], responses=AUTH_ERRORS)


class AgentView(BaseModel):
    id: str
    team: str
    languages: list[str]
    root_causes: list[str] = Field(description="Causes the agent handles; empty means every cause")
    capacity: int = Field(description="Open cases at most")
    load: int = Field(description="Open cases held now")
    available: bool
    open_cases: list[str]

    @classmethod
    def of(cls, agent: Agent) -> AgentView:
        return cls(
            id=agent.id,
            team=agent.team,
            languages=list(agent.languages),
            root_causes=list(agent.root_causes),
            capacity=agent.capacity,
            load=agent.load,
            available=agent.available,
            open_cases=list(agent.open_cases),
        )


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    available: bool = Field(description="true: online, takes new cases; false: offline")


class TeamView(BaseModel):
    id: str
    name: str
    calendar: str
    time_zone: str
    escalation_team: str | None
    escalation_lead: str | None
    agents: list[str]
    queue_depth: int


class QueueItem(BaseModel):
    position: int
    case_id: str
    priority: Priority
    queued_since: datetime
    reroute_count: int
    first_response_due: datetime
    resolution_due: datetime
    first_response_business_s_left: float = Field(
        description="Working time left to the first-response deadline in the team's calendar; "
        "negative when overdue"
    )


class QueueView(BaseModel):
    team: str
    depth: int
    free_places: int = Field(description="Cases the team's available agents can still take")
    items: list[QueueItem]


def _deps(request: Request) -> tuple[CaseRouter, RoutingPolicy]:
    case_router: CaseRouter = request.app.state.router
    return case_router, case_router.policy


def _known_team(policy: RoutingPolicy, team_id: str) -> None:
    if not policy.has_team(team_id):
        raise HTTPException(404, f"no team {team_id}")


@router.get("/agents", response_model=list[AgentView], tags=["agents"], responses={404: PROBLEM})
async def list_agents(request: Request, team: str | None = None) -> list[AgentView]:
    """Every agent with availability, capacity and current load, optionally of one team."""
    case_router, policy = _deps(request)
    if team is not None:
        _known_team(policy, team)
    return [AgentView.of(agent) for agent in await case_router.store.list_agents(team)]


@router.get(
    "/agents/{agent_id}", response_model=AgentView, tags=["agents"], responses={404: PROBLEM}
)
async def get_agent(request: Request, agent_id: str) -> AgentView:
    case_router, _ = _deps(request)
    agent = await case_router.store.get_agent(agent_id)
    if agent is None:
        raise HTTPException(404, f"no agent {agent_id}")
    return AgentView.of(agent)


@router.put(
    "/agents/{agent_id}/availability",
    response_model=AgentView,
    tags=["agents"],
    responses={404: PROBLEM, 422: PROBLEM},
)
async def put_availability(request: Request, agent_id: str, body: AvailabilityIn) -> AgentView:
    """Set an agent online or offline. Going online serves the team queue at once; going
    offline keeps the cases the agent holds and stops new ones."""
    case_router, _ = _deps(request)
    agent = await case_router.set_availability(agent_id, body.available)
    if agent is None:
        raise HTTPException(404, f"no agent {agent_id}")
    return AgentView.of(agent)


@router.get("/teams", response_model=list[TeamView], tags=["teams"])
async def list_teams(request: Request) -> list[TeamView]:
    case_router, policy = _deps(request)
    depths = await case_router.store.queue_depths()
    return [
        TeamView(
            id=team.id,
            name=team.name,
            calendar=team.calendar,
            time_zone=policy.calendars[team.calendar].time_zone,
            escalation_team=team.escalation_team,
            escalation_lead=team.escalation_lead,
            agents=[a.id for a in team.agents],
            queue_depth=depths.get(team.id, 0),
        )
        for team in policy.teams
    ]


@router.get(
    "/teams/{team_id}/queue", response_model=QueueView, tags=["teams"], responses={404: PROBLEM}
)
async def team_queue(
    request: Request, team_id: str, limit: int = Query(default=100, ge=1, le=1000)
) -> QueueView:
    """Cases waiting for an agent, in the order they will be served: highest priority,
    then oldest."""
    case_router, policy = _deps(request)
    _known_team(policy, team_id)
    store = case_router.store
    cases = await store.queued_cases(team_id, limit)
    calendar = policy.calendar_of(team_id)
    now = utcnow()
    items = []
    for position, case in enumerate(cases, start=1):
        routing = case.routing
        left = business_time_between(calendar, now, routing.first_response_due)
        items.append(
            QueueItem(
                position=position,
                case_id=case.id,
                priority=routing.priority,
                queued_since=case.queued_at or routing.routed_at,
                reroute_count=routing.reroute_count,
                first_response_due=routing.first_response_due,
                resolution_due=routing.resolution_due,
                first_response_business_s_left=left.total_seconds(),
            )
        )
    return QueueView(
        team=team_id,
        depth=await store.queue_depth(team_id),
        free_places=sum((await store.free_places(team_id)).values()),
        items=items,
    )
