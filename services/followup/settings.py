from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.followup.notifications import DEFAULT_TEMPLATES
from services.followup.outreach import DEFAULT_ROUTING_FILE
from services.followup.policy import DEFAULT_POLICY
from shared.auth import ApiKeySettings
from shared.credentials import refuse_known_secrets
from shared.settings import ServiceSettings


class FollowupSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLOSELOOP_FOLLOWUP_", extra="ignore", hide_input_in_errors=True
    )

    http_port: int = 8003
    public_url: str = Field(
        default="http://127.0.0.1:8003",
        description="Base URL customers reach; survey links start with it",
    )
    policy_file: Path = Field(
        default=DEFAULT_POLICY, description="Callbacks, SLA warning share, survey timing"
    )
    routing_file: Path = Field(
        default=DEFAULT_ROUTING_FILE,
        description="The router's routing policy: its team calendars time promises and "
        "silences in business hours",
    )
    notifications_file: Path = Field(
        default=DEFAULT_TEMPLATES,
        description="Customer message templates per kind, language and channel",
    )
    api_keys: ApiKeySettings = Field(
        min_length=1,
        description="Agent tools allowed to call the case API (JSON): name -> key, or -> "
        '{"key": ..., "scopes": ["read"]} for one that may only read; a bare key may read '
        "and write. The key goes in an X-API-Key header or as an Authorization bearer token.",
    )
    survey_secret: SecretStr = Field(
        description="Signs survey links; every followup copy needs the same one"
    )
    survey_old_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Earlier survey secrets still accepted for links sent before a rotation",
    )
    due_poll_s: float = Field(default=1.0, gt=0)
    due_lease_s: float = Field(default=30.0, gt=0)
    outbox_retry_after_s: float = Field(default=5.0, gt=0)
    stats_interval_s: float = Field(
        default=15.0, gt=0, description="How often open cases and overdue callbacks are counted"
    )

    @field_validator("survey_secret")
    @classmethod
    def _secret_long_enough(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < 32:
            raise ValueError("the survey secret must have 32 characters or more")
        return secret

    @model_validator(mode="after")
    def _no_published_secrets(self) -> Self:
        refuse_known_secrets(self)
        return self
