"""The routing policy file: loaded and validated at start; a bad file names the field."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import load_yaml
from shared.contracts import Channel, CustomerTier, Priority, RootCause, Urgency

DEFAULT_POLICY = Path(__file__).with_name("routing.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorityPolicy(_Strict):
    by_urgency: dict[Urgency, Priority]
    raise_by_tier: dict[CustomerTier, int] = Field(default_factory=dict)
    raise_by_cause: dict[RootCause, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_urgency(self) -> PriorityPolicy:
        missing = [u.value for u in Urgency if u not in self.by_urgency]
        if missing:
            raise ValueError(f"by_urgency needs a priority for {', '.join(missing)}")
        return self


class SlaTarget(_Strict):
    first_response: float = Field(gt=0, description="hours")
    resolution: float = Field(gt=0, description="hours")

    @model_validator(mode="after")
    def _ordered(self) -> SlaTarget:
        if self.resolution < self.first_response:
            raise ValueError("resolution must not come before first_response")
        return self


class Agent(_Strict):
    id: str = Field(min_length=1)
    languages: list[str] = Field(min_length=1)
    capacity: int = Field(ge=1, description="open cases at most")


class Team(_Strict):
    id: str = Field(min_length=1)
    name: str
    agents: list[Agent] = Field(default_factory=list)


class RuleCondition(_Strict):
    urgency: list[Urgency] | None = None
    root_cause: list[RootCause] | None = None
    language: list[str] | None = None
    channel: list[Channel] | None = None
    tier: list[CustomerTier] | None = None
    needs_review: bool | None = None


class Rule(_Strict):
    name: str = Field(min_length=1)
    when: RuleCondition
    team: str


class RoutingPolicy(_Strict):
    priority: PriorityPolicy
    sla_hours: dict[Priority, SlaTarget]
    teams: list[Team] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingPolicy:
        missing = [p.value for p in Priority if p not in self.sla_hours]
        if missing:
            raise ValueError(f"sla_hours needs targets for {', '.join(missing)}")
        team_ids = [t.id for t in self.teams]
        if len(set(team_ids)) != len(team_ids):
            raise ValueError("team ids must be unique")
        agent_ids = [a.id for t in self.teams for a in t.agents]
        if len(set(agent_ids)) != len(agent_ids):
            raise ValueError("agent ids must be unique across teams")
        for index, rule in enumerate(self.rules):
            if rule.team not in team_ids:
                raise ValueError(f"rules.{index}.team: unknown team {rule.team!r}")
        return self

    def team(self, team_id: str) -> Team:
        return next(t for t in self.teams if t.id == team_id)


def load_policy(path: Path = DEFAULT_POLICY) -> RoutingPolicy:
    return load_yaml(path, RoutingPolicy)
