"""The taxonomy file: loaded and validated at start; a bad file names the field."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import load_yaml
from shared.contracts import RootCause

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")


class Keywords(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)

    @cached_property
    def pattern(self) -> re.Pattern[str] | None:
        """One regex for all keywords: English at word starts, Chinese anywhere."""
        parts = [
            r"(?<![a-z0-9])" + re.escape(k.lower()) for k in sorted(self.en, key=len, reverse=True)
        ]
        parts += [re.escape(k) for k in sorted(self.zh, key=len, reverse=True)]
        return re.compile("|".join(parts)) if parts else None


class CauseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    keywords: Keywords


class SignalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(gt=0)
    critical: bool = False
    patterns: Keywords


class SentimentLexicon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    positive: Keywords
    negative: Keywords


class UrgencyThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    critical_at: float
    high_at: float
    medium_at: float
    negative_sentiment_medium: float = Field(ge=-1, le=0)
    public_reach_followers: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UrgencyThresholds:
        if not self.critical_at > self.high_at > self.medium_at > 0:
            raise ValueError("thresholds must satisfy critical_at > high_at > medium_at > 0")
        return self


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    review_threshold: float = Field(ge=0, le=1)
    root_causes: dict[RootCause, CauseSpec]
    signals: dict[str, SignalSpec]
    sentiment: SentimentLexicon
    urgency: UrgencyThresholds

    @model_validator(mode="after")
    def _other_is_fallback(self) -> Taxonomy:
        if RootCause.OTHER in self.root_causes:
            raise ValueError("root_causes.other is the fallback and takes no keywords")
        return self


def load_taxonomy(path: Path = DEFAULT_TAXONOMY) -> Taxonomy:
    return load_yaml(path, Taxonomy)
