"""The routing policy file fails fast at start, naming the field that is wrong."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from services.router.policy import DEFAULT_POLICY, RoutingPolicy, load_policy
from shared.calendars import parse_span
from shared.config import ConfigError


def write_policy(tmp_path: Path, change: dict[str, object] | None = None, **patch: object) -> Path:
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    data.update(patch)
    for dotted, value in (change or {}).items():
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(last) if isinstance(target, list) else last] = value
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_shipped_policy_is_valid() -> None:
    policy = load_policy()
    assert {team.id for team in policy.teams} >= {"escalations", "triage", "retention"}
    assert policy.linking.window_days == 14


def test_the_shipped_at_risk_rule_comes_after_critical_and_before_unsure() -> None:
    policy = load_policy()
    names = [rule.name for rule in policy.rules]
    assert names[:3] == ["critical-to-escalations", "at-risk-to-retention", "unsure-to-triage"]
    rule = policy.rules[1]
    assert (rule.when.at_risk, rule.team, rule.raise_priority) == (True, "retention", 1)
    assert all(r.raise_priority == 0 for r in policy.rules if r is not rule)
    retention = policy.team("retention")
    assert (retention.calendar, retention.escalation_team) == ("china-office", "escalations")
    assert len(retention.agents) == 2
    assert all(set(agent.languages) == {"zh", "en"} for agent in retention.agents)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rules.3.team": "nowhere"}, r"rules\.3\.team: unknown team 'nowhere'"),
        ({"teams.0.calendar": "mars"}, r"teams\.0\.calendar: unknown calendar 'mars'"),
        ({"teams.0.escalation_team": "nowhere"}, r"teams\.0\.escalation_team: unknown team"),
        ({"teams.0.escalation_team": "quality"}, r"cannot escalate to itself"),
        ({"teams.0.escalation_lead": "agent-li-na"}, r"not an agent of team 'escalations'"),
        ({"calendars.china-office.time_zone": "Mars/Olympus"}, r"unknown time zone"),
        ({"calendars.china-office.hours.mon": ["18:00-09:00"]}, r"ends before it starts"),
        ({"calendars.china-office.hours.mon": ["09:00-13:00", "12:00-18:00"]}, r"overlap"),
        ({"calendars.china-office.hours.mon": ["9-5"]}, r"not a span like 09:00-18:00"),
        ({"priority.matrix.low": {"standard": "P4"}}, r"matrix\.low needs a priority for"),
        ({"sla_hours.P1": {"first_response": 9, "resolution": 8}}, r"resolution must not"),
        ({"linking.window_days": 0}, r"linking\.window_days"),
        ({"rules.1.raise_priority": -1}, r"rules\.1\.raise_priority"),
        ({"rules.1.when.at_risk": "maybe"}, r"rules\.1\.when\.at_risk"),
        ({"rules.1.when.at_risk_score": 40}, r"rules\.1\.when\.at_risk_score"),
        ({"rules.1.when.expected_outcome": ["money_back"]}, r"rules\.1\.when\.expected_outcome\.0"),
        ({"rules.1.when.expected_outcome": "refund"}, r"rules\.1\.when\.expected_outcome"),
    ],
)
def test_a_bad_policy_fails_naming_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy(write_policy(tmp_path, change))


def test_the_last_rule_must_match_everything(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    path = write_policy(tmp_path, rules=data["rules"][:-1])
    with pytest.raises(ConfigError, match=r"the last rule must match everything"):
        load_policy(path)


def test_a_day_cannot_be_both_a_holiday_and_an_extra_working_day(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path, {"calendars.china-office.extra_workdays": {"2026-10-01": ["09:00-18:00"]}}
    )
    with pytest.raises(ConfigError, match=r"2026-10-01 is both a holiday and an extra"):
        load_policy(path)


def test_a_span_can_end_at_midnight_but_not_cross_it() -> None:
    assert parse_span("00:00-24:00") == (0, 1440)
    assert parse_span("13:30-18:00") == (810, 1080)
    with pytest.raises(ValueError, match="not a valid time"):
        parse_span("22:00-24:30")


def test_the_example_policy_in_the_routing_docs_is_valid() -> None:
    docs = Path(__file__).parents[3] / "docs" / "routing.md"
    example = docs.read_text(encoding="utf-8").split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = RoutingPolicy.model_validate(yaml.safe_load(example))
    assert [team.id for team in policy.teams] == ["cn-desk", "uk-desk", "escalations"]
    assert policy.calendar_of("uk-desk").time_zone.key == "Europe/London"


def test_a_calendar_says_until_when_it_lists_public_holidays() -> None:
    calendars = load_policy().calendars
    assert calendars["china-office"].holidays_listed_until() == date(2027, 1, 1)
    assert calendars["china-hotline"].holidays_listed_until() == date(2027, 1, 1)
    assert calendars["always-open"].holidays_listed_until() is None
