from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.router.config import DEFAULT_POLICY
from shared.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_ROUTER_", extra="ignore")

    http_port: int = 8002
    policy_file: Path = DEFAULT_POLICY
