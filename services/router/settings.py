from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.router.config import DEFAULT_POLICY
from shared.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_ROUTER_", extra="ignore")

    http_port: int = 8002
    kafka_batch_linger_ms: int = Field(
        default=150,
        ge=0,
        le=5_000,
        description="As for every service (50 ms elsewhere): a batch costs the router three "
        "or four database round trips whatever its size, so it waits longer for a batch",
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
