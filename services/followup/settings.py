from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.contracts import Priority
from shared.settings import ServiceSettings


class FollowupSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_FOLLOWUP_", extra="ignore")

    http_port: int = 8003
    public_url: str = Field(
        default="http://127.0.0.1:8003", description="Base URL customers and agents reach"
    )
    first_callback_hours: dict[Priority, float] = Field(
        default={Priority.P1: 1, Priority.P2: 4, Priority.P3: 24, Priority.P4: 48},
        description="Hours after routing at which the first callback is due, per priority",
    )
    survey_expiry_hours: float = Field(default=72, gt=0)
    satisfied_ratio: float = Field(
        default=0.9, gt=0, description="perceived/expected at or above this is satisfied"
    )
    delighted_ratio: float = Field(
        default=1.2, gt=0, description="perceived/expected at or above this is delighted"
    )
    due_poll_s: float = Field(default=1.0, gt=0)
    due_lease_s: float = Field(default=30.0, gt=0)
    outbox_retry_after_s: float = Field(default=5.0, gt=0)
