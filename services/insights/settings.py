from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.insights.policy import DEFAULT_POLICY
from shared.auth import ApiKeySettings
from shared.credentials import refuse_known_secrets
from shared.settings import ServiceSettings


class InsightsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLOSELOOP_INSIGHTS_", extra="ignore", hide_input_in_errors=True
    )

    http_port: int = 8004
    api_keys: ApiKeySettings = Field(
        default_factory=dict,
        description='Clients of the reports API (JSON): name -> key, or -> {"key": ..., '
        '"scopes": ["read"]} for one that may only read (recording a lesson needs write). '
        "Keys of 16 characters or more. "
        "None: the API refuses every request (the projection goes on).",
    )
    pending_sweep_s: float = Field(
        default=30.0,
        gt=0,
        description="How often each copy adds rollup deltas that a stopped copy left pending",
    )
    weekly_report_delay_h: float = Field(
        default=6.0,
        ge=0,
        le=72,
        description="How long after a week ends (Monday 00:00 UTC) its report is published on "
        "report.weekly: time for the week's last events to arrive",
    )
    weekly_check_s: float = Field(
        default=300.0, gt=0, description="How often each copy checks whether a report is due"
    )
    max_report_days: int = Field(
        default=400, ge=1, le=3_660, description="Longest period of one report, in days"
    )

    loyalty_policy_file: Path = Field(
        default=DEFAULT_POLICY,
        description="The customer health score's policy (docs/loyalty.md): parts, points, "
        "half-lives and thresholds",
    )
    rescore_every_h: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="How often a customer whose score still fades with time is scored again "
        "(a crossing may come from time alone)",
    )

    @model_validator(mode="after")
    def _no_published_secrets(self) -> Self:
        refuse_known_secrets(self)
        return self
