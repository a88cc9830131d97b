from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.classifier.config import DEFAULT_TAXONOMY
from shared.settings import ServiceSettings


class ClassifierSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_CLASSIFIER_", extra="ignore")

    http_port: int = 8001
    taxonomy_file: Path = DEFAULT_TAXONOMY
    # The trained model; by default the artifact the taxonomy names (model.artifact).
    artifact_file: Path | None = None
