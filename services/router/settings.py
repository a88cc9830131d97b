from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.router.policy import DEFAULT_POLICY
from shared.auth import ApiKeySettings
from shared.credentials import refuse_known_secrets
from shared.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLOSELOOP_ROUTER_", extra="ignore", hide_input_in_errors=True
    )

    http_port: int = 8002
    api_keys: ApiKeySettings = Field(
        default_factory=dict,
        description="Clients of the agents and queues API (JSON): name -> key, or -> "
        '{"key": ..., "scopes": ["read"]} for one that may only read; a bare key may read '
        "and write. Keys of 16 characters or more, sent as X-API-Key or an Authorization "
        "bearer token. None: the API refuses every request (routing goes on).",
    )
    kafka_batch_linger_ms: int = Field(
        default=150,
        ge=0,
        le=5_000,
        description="As for every service (50 ms elsewhere): a batch costs the router three "
        "to five database round trips whatever its size, so it waits longer for a batch",
    )
    kafka_batch_linger_records: int = Field(
        default=10,
        ge=0,
        description="As for every service (0 elsewhere): ten events make a batch worth "
        "handling, so at high rates the router does not wait the whole linger",
    )
    policy_file: Path = DEFAULT_POLICY
    queue_sweep_s: float = Field(
        default=10.0,
        gt=0,
        description="How often each copy serves every team queue and refreshes the gauges",
    )
    outbox_retry_after_s: float = Field(
        default=5.0, gt=0, description="Age after which the relay publishes unpublished assignments"
    )

    @model_validator(mode="after")
    def _no_published_secrets(self) -> Self:
        refuse_known_secrets(self)
        return self
