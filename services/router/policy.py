"""The routing policy file: loaded and validated at start; a bad file names the field."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.business_time import Calendar
from shared.calendars import CalendarPolicy
from shared.config import load_yaml
from shared.contracts import (
    Channel,
    CustomerTier,
    ExpectedOutcome,
    Priority,
    RootCause,
    Urgency,
)

DEFAULT_POLICY = Path(__file__).with_name("routing.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorityPolicy(_Strict):
    matrix: dict[Urgency, dict[CustomerTier, Priority]] = Field(
        description="Priority by urgency (rows) and customer tier (columns)"
    )
    raise_by_cause: dict[RootCause, int] = Field(default_factory=dict)
    raise_by_channel: dict[Channel, int] = Field(
        default_factory=dict, description="Steps up for channels with public reach"
    )

    @model_validator(mode="after")
    def _every_cell(self) -> PriorityPolicy:
        for urgency in Urgency:
            row = self.matrix.get(urgency)
            if row is None:
                raise ValueError(f"matrix needs a row for urgency {urgency.value}")
            missing = [tier.value for tier in CustomerTier if tier not in row]
            if missing:
                raise ValueError(
                    f"matrix.{urgency.value} needs a priority for {', '.join(missing)}"
                )
        return self


class SlaTarget(_Strict):
    first_response: float = Field(gt=0, description="business hours")
    resolution: float = Field(gt=0, description="business hours")

    @model_validator(mode="after")
    def _ordered(self) -> SlaTarget:
        if self.resolution < self.first_response:
            raise ValueError("resolution must not come before first_response")
        return self


class Agent(_Strict):
    id: str = Field(min_length=1)
    languages: list[str] = Field(min_length=1)
    root_causes: list[RootCause] = Field(
        default_factory=list, description="Causes this agent handles; empty means every cause"
    )
    capacity: int = Field(ge=1, description="open cases at most")

    def speaks(self, language: str) -> bool:
        return language in self.languages

    def handles(self, cause: RootCause) -> bool:
        return not self.root_causes or cause in self.root_causes


class Team(_Strict):
    id: str = Field(min_length=1)
    name: str
    calendar: str = Field(description="Name of a calendar under `calendars`")
    escalation_team: str | None = Field(
        default=None, description="Where re-routed cases of this team go; none keeps them here"
    )
    escalation_lead: str | None = Field(
        default=None, description="Agent who takes this team's re-routed cases first"
    )
    agents: list[Agent] = Field(default_factory=list)

    def agent(self, agent_id: str) -> Agent | None:
        return next((a for a in self.agents if a.id == agent_id), None)


class RuleCondition(_Strict):
    urgency: list[Urgency] | None = None
    root_cause: list[RootCause] | None = None
    language: list[str] | None = None
    channel: list[Channel] | None = None
    tier: list[CustomerTier] | None = None
    needs_review: bool | None = None
    at_risk: bool | None = Field(
        default=None,
        description="true: only customers insights last said are at risk (customer.signals); "
        "false: only the others",
    )
    expected_outcome: list[ExpectedOutcome] | None = Field(
        default=None,
        description="What the customer asks for (the classification's expectation); a case "
        "with no expectation matches no list",
    )

    @property
    def matches_everything(self) -> bool:
        return all(value is None for value in self.model_dump().values())


class Rule(_Strict):
    name: str = Field(min_length=1)
    when: RuleCondition
    team: str
    raise_priority: int = Field(
        default=0,
        ge=0,
        description="Steps up for the cases this rule sends, after the matrix and the raises "
        "by cause and channel; P1 stays P1",
    )


class LinkingPolicy(_Strict):
    window_days: float = Field(
        default=14,
        gt=0,
        description="A customer's open case with the same root cause opened this recently "
        "absorbs their new feedback instead of a new case",
    )

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)


class RoutingPolicy(_Strict):
    priority: PriorityPolicy
    sla_hours: dict[Priority, SlaTarget]
    calendars: dict[str, CalendarPolicy] = Field(min_length=1)
    teams: list[Team] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)
    linking: LinkingPolicy = Field(default_factory=LinkingPolicy)

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
        for index, team in enumerate(self.teams):
            self._check_team(index, team, team_ids)
        for index, rule in enumerate(self.rules):
            if rule.team not in team_ids:
                raise ValueError(f"rules.{index}.team: unknown team {rule.team!r}")
        if not self.rules[-1].when.matches_everything:
            raise ValueError(
                f"rules.{len(self.rules) - 1}: the last rule must match everything (when: {{}}) "
                "so that every case has a team"
            )
        return self

    def _check_team(self, index: int, team: Team, team_ids: list[str]) -> None:
        where = f"teams.{index}"
        if team.calendar not in self.calendars:
            raise ValueError(f"{where}.calendar: unknown calendar {team.calendar!r}")
        target = team.escalation_team or team.id
        if team.escalation_team is not None:
            if team.escalation_team not in team_ids:
                raise ValueError(f"{where}.escalation_team: unknown team {team.escalation_team!r}")
            if team.escalation_team == team.id:
                raise ValueError(f"{where}.escalation_team: a team cannot escalate to itself")
        if (
            team.escalation_lead is not None
            and self.team(target).agent(team.escalation_lead) is None
        ):
            raise ValueError(
                f"{where}.escalation_lead: {team.escalation_lead!r} is not an agent of team "
                f"{target!r}"
            )

    def team(self, team_id: str) -> Team:
        return next(t for t in self.teams if t.id == team_id)

    @property
    def uses_at_risk(self) -> bool:
        """Whether a rule looks at the customer's standing: without one, the router need
        not read it."""
        return any(rule.when.at_risk is not None for rule in self.rules)

    def has_team(self, team_id: str) -> bool:
        return any(t.id == team_id for t in self.teams)

    def team_of_agent(self, agent_id: str) -> Team | None:
        return next((t for t in self.teams if t.agent(agent_id) is not None), None)

    @cached_property
    def _calendars(self) -> dict[str, Calendar]:
        return {name: calendar.build() for name, calendar in self.calendars.items()}

    def calendar_of(self, team_id: str) -> Calendar:
        return self._calendars[self.team(team_id).calendar]


def load_policy(path: Path = DEFAULT_POLICY) -> RoutingPolicy:
    return load_yaml(path, RoutingPolicy)
