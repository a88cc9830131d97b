"""The followup policy file: callbacks, SLA warnings, survey timing, the satisfaction
thresholds, promises, customer notifications and how long a customer may hear nothing.
Loaded and validated at start; a bad file names the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import load_yaml
from shared.contracts import Priority

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryBackoff(_Strict):
    first_minutes: float = Field(gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_minutes: float = Field(gt=0)

    def delay(self, attempt: int) -> timedelta:
        """The wait after the ``attempt``-th call went unanswered (attempt >= 1)."""
        minutes = self.first_minutes * self.factor ** max(0, attempt - 1)
        return timedelta(minutes=min(minutes, self.max_minutes))


class CallbackPolicy(_Strict):
    after_routing_hours: dict[Priority, float]
    after_resolution_hours: dict[Priority, float] = Field(default_factory=dict)
    max_attempts: int = Field(ge=1)
    retry: RetryBackoff
    overdue_after_minutes: float = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _every_priority(self) -> CallbackPolicy:
        missing = [p.value for p in Priority if p not in self.after_routing_hours]
        if missing:
            raise ValueError(f"after_routing_hours needs hours for {', '.join(missing)}")
        negative = [
            p.value
            for p, hours in (
                *self.after_routing_hours.items(),
                *self.after_resolution_hours.items(),
            )
            if hours < 0
        ]
        if negative:
            raise ValueError(f"callback hours must not be negative ({', '.join(negative)})")
        return self


class SlaPolicy(_Strict):
    warning_share: float = Field(default=0.8, gt=0, lt=1)


class SurveyPolicy(_Strict):
    reminder_after_hours: float = Field(gt=0)
    expires_after_hours: float = Field(gt=0)

    @model_validator(mode="after")
    def _reminder_before_expiry(self) -> SurveyPolicy:
        if self.reminder_after_hours >= self.expires_after_hours:
            raise ValueError("reminder_after_hours must be less than expires_after_hours")
        return self


class SatisfactionPolicy(_Strict):
    satisfied_ratio: float = Field(default=0.9, gt=0)
    delighted_ratio: float = Field(default=1.2, gt=0)
    dissatisfied_csat: int = Field(default=2, ge=0, le=4)

    @model_validator(mode="after")
    def _ordered(self) -> SatisfactionPolicy:
        if self.delighted_ratio <= self.satisfied_ratio:
            raise ValueError("delighted_ratio must be greater than satisfied_ratio")
        return self


class PromisePolicy(_Strict):
    warning_share: float = Field(
        default=0.8, gt=0, lt=1, description="promise.warning at this share of the time to the due"
    )
    overdue_after_hours: float = Field(
        default=4,
        ge=0,
        description="A promise with no outcome this many business hours of the owner team "
        "after its due time is overdue (promise.overdue) and the case is escalated",
    )
    tell_customer: bool = Field(
        default=True, description="Tell the customer each promise and its date (customer.notify)"
    )


SilenceAction = Literal["notify", "ask_owner"]


class SilencePolicy(_Strict):
    after_hours: dict[Priority, float] = Field(
        description="Longest an open case may go without a customer-facing update, in the "
        "owner team's business hours, per priority"
    )
    action: SilenceAction = Field(
        default="notify",
        description="notify: send the customer a progress message; ask_owner: ask the owner "
        "for one (case.update_requested)",
    )

    @model_validator(mode="after")
    def _every_priority(self) -> SilencePolicy:
        missing = [p.value for p in Priority if p not in self.after_hours]
        if missing:
            raise ValueError(f"after_hours needs hours for {', '.join(missing)}")
        if any(hours <= 0 for hours in self.after_hours.values()):
            raise ValueError("silence hours must be positive")
        return self


class NotifyPolicy(_Strict):
    acknowledge: bool = Field(
        default=True, description="Acknowledge every new case with its timeline (customer.notify)"
    )
    apologise: bool = Field(
        default=True,
        description="Apologise with the new expected date when a resolution deadline is missed",
    )


class FollowupPolicy(_Strict):
    callbacks: CallbackPolicy
    sla: SlaPolicy = SlaPolicy()
    survey: SurveyPolicy
    satisfaction: SatisfactionPolicy = SatisfactionPolicy()
    promises: PromisePolicy = PromisePolicy()
    silence: SilencePolicy = SilencePolicy(after_hours={"P1": 2, "P2": 8, "P3": 24, "P4": 40})
    notify: NotifyPolicy = NotifyPolicy()


def load_policy(path: Path = DEFAULT_POLICY) -> FollowupPolicy:
    return load_yaml(path, FollowupPolicy)
