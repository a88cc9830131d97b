from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.router.config import DEFAULT_POLICY
from shared.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_ROUTER_", extra="ignore")

    http_port: int = 8002
    policy_file: Path = DEFAULT_POLICY
    queue_sweep_s: float = Field(
        default=10.0,
        gt=0,
        description="How often each copy serves every team queue and refreshes the gauges",
    )
    outbox_retry_after_s: float = Field(
        default=5.0, gt=0, description="Age after which the relay publishes unpublished assignments"
    )
