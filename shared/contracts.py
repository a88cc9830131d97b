"""Event contracts: the data every closeloop event carries.

Each event is a pydantic v2 model; the CloudEvents envelope around it (id, source,
type, time, subject) lives in ``shared.envelope``. Contracts change additively within
a version: new optional fields only. Consumers ignore fields they do not know.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

EVENT_TYPE_PREFIX = "closeloop."


# A timestamp with its offset, checked by pydantic itself (in compiled code, for every
# timestamp of every event). Its error, "Input should have timezone info", is shown to
# people as NAIVE_TIMESTAMP (see error_message).
UtcDatetime = AwareDatetime
NAIVE_TIMESTAMP = "timestamp must carry a time zone (e.g. 2026-01-31T09:00:00Z)"


def error_message(error: Mapping[str, Any]) -> str:
    """The message of one of pydantic's validation errors, as closeloop shows it."""
    if error.get("type") == "timezone_aware":
        return NAIVE_TIMESTAMP
    return str(error.get("msg", "invalid"))


class Topic(StrEnum):
    FEEDBACK_RECEIVED = "feedback.received"
    FEEDBACK_CLASSIFIED = "feedback.classified"
    CASE_ROUTED = "case.routed"
    CASE_LIFECYCLE = "case.lifecycle"
    REPORT_WEEKLY = "report.weekly"
    CUSTOMER_SIGNALS = "customer.signals"
    CUSTOMER_NOTIFY = "customer.notify"

    @property
    def dlq(self) -> str:
        return dlq_topic(self.value)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class Channel(StrEnum):
    WEB = "web"
    EMAIL = "email"
    PHONE = "phone"
    CHAT = "chat"
    SOCIAL = "social"
    SMS = "sms"
    APP_REVIEW = "app_review"


class CustomerTier(StrEnum):
    STANDARD = "standard"
    PREMIUM = "premium"
    VIP = "vip"


# --- root causes ------------------------------------------------------------------
# Root causes are data: the causes the classifier's taxonomy lists under root_causes, in
# its order, then "other", the fallback it never lists. Every service checks events and
# its own files against that one list, so a new cause takes the taxonomy, the training
# data and the router's routing.yaml, and no code. The file is read once, on first use.

TAXONOMY_FILE_VARIABLE = "CLOSELOOP_TAXONOMY_FILE"
DEFAULT_TAXONOMY_FILE = Path(__file__).parents[1] / "services" / "classifier" / "taxonomy.yaml"
OTHER = "other"


class TaxonomyFileError(RuntimeError):
    """The taxonomy cannot say which root causes there are: a fault of the deployment,
    never of an event (so not a ValueError, which would reject the event instead)."""


def taxonomy_file() -> Path:
    """The taxonomy whose root causes events may carry: ``CLOSELOOP_TAXONOMY_FILE``, by
    default the classifier's own (services/classifier/taxonomy.yaml)."""
    return Path(os.environ.get(TAXONOMY_FILE_VARIABLE) or DEFAULT_TAXONOMY_FILE)


@functools.cache
def _known_causes() -> tuple[tuple[str, ...], frozenset[str]]:
    path = taxonomy_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyFileError(f"{path}: {exc}") from exc
    causes = document.get("root_causes") if isinstance(document, dict) else None
    if not isinstance(causes, dict) or not all(isinstance(c, str) and c for c in causes):
        raise TaxonomyFileError(f"{path}: root_causes must map each root cause to its keywords")
    ordered = (*(c for c in causes if c != OTHER), OTHER)
    return ordered, frozenset(ordered)


def root_causes() -> tuple[str, ...]:
    """Every root cause, in the taxonomy's order, ``other`` last."""
    return _known_causes()[0]


def reload_root_causes() -> None:
    """Forget the root causes read so far: the next use reads the taxonomy again (for
    tests and tools that switch taxonomy files)."""
    _known_causes.cache_clear()


def check_root_cause(value: str) -> str:
    """``value`` when it is a root cause of the taxonomy, else a ValueError naming them."""
    if value not in _known_causes()[1]:
        raise ValueError(
            f"unknown root cause {value!r}: the taxonomy ({taxonomy_file()}) lists "
            + ", ".join(root_causes())
        )
    return value


# A string, one of root_causes(), checked wherever a contract or a policy file holds one.
RootCause = Annotated[str, AfterValidator(check_root_cause)]


