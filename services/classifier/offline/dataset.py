"""The labelled data: JSON lines, one example each, validated on read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.contracts import RootCause, Urgency

# The data sit in the service folder (services/classifier/data), beside the model.
DATA_DIR = Path(__file__).parents[1] / "data"
TRAIN_FILE = DATA_DIR / "train.jsonl"
HELDOUT_FILE = DATA_DIR / "heldout.jsonl"
# Written and labelled apart from the training data, the rules and the model
# (blind/README.md): read by evaluation only, never by training or by whoever edits rules.
BLIND_FILE = DATA_DIR / "blind" / "blind.jsonl"

SentimentLabel = Literal["positive", "negative", "neutral", "mixed"]


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and line."""


class LabelledExample(BaseModel):
    """One labelled feedback text. Only ``text`` and ``root_cause`` are required; the
    optional fields describe the feedback the way intake would (channel, customer tier,
    metadata such as followers) so urgency can be evaluated as the service decides it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str | None = None
    text: str = Field(min_length=1)
    subject: str | None = None
    lang: str = "other"
    root_cause: RootCause
    secondary_cause: RootCause | None = None
    urgency: Urgency | None = None
    sentiment: SentimentLabel | None = None
    channel: str | None = None
    customer: dict[str, Any] | str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    labelled_by: str | None = None


def read_examples(path: Path) -> list[LabelledExample]:
    return list(iter_examples(path.read_text(encoding="utf-8").splitlines(), str(path)))


def iter_examples(lines: Iterable[str], name: str) -> Iterator[LabelledExample]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield LabelledExample.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise DataError(f"{name}:{number}: {exc}") from exc
