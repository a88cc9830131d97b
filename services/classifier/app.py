"""Wiring of the classifier service."""

from __future__ import annotations

from services.classifier.handlers import TOPICS, make_batch_handlers, make_handlers
from services.classifier.model import load
from services.classifier.policy import load_taxonomy
from services.classifier.settings import ClassifierSettings
from shared.runtime import Service


def build(settings: ClassifierSettings | None = None) -> Service:
    settings = settings or ClassifierSettings()
    taxonomy = load_taxonomy(settings.taxonomy_file)
    model = load(settings.artifact_file or taxonomy.artifact_path)
    service = Service("classifier", settings)
    service.consume(
        list(TOPICS),
        make_handlers(taxonomy, model),
        batch_handlers=make_batch_handlers(taxonomy, model),
    )
    return service