class Urgency(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


URGENCIES = (Urgency.LOW, Urgency.MEDIUM, Urgency.HIGH, Urgency.CRITICAL)
PRIORITIES = (Priority.P1, Priority.P2, Priority.P3, Priority.P4)  # most urgent first


def urgency_rank(urgency: Urgency) -> int:
    """0 for low up to 3 for critical."""
    return URGENCIES.index(urgency)


def priority_rank(priority: Priority) -> int:
    """0 for P1 up to 3 for P4: a team queue serves the lowest rank first."""
    return PRIORITIES.index(priority)


def raise_priority(priority: Priority, steps: int = 1) -> Priority:
    """``steps`` higher (more urgent; negative: lower), within P1..P4."""
    return PRIORITIES[max(0, min(len(PRIORITIES) - 1, priority_rank(priority) - steps))]


def higher_priority(a: Priority, b: Priority) -> Priority:
    """The more urgent of two priorities."""
    return a if priority_rank(a) <= priority_rank(b) else b


class Contract(BaseModel):
    """Base of every contract: unknown fields are ignored, values are validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def check_time_zone(value: str) -> str:
    """``value`` when it names an IANA time zone, else a ValueError saying so."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)"
        ) from exc
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(check_time_zone)]


class ExpectedOutcome(StrEnum):
    """What the customer asks for."""

    REFUND = "refund"
    REPLACEMENT = "replacement"
    REPAIR = "repair"
    APOLOGY = "apology"
    EXPLANATION = "explanation"
    COMPENSATION = "compensation"
    OTHER = "other"


def _customer_key(identity: str) -> str:
    return "c-" + hashlib.sha256(identity.encode()).hexdigest()[:24]


class Customer(Contract):
    id: str | None = Field(default=None, max_length=200, description="The business's own id")
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    handle: str | None = Field(default=None, max_length=200, description="Social or chat handle")
    name: str | None = Field(default=None, max_length=200)
    tier: CustomerTier = CustomerTier.STANDARD
    time_zone: TimeZone | None = Field(
        default=None,
        description="IANA time zone (e.g. Asia/Shanghai): times told to the customer are in it",
    )

    @model_validator(mode="after")
    def _identified(self) -> Customer:
        if not (self.id or self.email or self.phone or self.handle):
            raise ValueError("customer needs at least one of id, email, phone or handle")
        return self

    @property
    def key(self) -> str:
        """A stable pseudonymous key: partitions one customer's events together and
        lets logs and metrics refer to the customer without personal data in clear."""
        # The first identity present, in this order; written out rather than looped over,
        # since every feedback reads it.
        if self.id:
            return _customer_key("id:" + self.id.strip())
        for kind, value in (("email", self.email), ("phone", self.phone), ("handle", self.handle)):
            if value:
                return _customer_key(f"{kind}:{value.strip().lower()}")
        raise AssertionError("validated customers always have an identity")


# --- what MongoDB can store ---------------------------------------------------------
# JSON can say more than BSON and MongoDB can hold: integers of any size, NaN (pydantic
# reads it), keys with NUL, ``$`` keys that come back from MongoDB as a DBRef or another
# operator document, any depth. Every event's feedback passes through the rule below when
# it is validated, whoever produced it and whenever (a replayed old event included), so
# a consumer can always store what it reads. Intake refuses most of these at its edge
# (docs/channels.md); this is the rule for everything that gets past an edge.

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Levels of objects and arrays in metadata, metadata itself the first. MongoDB stores
# 100 levels; the stores keep the feedback about six levels down.
MAX_METADATA_DEPTH = 32
_NO_LIMIT = sys.maxsize


