from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.credentials import refuse_known_secrets
from shared.settings import ServiceSettings

HERE = Path(__file__).resolve().parent


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLOSELOOP_INTAKE_", extra="ignore", hide_input_in_errors=True
    )

    http_port: int = 8000
    kafka_request_timeout_ms: int = Field(
        default=5_000, ge=100, description="How long a POST waits for the broker's ack"
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After when answering 503")
    max_text_chars: int = Field(
        default=20_000, ge=1, le=20_000, description="Longer texts (mail, calls) are cut"
    )
    integrations_file: Path = Field(
        default=HERE / "policy.yaml",
        description="Who may post: API keys, signing secrets, channels, rate limits",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1_024, description="Largest JSON or form body (413 above)"
    )
    max_upload_bytes: int = Field(
        default=26_214_400,
        ge=1_024,
        description="Largest raw e-mail or multipart web form, attachments included",
    )
    max_batch_bytes: int = Field(default=10_485_760, ge=1_024, description="Largest batch body")
    max_batch_items: int = Field(default=500, ge=1, le=500, description="Items per batch")

    @model_validator(mode="after")
    def _no_published_secrets(self) -> Self:
        refuse_known_secrets(self)
        return self
