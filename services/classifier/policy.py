"""The taxonomy file: loaded and validated at start; a bad file names the field."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.config import load_yaml
from shared.contracts import OTHER, CustomerTier, ExpectedOutcome, RootCause

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")


@dataclass(frozen=True)
class Match:
    """One matched span of the prepared (lower-cased) text."""

    text: str
    start: int
    end: int


class Keywords(BaseModel):
    """Keywords of one cause or signal. ``en``: English, matched at the start of a word
    ("refund" matches "refunded"); ``words``: English, whole words only ("fire" but not
    "fired"); ``zh``: Chinese, matched anywhere; ``regex``: Python regular expressions
    for what a list cannot say. All match the lower-cased text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    en: list[str] = Field(default_factory=list)
    words: list[str] = Field(
        default_factory=list, description="English keywords that must be whole words"
    )
    zh: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for expression in value:
            try:
                re.compile(expression)
            except re.error as exc:
                raise ValueError(
                    f"{expression!r} is not a valid regular expression: {exc}"
                ) from exc
        return value

    @field_validator("en", "words", "zh")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not str(k).strip() for k in value):
            raise ValueError("keywords must not be empty")
        return [str(k) for k in value]

    @cached_property
    def literals(self) -> tuple[tuple[str, int], ...]:
        """(keyword, where it may match) pairs, lower-cased, longest first."""
        modes = {k.lower(): ANYWHERE for k in self.zh}
        modes.update({k.lower(): WORD_START for k in self.en})
        modes.update({k.lower(): WHOLE_WORD for k in self.words})
        return tuple(sorted(modes.items(), key=lambda item: len(item[0]), reverse=True))

    @cached_property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        """The regexes as one alternation: one scan of the text instead of one per regex."""
        if not self.regex:
            return ()
        return (re.compile("|".join(f"(?:{expression})" for expression in self.regex)),)

    def find(self, prepared: str) -> list[Match]:
        """Every occurrence in the prepared (lower-cased) text: English keywords at the start
        of a word, Chinese anywhere, regexes as written."""
        found: list[Match] = []
        for keyword, mode in self.literals:
            if keyword in prepared:
                _occurrences(prepared, keyword, mode, found)
        for pattern in self.patterns:
            found += [Match(m.group(0), m.start(), m.end()) for m in pattern.finditer(prepared)]
        return found


ANYWHERE, WORD_START, WHOLE_WORD = 0, 1, 2


def _is_word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _fits(prepared: str, start: int, end: int, mode: int) -> bool:
    """Whether a keyword found at start:end may count there (see the modes above)."""
    if mode == ANYWHERE:
        return True
    if start > 0 and _is_word_char(prepared[start - 1]):
        return False
    return mode == WORD_START or end == len(prepared) or not _is_word_char(prepared[end])


def _occurrences(prepared: str, keyword: str, mode: int, found: list[Match]) -> None:
    start = prepared.find(keyword)
    while start >= 0:
        end = start + len(keyword)
        # A keyword inside a longer one found already ("charged" in "double charged") is
        # the same evidence, not more of it.
        if _fits(prepared, start, end, mode) and not any(
            m.start <= start and end <= m.end for m in found
        ):
            found.append(Match(keyword, start, end))
        start = prepared.find(keyword, start + 1)