def storable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` as MongoDB can store it and JSON can carry it, unchanged (the same
    object) when it already is. Integers beyond 64 bits become their decimal digits;
    NaN and infinities become null (as the event's JSON writes them); in keys, NUL and
    lone surrogates become U+FFFD, a leading ``$`` becomes U+FF04 (a fullwidth dollar)
    and keys that are not strings become strings; lone surrogates in strings become
    U+FFFD; objects and arrays below the 32nd level are kept as their JSON text."""
    if not metadata or _is_storable(metadata, 1):
        return metadata
    normalised: dict[str, Any] = _storable(metadata, 1, MAX_METADATA_DEPTH)
    return normalised


def _is_storable(value: Any, level: int) -> bool:
    # Checked before anything is copied: almost every feedback's metadata is storable.
    # Exact types first (every event's metadata passes here, in every consumer), then
    # their subclasses (str enums, BSON's Int64) and everything else.
    kind = type(value)
    if kind is str:
        return value.isascii() or _encodable(value)
    if kind is int:
        return bool(INT64_MIN <= value <= INT64_MAX)
    if kind is bool or value is None:
        return True
    if kind is dict:
        if level > MAX_METADATA_DEPTH:
            return False
        for key, item in value.items():
            if not (_is_storable_key(key) and _is_storable(item, level + 1)):
                return False
        return True
    if isinstance(value, str):
        return value.isascii() or _encodable(value)
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return _is_storable(dict(value), level)
    if isinstance(value, list | tuple):
        return level <= MAX_METADATA_DEPTH and all(_is_storable(item, level + 1) for item in value)
    return True  # datetimes and the like, from Python producers or BSON, are stored as they are


def _is_storable_key(key: Any) -> bool:
    return (
        type(key) is str
        and "\x00" not in key
        and key[:1] != "$"
        and (key.isascii() or _encodable(key))
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(value: Any, level: int, limit: int) -> Any:
    if isinstance(value, str):
        return value if value.isascii() or _encodable(value) else _without_surrogates(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict | list | tuple) and level > limit:
        return json.dumps(_storable(value, 1, _NO_LIMIT), ensure_ascii=False, default=str)
    if isinstance(value, dict):
        return {
            _storable_key(key): _storable(item, level + 1, limit) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_storable(item, level + 1, limit) for item in value]
    return value


def _storable_key(key: Any) -> str:
    text = _without_surrogates(key if isinstance(key, str) else str(key)).replace("\x00", "\ufffd")
    return "\uff04" + text[1:] if text.startswith("$") else text


def _without_surrogates(text: str) -> str:
    if text.isascii() or _encodable(text):
        return text
    # Through UTF-16: a high and low surrogate side by side become the character they
    # encode, a lone one becomes U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


Metadata = Annotated[dict[str, Any], AfterValidator(storable_metadata)]


class Attachment(Contract):
    name: str
    content_type: str = "application/octet-stream"
    size: int = Field(ge=0, description="Bytes; sizes beyond 2**63 - 1 are recorded as that")

    @field_validator("size")
    @classmethod
    def _storable_size(cls, value: int) -> int:
        return min(value, INT64_MAX)


class Feedback(Contract):
    """One piece of feedback, normalised from whatever channel it arrived on."""

    feedback_id: str
    channel: Channel
    external_id: str | None = None
    customer: Customer
    customer_key: str
    text: str
    subject: str | None = None
    language: str = "other"
    received_at: UtcDatetime
    ingested_at: UtcDatetime
    attachments: list[Attachment] = Field(default_factory=list)
    metadata: Metadata = Field(
        default_factory=dict, description="Channel-specific; storable (see storable_metadata)"
    )
    related_case_id: str | None = Field(
        default=None, description="Set when the feedback continues an existing case"
    )
    expected_outcome: ExpectedOutcome | None = Field(
        default=None, description="What the customer asked for, as the channel captured it"
    )
    expected_by: UtcDatetime | None = Field(
        default=None, description="By when the customer expects it, as the channel captured it"
    )


class Signal(Contract):
    """Something in the feedback that moved urgency, with the text that showed it."""

    name: str
    evidence: str
    weight: float = 1.0


ExpectationSource = Literal["customer", "inferred"]


class Expectation(Contract):
    """What the customer expects: said on the channel's form (``customer``) or read from
    the text by the classifier (``inferred``, with the words that showed it)."""

    outcome: ExpectedOutcome
    source: ExpectationSource
    evidence: str | None = Field(default=None, description="The words that showed it (inferred)")
    expected_by: UtcDatetime | None = None


class Classification(Contract):
    root_cause: RootCause
    secondary_cause: RootCause | None = None
    urgency: Urgency
    sentiment: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    signals: list[Signal] = Field(default_factory=list)
    needs_review: bool = False
    model_version: str
    reasons: list[str] = Field(default_factory=list)
    expectation: Expectation | None = Field(
        default=None, description="What the customer expects; None when nothing says"
    )


class Routing(Contract):
    priority: Priority
    team: str
    agent: str | None = None
    rule: str
    reason: str
    routed_at: UtcDatetime
    first_response_due: UtcDatetime
    resolution_due: UtcDatetime
    reroute_count: int = Field(
        default=0,
        description="How many times the case was routed again (reopen, escalation, breach)",
    )
    reroute_reason: str | None = Field(
        default=None, description="Why the case was routed again: reopened, escalated, sla_breached"
    )
    queued: bool = Field(
        default=False, description="No agent was free: the case waits in the team's queue"
    )


# --- event payloads ---------------------------------------------------------------


class EventData(Contract):
    """Base of every event payload; subclasses name their event and topic."""

    event_name: ClassVar[str]
    topic: ClassVar[Topic]

    def partition_key(self) -> str:
        raise NotImplementedError

    def subject(self) -> str:
        raise NotImplementedError


class FeedbackReceived(EventData):
    event_name: ClassVar[str] = "feedback.received"
    topic: ClassVar[Topic] = Topic.FEEDBACK_RECEIVED

    feedback: Feedback

    def partition_key(self) -> str:
        return self.feedback.customer_key

    def subject(self) -> str:
        return self.feedback.feedback_id


class FeedbackClassified(EventData):
    event_name: ClassVar[str] = "feedback.classified"
    topic: ClassVar[Topic] = Topic.FEEDBACK_CLASSIFIED

    feedback: Feedback
    classification: Classification

    def partition_key(self) -> str:
        return self.feedback.customer_key

    def subject(self) -> str:
        return self.feedback.feedback_id


class CaseRouted(EventData):
    event_name: ClassVar[str] = "case.routed"
    topic: ClassVar[Topic] = Topic.CASE_ROUTED

    case_id: str
    feedback: Feedback
    classification: Classification
    routing: Routing
    linked_to: str | None = Field(
        default=None, description="Open case this feedback was linked to instead of a new one"
    )

    def partition_key(self) -> str:
        return self.feedback.customer_key

    def subject(self) -> str:
        return self.case_id


class CaseEvent(EventData):
    """Base of every case.lifecycle event: keyed by case id."""

    topic: ClassVar[Topic] = Topic.CASE_LIFECYCLE

    case_id: str
    customer_key: str
    occurred_at: UtcDatetime

    def partition_key(self) -> str:
        return self.case_id

    def subject(self) -> str:
        return self.case_id


class CallbackScheduled(CaseEvent):
    event_name: ClassVar[str] = "callback.scheduled"
    callback_id: str
    due_at: UtcDatetime
    attempt: int = 1
    reason: str


class CallbackDue(CaseEvent):
    event_name: ClassVar[str] = "callback.due"
    callback_id: str
    due_at: UtcDatetime
    attempt: int = 1
    team: str | None = None
    agent: str | None = None


class CaseFirstResponse(CaseEvent):
    event_name: ClassVar[str] = "case.first_response"
    responded_by: str
    within_sla: bool


class CaseResolved(CaseEvent):
    event_name: ClassVar[str] = "case.resolved"
    resolved_by: str
    solution: str
    promise: str | None = None
    within_sla: bool


class SurveyRequested(CaseEvent):
    event_name: ClassVar[str] = "survey.requested"
    survey_id: str
    channel: Channel
    expires_at: UtcDatetime
    url: str | None = None
    reminder: bool = Field(default=False, description="A reminder of an unanswered survey")


SatisfactionVerdict = Literal["dissatisfied", "satisfied", "delighted"]


class SurveyAnswered(CaseEvent):
    event_name: ClassVar[str] = "survey.answered"
    survey_id: str
    csat: int = Field(ge=1, le=5)
    expected: int = Field(ge=1, le=5)
    perceived: int = Field(ge=1, le=5)
    ratio: float
    solved: bool
    verdict: SatisfactionVerdict
    comment: str | None = None
    expectation_met: bool | None = Field(
        default=None, description="Whether the customer got what they asked for, if asked"
    )


SlaKind = Literal["first_response", "resolution"]


class SlaWarning(CaseEvent):
    event_name: ClassVar[str] = "sla.warning"
    sla: SlaKind
    due_at: UtcDatetime


class SlaBreached(CaseEvent):
    event_name: ClassVar[str] = "sla.breached"
    sla: SlaKind
    due_at: UtcDatetime


class CaseReopened(CaseEvent):
    event_name: ClassVar[str] = "case.reopened"
    reason: str
    reopen_count: int


class CaseEscalated(CaseEvent):
    event_name: ClassVar[str] = "case.escalated"
    reason: str
    priority: Priority | None = None
    reopen_count: int | None = Field(
        default=None,
        description="Set when the escalation comes with a reopen: the same round as case.reopened",
    )


CaseOutcome = Literal["satisfied", "delighted", "no_response", "dissatisfied"]


class CaseClosed(CaseEvent):
    """Everything downstream (CRM, BI, quality) needs about a finished case."""

    event_name: ClassVar[str] = "case.closed"
    outcome: CaseOutcome
    feedback_id: str
    channel: Channel
    customer_tier: CustomerTier
    root_cause: RootCause
    urgency: Urgency
    priority: Priority
    team: str
    agent: str | None
    opened_at: UtcDatetime
    first_response_at: UtcDatetime | None
    resolved_at: UtcDatetime | None
    closed_at: UtcDatetime
    time_to_first_response_s: float | None
    time_to_resolve_s: float | None
    first_response_sla_met: bool | None
    resolution_sla_met: bool | None
    callbacks_made: int
    reopen_count: int
    csat: int | None
    expected: int | None
    perceived: int | None
    ratio: float | None
    expected_outcome: ExpectedOutcome | None = None
    expectation_met: bool | None = Field(
        default=None, description="The survey's answer: did the customer get what they asked for"
    )
    promises_made: int = 0
    promises_kept: int = 0
    promises_broken: int = 0
    promises_overdue: int = Field(
        default=0, description="Promises whose deadline passed with no outcome recorded in time"
    )
    promises_open: int = Field(default=0, description="Promises still without an outcome")


# --- promises ---------------------------------------------------------------------


class PromiseEvent(CaseEvent):
    """Base of the promise events: one promise an agent made to the customer."""

    promise_id: str
    what: str
    due_at: UtcDatetime
    made_by: str
    team: str
    agent: str | None = None


class PromiseMade(PromiseEvent):
    event_name: ClassVar[str] = "promise.made"
    due_in: str | None = Field(
        default=None, description="The deadline as the agent gave it, e.g. '3 working days'"
    )


class PromiseWarning(PromiseEvent):
    """The promise is due soon and has no outcome yet."""

    event_name: ClassVar[str] = "promise.warning"


class PromiseDue(PromiseEvent):
    """The promise's deadline has come: for the agent or the dialer to keep it now."""

    event_name: ClassVar[str] = "promise.due"


class PromiseKept(PromiseEvent):
    event_name: ClassVar[str] = "promise.kept"
    recorded_by: str
    late: bool = Field(description="Kept after its deadline")
    note: str | None = None


class PromiseBroken(PromiseEvent):
    """The agent recorded that the promise was not kept; the case is escalated."""

    event_name: ClassVar[str] = "promise.broken"
    recorded_by: str
    note: str | None = None


class PromiseOverdue(PromiseEvent):
    """The deadline passed by the policy's grace with no outcome; the case is escalated."""

    event_name: ClassVar[str] = "promise.overdue"


class CaseUpdateRequested(CaseEvent):
    """The customer has heard nothing for longer than the policy allows: the owner is
    asked for a progress update to send."""

    event_name: ClassVar[str] = "case.update_requested"
    team: str
    agent: str | None = None
    silent_since: UtcDatetime


# --- customer notifications ---------------------------------------------------------

NotificationKind = Literal["acknowledgement", "progress", "apology", "promise"]


class CustomerNotify(EventData):
    """A message for the customer, rendered in their language for their channel, for the
    channel integration to deliver (docs/events.md). Keyed by customer key, so one
    customer's messages stay in order."""

    event_name: ClassVar[str] = "customer.notify"
    topic: ClassVar[Topic] = Topic.CUSTOMER_NOTIFY

    notification_id: str
    case_id: str
    reference: str = Field(description="The case reference the customer is given")
    customer_key: str
    customer: Customer = Field(description="Who to deliver to (contact details)")
    channel: Channel
    reply_to: str | None = Field(
        default=None, description="The channel's id of the message answered (feedback external_id)"
    )
    language: str
    kind: NotificationKind
    template: str = Field(description="The template rendered: <kind>/<language>/<channel>")
    email_subject: str | None = Field(default=None, description="The subject line, for e-mail")
    text: str
    time_zone: str = Field(description="The time zone the times in the text are in")
    first_response_by: UtcDatetime | None = None
    resolution_by: UtcDatetime | None = None
    promise_id: str | None = None
    occurred_at: UtcDatetime

    def partition_key(self) -> str:
        return self.customer_key

    def subject(self) -> str:
        return self.case_id


class WeeklyReport(EventData):
    """insights' review of a finished week (Monday to Sunday, UTC), for mailers and BI:
    the summary figures of the cases opened that week (docs/insights.md), per root cause
    and per team, and the lessons recorded that week."""

    event_name: ClassVar[str] = "report.weekly"
    topic: ClassVar[Topic] = Topic.REPORT_WEEKLY

    week: str = Field(description="ISO week, e.g. 2026-W48")
    start: date = Field(description="Its Monday")
    end: date = Field(description="Its Sunday")
    total: dict[str, Any]
    by_root_cause: list[dict[str, Any]] = Field(default_factory=list)
    by_team: list[dict[str, Any]] = Field(default_factory=list)
    lessons: list[dict[str, Any]] = Field(default_factory=list)

    def partition_key(self) -> str:
        return self.week

    def subject(self) -> str:
        return self.week


class ScoreReason(Contract):
    """One part of a customer's health score and what it adds (negative: takes away)."""

    part: str = Field(description="The part's name in the loyalty policy")
    points: float = Field(description="What the part adds to the score, rounded to 0.1")
    reason: str = Field(description="In words, e.g. '-16.2: 2 delivery complaints ...'")


class CustomerSignal(EventData):
    """Base of the customer.signals events: insights' health score of a customer crossed
    a threshold of the loyalty policy (docs/loyalty.md). Keyed by customer key."""

    topic: ClassVar[Topic] = Topic.CUSTOMER_SIGNALS

    customer_key: str
    customer_tier: CustomerTier
    score: float = Field(ge=0, le=100, description="The health score, 0 (leaving) to 100")
    threshold: float = Field(description="The threshold it crossed")
    crossing: int = Field(
        ge=1,
        description="The customer's how-manieth crossing (both ways counted): later ones "
        "replace earlier ones, whatever order they arrive in",
    )
    reasons: list[ScoreReason] = Field(default_factory=list, description="Largest first")
    open_case_ids: list[str] = Field(default_factory=list)
    occurred_at: UtcDatetime

    def partition_key(self) -> str:
        return self.customer_key

    def subject(self) -> str:
        return self.customer_key


class CustomerAtRisk(CustomerSignal):
    """The score fell below the policy's ``at_risk_below``: a customer to win back."""

    event_name: ClassVar[str] = "customer.at_risk"


class CustomerRecovered(CustomerSignal):
    """The score of an at-risk customer rose past the (higher) ``recovered_above``."""

    event_name: ClassVar[str] = "customer.recovered"


EVENT_MODELS: dict[str, type[EventData]] = {
    model.event_name: model
    for model in (
        FeedbackReceived,
        FeedbackClassified,
        CaseRouted,
        CallbackScheduled,
        CallbackDue,
        CaseFirstResponse,
        CaseResolved,
        SurveyRequested,
        SurveyAnswered,
        SlaWarning,
        SlaBreached,
        CaseReopened,
        CaseEscalated,
        CaseClosed,
        PromiseMade,
        PromiseWarning,
        PromiseDue,
        PromiseKept,
        PromiseBroken,
        PromiseOverdue,
        CaseUpdateRequested,
        CustomerNotify,
        WeeklyReport,
        CustomerAtRisk,
        CustomerRecovered,
    )
}

EVENT_VERSION = "v1"


def event_type(name: str, version: str = EVENT_VERSION) -> str:
    """The CloudEvents ``type`` of an event: ``closeloop.<name>.<version>``."""
    return f"{EVENT_TYPE_PREFIX}{name}.{version}"


def parse_event_type(value: str) -> tuple[str, str]:
    """Split a CloudEvents ``type`` into (event name, version)."""
    if not value.startswith(EVENT_TYPE_PREFIX):
        raise ValueError(f"event type {value!r} is not a closeloop event")
    name, _, version = value[len(EVENT_TYPE_PREFIX) :].rpartition(".")
    if not name or not version.startswith("v"):
        raise ValueError(f"event type {value!r} has no version suffix")
    return name, version
