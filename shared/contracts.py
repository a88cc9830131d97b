"""Event contracts: the data every closeloop event carries.

Each event is a pydantic v2 model; the CloudEvents envelope around it (id, source,
type, time, subject) lives in ``shared.envelope``. Contracts change additively within
a version: new optional fields only. Consumers ignore fields they do not know.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

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


class RootCause(StrEnum):
    PRODUCT_QUALITY = "product_quality"
    DELIVERY = "delivery"
    BILLING = "billing"
    STAFF_ATTITUDE = "staff_attitude"
    AFTER_SALES = "after_sales"
    COMMUNICATION = "communication"
    POLICY = "policy"
    ENVIRONMENT = "environment"
    OTHER = "other"


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


class Contract(BaseModel):
    """Base of every contract: unknown fields are ignored, values are validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _customer_key(identity: str) -> str:
    return "c-" + hashlib.sha256(identity.encode()).hexdigest()[:24]


class Customer(Contract):
    id: str | None = Field(default=None, max_length=200, description="The business's own id")
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    handle: str | None = Field(default=None, max_length=200, description="Social or chat handle")
    name: str | None = Field(default=None, max_length=200)
    tier: CustomerTier = CustomerTier.STANDARD

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


class Attachment(Contract):
    name: str
    content_type: str = "application/octet-stream"
    size: int = Field(ge=0)


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
    metadata: dict[str, Any] = Field(default_factory=dict)
    related_case_id: str | None = Field(
        default=None, description="Set when the feedback continues an existing case"
    )


class Signal(Contract):
    """Something in the feedback that moved urgency, with the text that showed it."""

    name: str
    evidence: str
    weight: float = 1.0


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