def trie_regex(words: Iterable[str]) -> str:
    """One regex for many literal words, shaped as their prefix tree: the engine follows
    only the branch the text takes, and an optional tail makes it prefer the longest."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        branches = [
            re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return pattern(root)


class KeywordIndex:
    """Every keyword set of the taxonomy, searched in one pass over a text.

    All keywords form one prefix-tree regex inside a lookahead, so a single scan reports,
    at every position, the longest keyword starting there; the shorter keywords that are
    its prefixes are read off that match. Far faster than testing hundreds of keywords,
    or a plain regex alternation of them, against every text. Results equal searching each
    set on its own (``Keywords.find``), which the tests check."""

    def __init__(self, groups: dict[str, Keywords]) -> None:
        self.groups = tuple(groups)
        owners: dict[str, list[tuple[int, int]]] = {}
        for number, keywords in enumerate(groups.values()):
            for keyword, mode in keywords.literals:
                owners.setdefault(keyword, []).append((number, mode))
        # For each keyword, the keywords that are its prefixes (itself first, then shorter),
        # each with the groups that own it: everything a match of it reports.
        self._reports = {
            keyword: [
                (keyword[:size], owners[keyword[:size]])
                for size in range(len(keyword), 0, -1)
                if keyword[:size] in owners
            ]
            for keyword in owners
        }
        first_chars = re.escape("".join(sorted({k[0] for k in owners})))
        # The character class rejects most positions before the tree is tried.
        self._scan = (
            re.compile(f"(?=[{first_chars}])(?=({trie_regex(owners)}))") if owners else None
        )
        self._regexes = [
            (number, pattern)
            for number, keywords in enumerate(groups.values())
            for pattern in keywords.patterns
        ]

    def find_all(self, prepared: str) -> dict[str, list[Match]]:
        found: list[list[Match]] = [[] for _ in self.groups]
        for hit in self._scan.finditer(prepared) if self._scan else ():
            start = hit.start()
            for keyword, owners in self._reports[hit.group(1)]:
                end = start + len(keyword)
                for number, mode in owners:
                    if mode and not _fits(prepared, start, end, mode):
                        continue
                    group = found[number]
                    if group and any(m.start <= start and end <= m.end for m in group):
                        continue
                    group.append(Match(keyword, start, end))
        for number, pattern in self._regexes:
            found[number] += [
                Match(m.group(0), m.start(), m.end()) for m in pattern.finditer(prepared)
            ]
        return dict(zip(self.groups, found, strict=True))


@dataclass(frozen=True)
class Scan:
    """Keyword sets searched together: all literals in one pass of a KeywordIndex, then
    each regex on its own. A regex that starts with a literal is skipped through fast;
    joined into one alternation, these regexes take about twice as long, and the literals
    as a plain alternation with word-boundary checks (not a prefix tree) some forty times
    as long."""

    index: KeywordIndex
    regexes: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def of(cls, groups: dict[str, Keywords]) -> Scan:
        literal = {name: Keywords(en=k.en, words=k.words, zh=k.zh) for name, k in groups.items()}
        regexes = tuple(
            (name, re.compile(expression)) for name, k in groups.items() for expression in k.regex
        )
        return cls(KeywordIndex(literal), regexes)

    def find_all(self, prepared: str, skip: frozenset[str] = frozenset()) -> dict[str, list[Match]]:
        """Every group's matches; the regexes of the groups in ``skip`` are not run."""
        found = self.index.find_all(prepared)
        for name, pattern in self.regexes:
            if name in skip:
                continue
            found[name] += [
                Match(m.group(0), m.start(), m.end()) for m in pattern.finditer(prepared)
            ]
        return found


