"""A change to a case as its decisions describe it: the case as it will be, the events
it emits, the timed work it schedules and cancels, and the metrics it moves
(``Decision``), built on a copy of the case (``Draft``). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.followup.domain import Cancel, Case, DueItem, DueKind, Refusal, entry
from shared.contracts import EventData
from shared.envelope import Event, new_event

SOURCE = "/closeloop/followup"
SLA_TIMER_KINDS: tuple[DueKind, ...] = ("sla_warning", "sla_breach")

Metric = Literal[
    "cases_opened",
    "cases_resolved",
    "resolution_seconds",
    "cases_closed",
    "cases_reopened",
    "sla_warnings",
    "sla_breaches",
    "sla_met",
    "callbacks",
    "surveys_requested",
    "survey_reminders",
    "survey_answers",
    "satisfaction_ratio",
    "csat",
    "notifications",
    "promises",
    "silences",
]


@dataclass(frozen=True)
class Measure:
    """A metric a change moves once it is written: counted by ``value`` or, for a
    histogram, observed at ``value``."""

    metric: Metric
    labels: tuple[str, ...] = ()
    value: float = 1.0


@dataclass(frozen=True)
class Decision:
    """A change decided on one revision of a case (``base``; None for a case to create).

    ``case`` is the case as it will be (None when refused); ``events`` are queued in its
    outbox with the change; ``replies`` answer the consumed event (case.routed) and go
    out with its offset commit; ``schedule`` is added to the due queue before the write
    and ``cancel`` applied after it."""

    base: Case | None
    case: Case | None
    events: tuple[Event[Any], ...] = ()
    replies: tuple[Event[Any], ...] = ()
    schedule: tuple[DueItem, ...] = ()
    cancel: tuple[Cancel, ...] = ()
    measures: tuple[Measure, ...] = ()
    refusal: Refusal | None = None

    @property
    def writes(self) -> bool:
        """Whether there is anything to write (a refusal or a no-op writes nothing)."""
        if self.case is None:
            return False
        return self.base is None or bool(self.events) or self.case != self.base

    @classmethod
    def refuse(cls, case: Case | None, refusal: Refusal) -> Decision:
        return cls(base=case, case=None, refusal=refusal)

    @classmethod
    def nothing(
        cls,
        case: Case,
        *,
        schedule: tuple[DueItem, ...] = (),
        replies: tuple[Event[Any], ...] = (),
    ) -> Decision:
        """Nothing to change (a repeat, a timer no longer needed); a repeat may still make
        sure its timed work exists and say again what it said."""
        return cls(base=case, case=case, schedule=schedule, replies=replies)


@dataclass
class Draft:
    """The case being changed by one decision (a copy of it), and what the change emits,
    schedules, cancels and counts."""

    base: Case
    now: datetime
    case: Case = field(init=False)
    events: list[Event[Any]] = field(default_factory=list)
    replies: list[Event[Any]] = field(default_factory=list)
    schedule: list[DueItem] = field(default_factory=list)
    cancel: list[Cancel] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    fresh: bool = field(default=False, kw_only=True)
    """``base`` is a case just made, that nothing else holds: changed in place, not copied."""

    def __post_init__(self) -> None:
        self.case = self.base if self.fresh else self.base.model_copy(deep=True)

    def log(self, event: str, detail: str | None = None) -> None:
        self.case.timeline.append(entry(self.now, event, detail))

    def emit(
        self, data: EventData, cause: str, detail: str | None, *, logged_as: str | None = None
    ) -> None:
        """Emit ``data`` (its id derived from ``cause``) and note it on the timeline."""
        self.events.append(new_event(data, source=SOURCE, cause=cause, time=self.now))
        self.log(logged_as or data.event_name, detail)

    def count(self, metric: Metric, *labels: str, value: float = 1.0) -> None:
        self.measures.append(Measure(metric, labels, value))

    def decision(self) -> Decision:
        return Decision(
            base=self.base,
            case=self.case,
            events=tuple(self.events),
            replies=tuple(self.replies),
            schedule=tuple(self.schedule),
            cancel=tuple(self.cancel),
            measures=tuple(self.measures),
        )
