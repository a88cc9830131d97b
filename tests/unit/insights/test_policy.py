"""The loyalty policy file: the shipped one loads; a bad one stops insights with a message
naming the field."""

from pathlib import Path

import pytest

from services.insights.policy import DEFAULT_POLICY, LoyaltyPolicy, load_policy
from shared.config import ConfigError

POLICY = load_policy()


def test_the_shipped_policy_loads_and_a_bad_one_names_the_field(tmp_path: Path) -> None:
    assert load_policy(DEFAULT_POLICY) == POLICY
    bad = tmp_path / "loyalty.yaml"
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    bad.write_text(text.replace("recovered_above: 60", "recovered_above: 40"), encoding="utf-8")
    with pytest.raises(ConfigError, match="recovered_above must be above at_risk_below"):
        load_policy(bad)
    data = POLICY.model_dump()
    del data["parts"]["churn_intent"]
    with pytest.raises(ValueError, match="parts needs an entry for churn_intent"):
        LoyaltyPolicy.model_validate(data)


def test_the_promise_parts_are_in_the_shipped_policy_and_required() -> None:
    broken, overdue = POLICY.parts["promises_broken"], POLICY.parts["promises_overdue"]
    # A broken promise weighs more than one kept late, less than a dissatisfied answer.
    assert POLICY.parts["dissatisfied"].points <= broken.points < overdue.points < 0
    data = POLICY.model_dump()
    del data["parts"]["promises_overdue"]
    with pytest.raises(ValueError, match="parts needs an entry for promises_overdue"):
        LoyaltyPolicy.model_validate(data)
    data["parts"]["promises_overdue"] = {"points": -5, "half_life_days": 0}
    with pytest.raises(ValueError, match="half_life_days"):
        LoyaltyPolicy.model_validate(data)