class OutcomeRules(BaseModel):
    """How the text asks for one outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    terms: Keywords = Field(
        default_factory=Keywords,
        description="The outcome's name: asked after a request in the same clause, or in an"
        " asking clause",
    )
    asks: Keywords = Field(default_factory=Keywords, description="Phrases that ask on their own")
    not_asks: Keywords = Field(
        default_factory=Keywords,
        description="Phrases that say it happened or wave it away: the clause does not ask",
    )

    @model_validator(mode="after")
    def _names_something(self) -> OutcomeRules:
        if not (self.terms.literals or self.terms.regex or self.asks.literals or self.asks.regex):
            raise ValueError("an outcome needs terms or asks")
        return self


# Group names in the scans: outcome k's ask phrases, terms and not_asks.
ASKS, TERMS, NOT_ASKS = "a", "t", "n"
REQUEST, NEGATION, MENTION, DESCRIBING = "request", "negation", "mention", "describing"
BREAK, ASKING_END = "break", "asking_end"


@dataclass(frozen=True)
class CompiledExpectations:
    """The expectation rules as the matcher runs them: ``items`` (every outcome's ask
    phrases and terms) over every text, the rest only over texts that name an outcome."""

    outcomes: tuple[ExpectedOutcome, ...]
    items: Scan
    cues: Scan


class ExpectationRules(BaseModel):
    """What the customer asks for, read from the text (docs/classifier.md, "The
    expectation"). ``outcomes`` are listed strongest first: a text that asks for two gets
    the one listed first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clause_breaks: Keywords = Field(
        default_factory=Keywords, description="What ends a clause: punctuation, 'but', 但是"
    )
    requests: Keywords = Field(
        default_factory=Keywords, description="Words that ask for an outcome named after them"
    )
    negation: Keywords = Field(
        default_factory=Keywords, description="Words that cancel a request after them"
    )
    describing: Keywords = Field(
        default_factory=Keywords,
        description="Right before an ask phrase, these make it describe what someone does"
        " ('tried to fix it'): it asks only as a term would",
    )
    asking_ends: Keywords = Field(
        default_factory=Keywords,
        description="A clause ending with one of these (or '?') asks for what it names",
    )
    mentions: Keywords = Field(
        default_factory=Keywords,
        description="Right after a term, a mention, not an ask ('refund policy', 退款政策)",
    )
    outcomes: dict[ExpectedOutcome, OutcomeRules] = Field(default_factory=dict)

    @cached_property
    def compiled(self) -> CompiledExpectations:
        items: dict[str, Keywords] = {}
        cues: dict[str, Keywords] = {
            REQUEST: self.requests,
            NEGATION: self.negation,
            MENTION: self.mentions,
            DESCRIBING: self.describing,
            BREAK: self.clause_breaks,
            ASKING_END: self.asking_ends,
        }
        for number, rules in enumerate(self.outcomes.values()):
            items[f"{ASKS}{number}"] = rules.asks
            items[f"{TERMS}{number}"] = rules.terms
            cues[f"{NOT_ASKS}{number}"] = rules.not_asks
        return CompiledExpectations(
            outcomes=tuple(self.outcomes), items=Scan.of(items), cues=Scan.of(cues)
        )


class CauseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    keywords: Keywords


class SignalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    weight: float = Field(gt=0)
    critical: bool = False
    max_sentiment: float = Field(
        default=1.01,
        ge=-1,
        le=1.01,
        description="The signal counts only while the feedback's sentiment is below this",
    )
    patterns: Keywords


class Negation(BaseModel):
    """Cues that cancel a signal match when the text right before it ends with one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)

    @cached_property
    def cues(self) -> tuple[str, ...]:
        return tuple(c.lower() for c in (*self.en, *self.zh))

    def negates(self, prepared: str, start: int) -> bool:
        before = prepared[max(0, start - 12) : start]
        return any(before.endswith(cue) for cue in self.cues)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    artifact: Path = Path("model/cause-model.npz")
    secondary_ratio: float = Field(default=0.35, gt=0, le=1)
    secondary_min: float = Field(default=0.05, ge=0, le=1)


class UrgencyThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    critical_at: float
    high_at: float
    medium_at: float
    negative_sentiment_medium: float = Field(ge=-1, le=0)
    public_reach_followers: int = Field(ge=0)
    tier_weight: dict[CustomerTier, float] = Field(
        default_factory=lambda: {CustomerTier.VIP: 1.0, CustomerTier.PREMIUM: 0.5}
    )
    public_reach_weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UrgencyThresholds:
        if not self.critical_at > self.high_at > self.medium_at > 0:
            raise ValueError("thresholds must satisfy critical_at > high_at > medium_at > 0")
        return self


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    review_threshold: float = Field(ge=0, le=1)
    model: ModelSpec = Field(default_factory=ModelSpec)
    root_causes: dict[RootCause, CauseSpec]
    signals: dict[str, SignalSpec]
    negation: Negation = Field(default_factory=Negation)
    urgency: UrgencyThresholds
    expectations: ExpectationRules = Field(default_factory=ExpectationRules)
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _other_is_fallback(self) -> Taxonomy:
        if OTHER in self.root_causes:
            raise ValueError("root_causes.other is the fallback and takes no keywords")
        return self

    @property
    def artifact_path(self) -> Path:
        """The model artifact, relative to the taxonomy file's folder."""
        if self.model.artifact.is_absolute() or self.source is None:
            return self.model.artifact
        return self.source.parent / self.model.artifact

    @cached_property
    def index(self) -> KeywordIndex:
        """All keyword sets in one index: ``cause:<name>`` and ``signal:<name>``."""
        groups = {f"cause:{c}": spec.keywords for c, spec in self.root_causes.items()}
        groups.update({f"signal:{name}": spec.patterns for name, spec in self.signals.items()})
        return KeywordIndex(groups)

    @cached_property
    def cause_groups(self) -> tuple[tuple[RootCause, str], ...]:
        """Each root cause with its group name in ``index``."""
        return tuple((cause, f"cause:{cause}") for cause in self.root_causes)

    @cached_property
    def signal_groups(self) -> tuple[tuple[str, SignalSpec, str], ...]:
        """Each signal with its spec and its group name in ``index``."""
        return tuple((name, spec, f"signal:{name}") for name, spec in self.signals.items())

    @cached_property
    def critical_signals(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.signals.items() if spec.critical)


def load_taxonomy(path: Path = DEFAULT_TAXONOMY) -> Taxonomy:
    return load_yaml(path, Taxonomy).model_copy(update={"source": path})
