from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_INTAKE_", extra="ignore")

    http_port: int = 8000
    kafka_request_timeout_ms: int = Field(
        default=5_000, ge=100, description="How long a POST waits for the broker's ack"
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After when answering 503")
    max_text_chars: int = Field(default=20_000, ge=1)
