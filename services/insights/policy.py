"""The loyalty policy file (loyalty.yaml, docs/loyalty.md): the health score's base,
scale, thresholds, horizon, each part's points and half-life, and the tiers' offsets.
Loaded and validated when insights starts; a bad file stops it with a message naming the
field. What the score does with the policy is in loyalty.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import load_yaml
from shared.contracts import CustomerTier

DEFAULT_POLICY = Path(__file__).with_name("loyalty.yaml")

PartName = Literal[
    "complaints",
    "severe",
    "deadlines_missed",
    "reopened",
    "escalated",
    "dissatisfied",
    "promises_broken",
    "promises_overdue",
    "churn_intent",
    "open_cases",
    "recovered",
]
PARTS: tuple[PartName, ...] = get_args(PartName)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartPolicy(_Strict):
    points: float = Field(description="Points per item when it is new (negative: takes away)")
    half_life_days: float | None = Field(
        default=None, gt=0, description="Days after which an item counts half; none: no decay"
    )


class LoyaltyPolicy(_Strict):
    scale: float = Field(default=10.0, gt=0, description="Points per unit of log-odds")
    base: float = Field(ge=0, le=100, description="The score of a customer with no case")
    at_risk_below: float = Field(ge=0, le=100)
    recovered_above: float = Field(ge=0, le=100)
    horizon_days: float = Field(default=730, gt=0, description="Older cases count no more")
    parts: dict[PartName, PartPolicy]
    tiers: dict[CustomerTier, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.recovered_above <= self.at_risk_below:
            raise ValueError(
                "recovered_above must be above at_risk_below (the gap keeps a score near "
                "one threshold from flapping)"
            )
        missing = [name for name in PARTS if name not in self.parts]
        if missing:
            raise ValueError(f"parts needs an entry for {', '.join(missing)}")
        return self

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.horizon_days)

    def tier_points(self, tier: CustomerTier) -> float:
        return self.tiers.get(tier, 0.0)


def load_policy(path: Path = DEFAULT_POLICY) -> LoyaltyPolicy:
    return load_yaml(path, LoyaltyPolicy)
