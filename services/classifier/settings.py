from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.contracts import taxonomy_file
from shared.settings import ServiceSettings


class ClassifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_CLASSIFIER_", extra="ignore")

    http_port: int = 8001
    # By default the taxonomy every service reads its root causes from
    # (CLOSELOOP_TAXONOMY_FILE, else services/classifier/taxonomy.yaml): a file of its own
    # may not list a cause the other services do not know.
    taxonomy_file: Path = Field(default_factory=taxonomy_file)
    # The trained model; by default the artifact the taxonomy names (model.artifact).
    artifact_file: Path | None = None
