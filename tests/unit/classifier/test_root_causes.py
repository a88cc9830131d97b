"""Root causes are data: a cause added to the taxonomy (with its keywords) is a root
cause every event and the router's routing policy accept, with no code changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.classifier.policy import DEFAULT_TAXONOMY, load_taxonomy
from services.router.policy import DEFAULT_POLICY, RoutingPolicy
from shared.config import ConfigError
from shared.contracts import (
    OTHER,
    TAXONOMY_FILE_VARIABLE,
    FeedbackClassified,
    reload_root_causes,
    root_causes,
)
from tests.support import a_classification, a_feedback

NEW = "accessibility"


def read(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


@pytest.fixture
def extended_taxonomy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped taxonomy plus one cause, as every service's taxonomy file."""
    taxonomy = read(DEFAULT_TAXONOMY)
    taxonomy["root_causes"][NEW] = {
        "description": "The place or the website cannot be used with a disability.",
        "keywords": {"en": ["wheelchair", "screen reader"], "zh": ["无障碍", "轮椅"]},
    }
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(taxonomy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv(TAXONOMY_FILE_VARIABLE, str(path))
    reload_root_causes()
    yield path
    reload_root_causes()


def routing_with_new_cause() -> dict[str, Any]:
    """The shipped routing policy with the new cause in a rule, an agent's skills and the
    priority raises."""
    routing = read(DEFAULT_POLICY)
    routing["priority"]["raise_by_cause"] = {NEW: 1}
    routing["teams"][0]["agents"][0]["root_causes"] = [NEW]
    team = routing["teams"][0]["id"]
    routing["rules"].insert(0, {"name": NEW, "when": {"root_cause": [NEW]}, "team": team})
    return routing


def test_a_cause_added_to_the_taxonomy_is_a_root_cause(extended_taxonomy: Path) -> None:
    assert root_causes()[-2:] == (NEW, OTHER)
    assert NEW in load_taxonomy(extended_taxonomy).root_causes


def test_events_carry_a_cause_added_to_the_taxonomy(extended_taxonomy: Path) -> None:
    classification = a_classification(NEW, secondary_cause="billing")
    event = FeedbackClassified(feedback=a_feedback(), classification=classification)
    again = FeedbackClassified.model_validate(event.model_dump(mode="json"))
    assert again.classification.root_cause == NEW


def test_the_routing_policy_accepts_a_cause_added_to_the_taxonomy(
    extended_taxonomy: Path,
) -> None:
    policy = RoutingPolicy.model_validate(routing_with_new_cause())
    assert policy.priority.raise_by_cause == {NEW: 1}
    assert policy.rules[0].when.root_cause == [NEW]


def test_without_the_cause_in_the_taxonomy_events_and_routing_refuse_it() -> None:
    reload_root_causes()
    with pytest.raises(ValidationError, match=f"unknown root cause '{NEW}'"):
        a_classification(NEW)
    with pytest.raises(ValidationError, match=f"unknown root cause '{NEW}'"):
        RoutingPolicy.model_validate(routing_with_new_cause())


def test_a_classifier_taxonomy_with_a_cause_the_other_services_lack_stops_it(
    tmp_path: Path,
) -> None:
    reload_root_causes()
    taxonomy = read(DEFAULT_TAXONOMY)
    taxonomy["root_causes"][NEW] = {"description": "new", "keywords": {"en": ["wheelchair"]}}
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(taxonomy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"root_causes.*unknown root cause '{NEW}'"):
        load_taxonomy(path)
