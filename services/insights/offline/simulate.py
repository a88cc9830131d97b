"""A simulator of customer histories whose churn process is known: data to fit and check
the customer health score (services/insights/loyalty.py) against a known answer.

``simulate(customers, seed, at)`` makes ``customers`` customers and, over the year before
the snapshot ``at``, their complaints: each a case whose events are the contract events
the router and followup publish (case.routed, then case.first_response, sla.breached,
case.resolved, survey.requested, survey.answered, case.reopened with case.escalated and
the router's re-route, case.closed), cut at ``at``: a case opened near the snapshot may
still be open. Then, for each customer, whether they leave within the outcome window
after ``at``, drawn from the churn process below.

Customers
    tier standard, premium or vip in the shares ``TIER_SHARES``; one language (zh or en,
    ``ZH_SHARE``); an e-mail ``customer-<seed>-<index>@example.com``, whose
    ``Customer.key`` is the customer key (the same form as real ones).
Complaints
    a Poisson number over ``HISTORY_DAYS`` (``COMPLAINTS_PER_YEAR`` by tier), opened at
    uniform times; root cause, urgency and channel drawn from the shares below; a short
    text from a few templates per cause and language; churn intent (a ``churn_intent``
    signal whose evidence is the sentence that says it) with ``CHURN_INTENT_CHANCE``.
Recovery, round by round
    the first response and the resolution each miss their deadline with the chances
    ``MISS_*`` (a miss publishes sla.breached at the deadline); the survey is answered
    with ``ANSWER_CHANCE``, the answer dissatisfied more often after a missed deadline;
    an answer that is dissatisfied or says the problem is not solved reopens and
    escalates the case and the router routes it again (one priority up, to the
    escalation team); after ``MAX_REOPENS`` reopens the customer stops answering. A
    satisfied or delighted answer closes the case, an unanswered survey expires and
    closes it with outcome no_response, as followup does.

The churn process (the truth a fit should find). The probability that the customer
leaves within ``OUTCOME_WINDOW_DAYS`` after ``at`` is::

    sigmoid(TRUE_INTERCEPT + TRUE_TIERS[tier]
            + sum over the customer's cases, over effects e of
              TRUE_EFFECTS[e].coefficient * count_e(case)
              * 0.5 ** (age / TRUE_EFFECTS[e].half_life_days))

where age is the time from the case's opening to ``at`` and ``count_e`` what had happened
to the case by ``at``: 1 per complaint; 1 more if of high or critical urgency; 1 per
sla.breached; 1 per reopen; 1 per escalation; 1 if the latest answer is dissatisfied or
not solved; 1 for churn intent; 1 if the case is still open (no decay); 1 for a good
recovery (no resolution deadline missed, the latest answer satisfied or delighted and
solved), which takes back most of a complaint's effect but not all of it (its
coefficient is below the complaint's in size and it fades at the same pace, so a
recovered complaint always leaves some risk behind).

The true coefficients and half-lives differ from loyalty.yaml's on purpose. In points (10
per unit of log-odds, negative: riskier), the truth and then the default: complaints -12
fading in 30 days (-8 in 90); severity -1 in 30 (-6 in 90); a missed deadline -12 in 20
(-5 in 60); a reopen -8 in 60 (-6 in 90); an escalation -1 in 60 (-4 in 90); a
dissatisfied answer -16 in 240 (-12 in 120); churn intent -22 in 240 (-15 in 120); an
open case -15 (-3); a good recovery +9 in 30 (+7 in 120); base 78 (75); premium +8 (+2),
vip +16 (+4). Fitting points has something to find; half-lives stay the policy's, so a
fit comes close to the truth, not onto it.

Simplifications, each of which leaves what the score reads intact: a breach does not
re-route the case (the router would); no callbacks are scheduled; a survey comment does
not come back as linked feedback; deadlines count plain hours, not business hours; an
at-risk customer's complaints are not routed to retention.

Pure and deterministic: customer ``i`` of seed ``s`` is drawn from
``numpy.random.default_rng([s, i])`` alone, so it is the same whatever the number of
customers; no clock, no global random state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.spec import SPECVERSION_V1_0
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from services.insights.offline.fitting import Outcome, auc, write_outcomes
from services.insights.policy import PartName
from shared.contracts import (
    EVENT_MODELS,
    EVENT_VERSION,
    CaseClosed,
    CaseEscalated,
    CaseEvent,
    CaseFirstResponse,
    CaseOutcome,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    Channel,
    Classification,
    Customer,
    CustomerTier,
    EventData,
    Feedback,
    Priority,
    RootCause,
    Routing,
    SatisfactionVerdict,
    Signal,
    SlaBreached,
    SlaKind,
    SurveyAnswered,
    SurveyRequested,
    Urgency,
    parse_event_type,
)
from shared.envelope import (
    DATA_CONTENT_TYPE,
    Event,
    derive_id,
    describe_validation_error,
    new_event,
)

DEFAULT_SEED: Final = 20261001
DEFAULT_AT: Final = datetime.fromisoformat("2026-10-01T00:00:00+00:00")
DEFAULT_CUSTOMERS: Final = 5_000
HISTORY_DAYS: Final = 365
OUTCOME_WINDOW_DAYS: Final = 90
CHURN_RATE_RANGE: Final = (0.08, 0.20)
"""Where the share of customers who leave falls, for any seed and 1,000 customers or more
(about 13% on average)."""
# Below this many days before the snapshot no case is opened: its routing would be after it.
LAST_OPENING_DAYS: Final = 0.01

ROUTER: Final = "/closeloop/router"
FOLLOWUP: Final = "/closeloop/followup"
EVENTS_FILE: Final = "events.jsonl"
OUTCOMES_FILE: Final = "outcomes.csv"


# --- the truth ------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    coefficient: float
    """Log-odds of leaving added per item when it is new."""
    half_life_days: float | None
    """Days after which it adds half; None: no decay."""


TRUE_INTERCEPT: Final = -2.8
"""Log-odds of leaving of a standard customer without complaints: about 6%."""
# Members who pay for a tier have more to lose by leaving: a far larger effect than the
# default policy's few points.
TRUE_TIERS: Final[Mapping[CustomerTier, float]] = {
    CustomerTier.STANDARD: 0.0,
    CustomerTier.PREMIUM: -0.8,
    CustomerTier.VIP: -1.6,
}
TRUE_EFFECTS: Final[Mapping[PartName, Effect]] = {
    "complaints": Effect(1.2, 30),
    "severe": Effect(0.1, 30),
    "deadlines_missed": Effect(1.2, 20),
    "reopened": Effect(0.8, 60),
    "escalated": Effect(0.1, 60),
    "dissatisfied": Effect(1.6, 240),
    "churn_intent": Effect(2.2, 240),
    "open_cases": Effect(1.5, None),
    # Three quarters of a complaint's effect, fading with it: some risk always stays.
    "recovered": Effect(-0.9, 30),
}


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, value))))


# --- the population -------------------------------------------------------------------

TIER_SHARES: Final[Mapping[CustomerTier, float]] = {
    CustomerTier.STANDARD: 0.70,
    CustomerTier.PREMIUM: 0.22,
    CustomerTier.VIP: 0.08,
}
# Customers who pay more buy more, and complain more often in absolute terms.
COMPLAINTS_PER_YEAR: Final[Mapping[CustomerTier, float]] = {
    CustomerTier.STANDARD: 1.6,
    CustomerTier.PREMIUM: 2.2,
    CustomerTier.VIP: 3.0,
}
ZH_SHARE: Final = 0.6
ROOT_CAUSES: Final[Mapping[RootCause, float]] = {
    "delivery": 0.28,
    "product_quality": 0.24,
    "billing": 0.14,
    "after_sales": 0.12,
    "staff_attitude": 0.08,
    "communication": 0.08,
    "policy": 0.04,
    "other": 0.02,
}
URGENCIES: Final[Mapping[Urgency, float]] = {
    Urgency.LOW: 0.25,
    Urgency.MEDIUM: 0.45,
    Urgency.HIGH: 0.22,
    Urgency.CRITICAL: 0.08,
}
CHANNELS: Final[Mapping[Channel, float]] = {
    Channel.WEB: 0.25,
    Channel.EMAIL: 0.25,
    Channel.CHAT: 0.20,
    Channel.PHONE: 0.15,
    Channel.SOCIAL: 0.08,
    Channel.SMS: 0.04,
    Channel.APP_REVIEW: 0.03,
}
CHURN_INTENT_CHANCE: Final[Mapping[bool, float]] = {False: 0.05, True: 0.12}
"""By severity (high or critical urgency)."""
MISS_FIRST_RESPONSE: Final = 0.12
MISS_RESOLUTION: Final[Mapping[bool, float]] = {False: 0.15, True: 0.40}
"""By whether the first response of the round was late."""
MISS_AFTER_REROUTE: Final = 0.08
"""The escalation team's chance of missing each deadline."""
ANSWER_CHANCE: Final[Mapping[bool, float]] = {False: 0.60, True: 0.45}
"""By whether the case was reopened before."""
DISSATISFIED_BASE: Final = 0.15
DISSATISFIED_PER_MISS: Final = 0.20
DISSATISFIED_IF_SEVERE: Final = 0.10
DISSATISFIED_AFTER_REOPEN: Final = 0.35
DELIGHTED_SHARE: Final = 0.30
"""Of the answers that are not dissatisfied."""
SOLVED_CHANCE: Final[Mapping[bool, float]] = {False: 0.96, True: 0.50}
"""By whether the answer is dissatisfied."""
MAX_REOPENS: Final = 2

# The router's defaults (services/router/routing.yaml), in plain hours.
SLA_HOURS: Final[Mapping[Priority, tuple[float, float]]] = {
    Priority.P1: (1, 8),
    Priority.P2: (4, 24),
    Priority.P3: (8, 72),
    Priority.P4: (24, 120),
}
PRIORITY_MATRIX: Final[Mapping[Urgency, Mapping[CustomerTier, Priority]]] = {
    Urgency.CRITICAL: dict.fromkeys(CustomerTier, Priority.P1),
    Urgency.HIGH: {
        CustomerTier.STANDARD: Priority.P2,
        CustomerTier.PREMIUM: Priority.P2,
        CustomerTier.VIP: Priority.P1,
    },
    Urgency.MEDIUM: {
        CustomerTier.STANDARD: Priority.P3,
        CustomerTier.PREMIUM: Priority.P3,
        CustomerTier.VIP: Priority.P2,
    },
    Urgency.LOW: {
        CustomerTier.STANDARD: Priority.P4,
        CustomerTier.PREMIUM: Priority.P4,
        CustomerTier.VIP: Priority.P3,
    },
}
PUBLIC_CHANNELS: Final = frozenset({Channel.SOCIAL, Channel.APP_REVIEW})
RULES: Final[Mapping[RootCause, tuple[str, str]]] = {
    "product_quality": ("product-quality", "quality"),
    "delivery": ("delivery", "logistics"),
    "billing": ("billing", "billing"),
    "policy": ("billing", "billing"),
    "staff_attitude": ("service", "service"),
    "after_sales": ("service", "service"),
    "communication": ("service", "service"),
    "environment": ("service", "service"),
    "other": ("fallback", "triage"),
}
ESCALATIONS: Final = "escalations"
AGENTS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    "quality": {"zh": ("agent-li-na",), "en": ("agent-li-na", "agent-sam-okafor")},
    "logistics": {"zh": ("agent-wang-fang", "agent-emma-jones"), "en": ("agent-emma-jones",)},
    "billing": {"zh": ("agent-zhang-wei",), "en": ("agent-zhang-wei", "agent-maria-garcia")},
    "service": {
        "zh": ("agent-chen-jie", "agent-sun-li"),
        "en": ("agent-tom-baker", "agent-sun-li"),
    },
    "escalations": {"zh": ("agent-liu-yang",), "en": ("agent-liu-yang", "agent-priya-shah")},
    "triage": {"zh": ("agent-zhao-min",), "en": ("agent-zhao-min",)},
}
# followup's satisfaction check (services/followup/policy.yaml).
SATISFIED_RATIO: Final = 0.9
DELIGHTED_RATIO: Final = 1.2
DISSATISFIED_CSAT: Final = 2
SURVEY_REMINDER: Final = timedelta(hours=24)
SURVEY_EXPIRY: Final = timedelta(hours=72)

# --- texts ------------------------------------------------------------------------------

TEXTS: Final[Mapping[str, Mapping[RootCause, tuple[str, ...]]]] = {
    "en": {
        "delivery": (
            "My order {order} still hasn't arrived, it was due {days} days ago.",
            "The parcel for order {order} was left outside in the rain and everything is wet.",
        ),
        "product_quality": (
            "The {item} I bought stopped working after {days} days.",
            "The {item} arrived with a cracked casing and a missing part.",
        ),
        "billing": (
            "I was charged twice for order {order}.",
            "My refund for order {order} still has not come through after {days} days.",
        ),
        "after_sales": (
            "Nobody tells me anything about the repair of my {item}.",
            "The warranty repair of my {item} has taken {days} days so far.",
        ),
        "staff_attitude": (
            "The agent on the phone was rude and hung up on me.",
            "The shop assistant ignored me and laughed at my question.",
        ),
        "communication": (
            "I was promised a call back {days} days ago and nobody called.",
            "Every agent tells me something different about order {order}.",
        ),
        "policy": (
            "You refused to take back the {item} although it is within the 30 days.",
            "Why do I have to pay for the return of a faulty {item}?",
        ),
        "other": ("Your website logs me out every time I try to pay.",),
    },
    "zh": {
        "delivery": (
            "订单{order}已经晚了{days}天还没送到。",
            "快递把订单{order}的包裹放在门外淋雨，东西全湿了。",
        ),
        "product_quality": (
            "买的{item}用了{days}天就坏了。",
            "收到的{item}外壳是裂的，还少了零件。",
        ),
        "billing": (
            "订单{order}被重复扣款了。",
            "订单{order}的退款{days}天了还没到账。",
        ),
        "after_sales": (
            "{item}送修以后一直没人告诉我进度。",
            "{item}保修维修已经{days}天了。",
        ),
        "staff_attitude": (
            "客服态度很差，直接挂了我的电话。",
            "店员对我爱理不理，还嘲笑我的问题。",
        ),
        "communication": (
            "说好{days}天前给我回电话，到现在没人联系。",
            "每个客服对订单{order}的说法都不一样。",
        ),
        "policy": (
            "{item}还在30天内却不给退货。",
            "质量有问题的{item}退货为什么要我付运费？",
        ),
        "other": ("网站每次付款都把我退出登录。",),
    },
}
ITEMS: Final[Mapping[str, tuple[str, ...]]] = {
    "en": ("phone", "vacuum cleaner", "coffee machine", "headset", "kettle"),
    "zh": ("手机", "吸尘器", "咖啡机", "耳机", "水壶"),
}
# Sentences the classifier's churn_intent patterns recognise (services/classifier/taxonomy.yaml).
CHURN_PHRASES: Final[Mapping[str, tuple[str, ...]]] = {
    "en": (
        "I will never buy from you again.",
        "I'm cancelling my account.",
        "I'm switching to another shop.",
    ),
    "zh": ("再也不买了！", "我要销户。", "以后换别家了。"),
}


# --- the result -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedOutcome:
    customer_key: str
    churned: bool
    when: datetime
    true_probability: float
    tier: CustomerTier
    cases: int

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.customer_key, self.churned, self.when)


@dataclass(frozen=True)
class Simulation:
    seed: int
    at: datetime
    events: list[Event[Any]]
    outcomes: list[SimulatedOutcome]

    @property
    def cases(self) -> int:
        return sum(outcome.cases for outcome in self.outcomes)

    @property
    def churn_rate(self) -> float:
        return sum(o.churned for o in self.outcomes) / len(self.outcomes)

    def outcome_rows(self) -> list[Outcome]:
        return [o.outcome for o in self.outcomes]

    def oracle_auc(self) -> float:
        """The AUC of the true probabilities: what no score of these histories can beat,
        except by the luck of the draw."""
        return auc([o.churned for o in self.outcomes], [o.true_probability for o in self.outcomes])


def simulate(
    customers: int = DEFAULT_CUSTOMERS, seed: int = DEFAULT_SEED, at: datetime = DEFAULT_AT
) -> Simulation:
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if at.tzinfo is None:
        raise ValueError("at must carry a time zone")
    events: list[Event[Any]] = []
    outcomes: list[SimulatedOutcome] = []
    for index in range(customers):
        customer_events, outcome = _customer(seed, index, at)
        events += customer_events
        outcomes.append(outcome)
    return Simulation(seed=seed, at=at, events=events, outcomes=outcomes)


# --- one customer -----------------------------------------------------------------------

K = TypeVar("K")


def _pick(rng: np.random.Generator, shares: Mapping[K, float]) -> K:
    keys = list(shares)
    weights = np.fromiter(shares.values(), dtype=float)
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]


def _one_of(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _chance(rng: np.random.Generator, probability: float) -> bool:
    return bool(rng.random() < probability)


def _later(at: datetime, hours: float) -> datetime:
    # Whole seconds: the events read like real ones, and JSON round-trips them exactly.
    return at + timedelta(seconds=round(hours * 3600))


def _customer(seed: int, index: int, at: datetime) -> tuple[list[Event[Any]], SimulatedOutcome]:
    rng = np.random.default_rng([seed, index])
    tier = _pick(rng, TIER_SHARES)
    language = "zh" if _chance(rng, ZH_SHARE) else "en"
    customer = Customer(email=f"customer-{seed}-{index:06d}@example.com", tier=tier)
    count = int(rng.poisson(COMPLAINTS_PER_YEAR[tier] * HISTORY_DAYS / 365))
    ages = np.sort(rng.uniform(LAST_OPENING_DAYS, HISTORY_DAYS, size=count))[::-1]
    events: list[Event[Any]] = []
    logit = TRUE_INTERCEPT + TRUE_TIERS[tier]
    for number, age in enumerate(ages):
        opened = at - timedelta(seconds=round(float(age) * 86_400))
        story = _Case(rng, seed, index, number, customer, language, opened, at)
        story.run()
        events += story.events()
        logit += story.truth.effect(at)
    probability = sigmoid(logit)
    churned = _chance(rng, probability)
    outcome = SimulatedOutcome(customer.key, churned, at, probability, tier, count)
    return events, outcome


@dataclass
class _Truth:
    """What had happened to one case by the snapshot: what the churn process counts."""

    opened: datetime
    severe: bool
    churn_intent: bool
    deadlines_missed: int = 0
    resolution_missed: bool = False
    resolved: bool = False
    reopens: int = 0
    escalations: int = 0
    answer: tuple[SatisfactionVerdict, bool] | None = None
    closed: bool = False

    def counts(self) -> dict[PartName, float]:
        unhappy = self.answer is not None and (
            self.answer[0] == "dissatisfied" or not self.answer[1]
        )
        recovered = (
            self.resolved
            and not self.resolution_missed
            and self.answer is not None
            and self.answer[0] != "dissatisfied"
            and self.answer[1]
        )
        return {
            "complaints": 1.0,
            "severe": float(self.severe),
            "deadlines_missed": float(self.deadlines_missed),
            "reopened": float(self.reopens),
            "escalated": float(self.escalations),
            "dissatisfied": float(unhappy),
            "churn_intent": float(self.churn_intent),
            "open_cases": float(not self.closed),
            "recovered": float(recovered),
        }

    def effect(self, at: datetime) -> float:
        days = (at - self.opened).total_seconds() / 86_400
        total = 0.0
        for name, count in self.counts().items():
            true = TRUE_EFFECTS[name]
            weight = 1.0 if true.half_life_days is None else 0.5 ** (days / true.half_life_days)
            total += true.coefficient * count * weight
        return total


@dataclass(frozen=True)
class _Answer:
    csat: int
    expected: int
    perceived: int
    ratio: float
    verdict: SatisfactionVerdict
    solved: bool

    @property
    def closes(self) -> bool:
        return self.solved and self.verdict != "dissatisfied"


def _judge(csat: int, expected: int, perceived: int) -> tuple[float, SatisfactionVerdict]:
    """followup's verdict (services/followup/domain.py judge_satisfaction)."""
    ratio = round(perceived / expected, 3)
    if ratio < SATISFIED_RATIO or csat <= DISSATISFIED_CSAT:
        return ratio, "dissatisfied"
    if ratio >= DELIGHTED_RATIO:
        return ratio, "delighted"
    return ratio, "satisfied"


# (expected, perceived) pairs and the CSATs that go with each verdict.
_PAIRS: Final[Mapping[SatisfactionVerdict, tuple[tuple[int, int], ...]]] = {
    verdict: tuple(
        (e, p)
        for e in range(2, 6)
        for p in range(1, 6)
        if _judge(5 if verdict != "dissatisfied" else 1, e, p)[1] == verdict
        and (verdict != "dissatisfied" or p / e < SATISFIED_RATIO)
    )
    for verdict in ("dissatisfied", "satisfied", "delighted")
}
_CSATS: Final[Mapping[SatisfactionVerdict, tuple[int, ...]]] = {
    "dissatisfied": (1, 2, 3),
    "satisfied": (3, 4, 5),
    "delighted": (4, 5),
}


class _Case:
    """One complaint's story, told as its events, cut at the snapshot."""

    def __init__(
        self,
        rng: np.random.Generator,
        seed: int,
        index: int,
        number: int,
        customer: Customer,
        language: str,
        opened: datetime,
        at: datetime,
    ) -> None:
        self.rng, self.seed, self.index, self.number = rng, seed, index, number
        self.customer, self.language, self.opened, self.at = customer, language, opened, at
        self.cause = _pick(rng, ROOT_CAUSES)
        self.urgency = _pick(rng, URGENCIES)
        self.channel = _pick(rng, CHANNELS)
        severe = self.urgency in (Urgency.HIGH, Urgency.CRITICAL)
        churn_intent = _chance(rng, CHURN_INTENT_CHANCE[severe])
        self.feedback, churn_phrase = self._feedback(churn_intent)
        self.case_id = derive_id("case", self.feedback.feedback_id)
        self.classification = self._classification(churn_phrase)
        self.truth = _Truth(opened, severe, churn_intent)
        self.first_response_at: datetime | None = None
        self.resolved_at: datetime | None = None
        self.missed: set[SlaKind] = set()
        self.last_answer: _Answer | None = None
        self._events: list[Event[Any]] = []
        self.routing = self._first_routing()
        self.opened_at = self.routing.routed_at

    # --- what the customer wrote ----------------------------------------------------

    def _feedback(self, churn_intent: bool) -> tuple[Feedback, str | None]:
        rng, language = self.rng, self.language
        template = _one_of(rng, TEXTS[language][self.cause])
        text = template.format(
            order=f"{int(rng.integers(100_000, 999_999))}",
            days=int(rng.integers(2, 15)),
            item=_one_of(rng, ITEMS[language]),
        )
        phrase = _one_of(rng, CHURN_PHRASES[language]) if churn_intent else None
        if phrase is not None:
            text = f"{text} {phrase}" if language == "en" else text + phrase
        external_id = f"sim-{self.seed}-{self.index}-{self.number}"
        feedback = Feedback(
            feedback_id=derive_id("feedback", self.channel.value, "external", external_id),
            channel=self.channel,
            external_id=external_id,
            customer=self.customer,
            customer_key=self.customer.key,
            text=text,
            language=language,
            received_at=self.opened,
            ingested_at=_later(self.opened, 1 / 3600),
            metadata={"simulated": True, "seed": self.seed},
        )
        return feedback, phrase

    def _classification(self, churn_phrase: str | None) -> Classification:
        rng = self.rng
        signals = (
            [] if churn_phrase is None else [Signal(name="churn_intent", evidence=churn_phrase)]
        )
        return Classification(
            root_cause=self.cause,
            urgency=self.urgency,
            sentiment=round(float(rng.uniform(-0.95, -0.2)), 3),
            confidence=round(float(rng.uniform(0.55, 0.95)), 3),
            signals=signals,
            model_version="simulator-1",
            reasons=[f"simulated {self.cause} complaint"],
        )

    # --- routing --------------------------------------------------------------------

    def _first_routing(self) -> Routing:
        tier = self.customer.tier
        priority = PRIORITY_MATRIX[self.urgency][tier]
        if self.channel in PUBLIC_CHANNELS:
            priority = _raised(priority)
        if self.urgency is Urgency.CRITICAL:
            rule, team = "critical-to-escalations", ESCALATIONS
        else:
            rule, team = RULES[self.cause]
        routed_at = _later(self.opened, float(self.rng.uniform(5, 120)) / 3600)
        return self._routing(priority, team, rule, f"rule {rule}", routed_at, 0)

    def _routing(
        self, priority: Priority, team: str, rule: str, reason: str, at: datetime, count: int
    ) -> Routing:
        first, resolution = SLA_HOURS[priority]
        agent = _one_of(self.rng, AGENTS[team][self.language])
        return Routing(
            priority=priority,
            team=team,
            agent=agent,
            rule=rule,
            reason=f"{reason}; agent {agent}; first response within {first:g} h, "
            f"resolution within {resolution:g} h",
            routed_at=at,
            first_response_due=_later(at, first),
            resolution_due=_later(at, resolution),
            reroute_count=count,
            reroute_reason="reopened" if count else None,
        )

    def _routed(self) -> None:
        routed = CaseRouted(
            case_id=self.case_id,
            feedback=self.feedback,
            classification=self.classification,
            routing=self.routing,
        )
        key = "route" if self.routing.reroute_count == 0 else f"reopen:{self.routing.reroute_count}"
        self._emit(routed, ROUTER, f"{self.case_id}:{key}", self.routing.routed_at)

    # --- the lifecycle --------------------------------------------------------------

    def run(self) -> None:
        self._routed()
        for round_ in range(MAX_REOPENS + 1):
            answer_at = self._round(round_)
            if answer_at is None:
                return
            if not self._reopen(round_ + 1, answer_at):
                return

    def _round(self, round_: int) -> datetime | None:
        """Respond, resolve, survey: the time of a reopening answer, else None."""
        rng, routing = self.rng, self.routing
        first_hours, resolution_hours = SLA_HOURS[routing.priority]
        miss_first = MISS_AFTER_REROUTE if round_ else MISS_FIRST_RESPONSE
        if _chance(rng, miss_first):
            self._breach("first_response", routing.first_response_due, round_)
            responded = _later(
                routing.first_response_due, float(rng.exponential(first_hours / 2)) + 0.05
            )
        else:
            responded = _later(routing.routed_at, float(rng.uniform(0.05, 0.95)) * first_hours)
        self._first_response(responded, round_)
        late_first = responded > routing.first_response_due
        miss_resolution = MISS_AFTER_REROUTE if round_ else MISS_RESOLUTION[late_first]
        if responded >= routing.resolution_due or _chance(rng, miss_resolution):
            self._breach("resolution", routing.resolution_due, round_)
            resolved = _later(
                max(routing.resolution_due, responded),
                float(rng.exponential(resolution_hours / 2)) + 0.1,
            )
        else:
            window = (routing.resolution_due - responded).total_seconds() / 3600
            resolved = _later(responded, float(rng.uniform(0.1, 0.9)) * window)
        self._resolved(resolved, round_)
        return self._survey(resolved, round_)

    def _breach(self, kind: SlaKind, due: datetime, round_: int) -> None:
        self.missed.add(kind)
        data = SlaBreached(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=due,
            sla=kind,
            due_at=due,
        )
        if self._emit(data, FOLLOWUP, f"{self.case_id}:sla_breached:{kind}:{round_}", due):
            self.truth.deadlines_missed += 1
            self.truth.resolution_missed |= kind == "resolution"

    def _first_response(self, at: datetime, round_: int) -> None:
        data = CaseFirstResponse(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            responded_by=self.routing.agent or "",
            within_sla=at <= self.routing.first_response_due,
        )
        if self._emit(data, FOLLOWUP, f"{self.case_id}:first_response:{round_}", at):
            self.first_response_at = self.first_response_at or at

    def _resolved(self, at: datetime, round_: int) -> None:
        data = CaseResolved(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            resolved_by=self.routing.agent or "",
            solution="replaced" if self.cause == "product_quality" else "explained",
            within_sla=at <= self.routing.resolution_due,
        )
        if self._emit(data, FOLLOWUP, f"{self.case_id}:resolve:{round_}", at):
            self.resolved_at = at
            self.truth.resolved = True

    def _survey(self, resolved: datetime, round_: int) -> datetime | None:
        rng = self.rng
        survey_id = derive_id("survey", self.case_id, str(round_))
        expires = resolved + SURVEY_EXPIRY
        self._survey_requested(survey_id, round_, resolved, expires, reminder=False)
        answered = _chance(rng, ANSWER_CHANCE[round_ > 0])
        answer = self._answer(round_) if answered else None
        if answer is not None and not answer.closes and round_ >= MAX_REOPENS:
            answer = None  # the customer gave up: they stop answering
        answer_at = _later(resolved, float(rng.uniform(0.5, 48))) if answer else None
        if answer_at is None or answer_at > resolved + SURVEY_REMINDER:
            reminded = resolved + SURVEY_REMINDER
            self._survey_requested(survey_id, round_, reminded, expires, reminder=True)
        if answer is None or answer_at is None:
            self.last_answer = None
            self._closed("no_response", expires)
            return None
        self._answered(survey_id, answer, answer_at)
        if answer.closes:
            self._closed(answer.verdict, answer_at)
            return None
        return answer_at

    def _answer(self, round_: int) -> _Answer:
        rng = self.rng
        if round_:
            unhappy = DISSATISFIED_AFTER_REOPEN
        else:
            unhappy = DISSATISFIED_BASE + DISSATISFIED_PER_MISS * len(self.missed)
            unhappy += DISSATISFIED_IF_SEVERE if self.truth.severe else 0.0
        verdict: SatisfactionVerdict
        if _chance(rng, min(unhappy, 0.85)):
            verdict = "dissatisfied"
        else:
            verdict = "delighted" if _chance(rng, DELIGHTED_SHARE) else "satisfied"
        pairs = _PAIRS[verdict]
        expected, perceived = pairs[int(rng.integers(len(pairs)))]
        csats = _CSATS[verdict]
        csat = csats[int(rng.integers(len(csats)))]
        ratio, judged = _judge(csat, expected, perceived)
        assert judged == verdict  # _PAIRS and _CSATS agree with followup's rule
        solved = _chance(rng, SOLVED_CHANCE[verdict == "dissatisfied"])
        return _Answer(csat, expected, perceived, ratio, verdict, solved)

    def _survey_requested(
        self, survey_id: str, round_: int, at: datetime, expires: datetime, *, reminder: bool
    ) -> None:
        data = SurveyRequested(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            survey_id=survey_id,
            channel=self.channel,
            expires_at=expires,
            reminder=reminder,
        )
        cause = f"{survey_id}:reminder" if reminder else f"{self.case_id}:survey:{round_}"
        self._emit(data, FOLLOWUP, cause, at)

    def _answered(self, survey_id: str, answer: _Answer, at: datetime) -> None:
        data = SurveyAnswered(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            survey_id=survey_id,
            csat=answer.csat,
            expected=answer.expected,
            perceived=answer.perceived,
            ratio=answer.ratio,
            solved=answer.solved,
            verdict=answer.verdict,
        )
        if self._emit(data, FOLLOWUP, f"{survey_id}:answered", at):
            self.truth.answer = (answer.verdict, answer.solved)
        self.last_answer = answer

    def _reopen(self, count: int, at: datetime) -> bool:
        """Reopen, escalate and route again; False when that is after the snapshot."""
        answer = self.last_answer
        assert answer is not None
        reason = "problem not solved" if not answer.solved else f"customer {answer.verdict}"
        reopened = CaseReopened(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            reason=reason,
            reopen_count=count,
        )
        if not self._emit(reopened, FOLLOWUP, f"{self.case_id}:reopen:{count}", at):
            return False
        self.truth.reopens = count
        escalated = CaseEscalated(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            reason=reason,
            priority=_raised(self.routing.priority),
            reopen_count=count,
        )
        self._emit(escalated, FOLLOWUP, f"{self.case_id}:escalate:{count}", at)
        self.truth.escalations = count
        routed_at = _later(at, float(self.rng.uniform(30, 300)) / 3600)
        reason = f"reopened (round {count}: {reason}); team {self.routing.team} escalates"
        self.routing = self._routing(
            _raised(self.routing.priority),
            ESCALATIONS,
            "reroute:reopened",
            reason,
            routed_at,
            count,
        )
        self._routed()
        return True

    def _closed(self, outcome: CaseOutcome, at: datetime) -> None:
        opened_at = self.opened_at
        answer = self.last_answer
        data = CaseClosed(
            case_id=self.case_id,
            customer_key=self.customer.key,
            occurred_at=at,
            outcome=outcome,
            feedback_id=self.feedback.feedback_id,
            channel=self.channel,
            customer_tier=self.customer.tier,
            root_cause=self.cause,
            urgency=self.urgency,
            priority=self.routing.priority,
            team=self.routing.team,
            agent=self.routing.agent,
            opened_at=opened_at,
            first_response_at=self.first_response_at,
            resolved_at=self.resolved_at,
            closed_at=at,
            time_to_first_response_s=_seconds(opened_at, self.first_response_at),
            time_to_resolve_s=_seconds(opened_at, self.resolved_at),
            first_response_sla_met="first_response" not in self.missed,
            resolution_sla_met="resolution" not in self.missed,
            callbacks_made=0,
            reopen_count=self.truth.reopens,
            # Of the last survey, as followup's summary gives them: None when it expired.
            csat=answer.csat if answer else None,
            expected=answer.expected if answer else None,
            perceived=answer.perceived if answer else None,
            ratio=answer.ratio if answer else None,
        )
        if self._emit(data, FOLLOWUP, f"{self.case_id}:close", at):
            self.truth.closed = True

    def _emit(self, data: EventData, source: str, cause: str, at: datetime) -> bool:
        """Publish ``data`` if it happens by the snapshot; True when it does."""
        if at > self.at:
            return False
        self._events.append(new_event(data, source=source, cause=cause, time=at))
        return True

    def events(self) -> list[Event[Any]]:
        """case.routed first, then the lifecycle by time; at one time, as published."""
        routed, lifecycle = self._events[0], self._events[1:]
        return [routed, *sorted(lifecycle, key=_occurred_at)]


def _occurred_at(event: Event[Any]) -> datetime:
    data = event.data
    return data.occurred_at if isinstance(data, CaseEvent) else data.routing.routed_at


def _raised(priority: Priority) -> Priority:
    order = list(Priority)
    return order[max(0, order.index(priority) - 1)]


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else round((end - start).total_seconds(), 3)


# --- files ------------------------------------------------------------------------------

_JSON_FORMAT = JSONFormat()


class EventsFileError(ValueError):
    """A line of an events file that is not a closeloop event; names the line."""


def event_line(event: Event[Any]) -> str:
    """One event as a CloudEvents structured-mode JSON object (specversion, id, source,
    type, time, subject, datacontenttype, data), written by the ``cloudevents`` package:
    the form of every line of an events file."""
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION_V1_0,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "subject": event.subject,
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    cloud_event = CloudEvent(attributes=attributes, data=event.data.model_dump(mode="json"))
    return _JSON_FORMAT.write(cloud_event).decode("utf-8")


def parse_event_line(line: str) -> Event[EventData]:
    """An event from its line; ValueError saying what is wrong."""
    raw = json.loads(line)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    payload = raw.pop("data", None)
    if not isinstance(payload, dict):
        raise ValueError("data is missing or not a JSON object")
    if not isinstance(raw.get("time"), str):
        raise ValueError("time is missing")
    raw["time"] = datetime.fromisoformat(raw["time"])
    if raw["time"].tzinfo is None:
        raise ValueError("time must carry a time zone")
    try:
        attributes = CloudEvent(attributes=raw, data=payload).get_attributes()
    except Exception as exc:  # the package raises its own errors, not ValueError
        raise ValueError(f"not a CloudEvent: {exc}") from exc
    name, version = parse_event_type(str(attributes["type"]))
    model = EVENT_MODELS.get(name)
    if model is None or version != EVENT_VERSION:
        raise ValueError(f"unknown event type {attributes['type']!r}")
    try:
        data = model.model_validate(payload)
    except ValidationError as exc:
        raise ValueError(f"invalid {name}: {describe_validation_error(exc)}") from exc
    return Event(
        id=str(attributes["id"]), source=str(attributes["source"]), time=raw["time"], data=data
    )


def write_events(events: Iterable[Event[Any]], path: Path) -> int:
    """Write ``events`` as JSON lines (``event_line``); returns how many."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(event_line(event) + "\n")
            written += 1
    return written


def iter_events(path: Path) -> Iterator[Event[EventData]]:
    """The events of a JSON lines file; blank lines are skipped. EventsFileError names the
    line of the first that is not a closeloop event."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield parse_event_line(line)
            except ValueError as exc:
                raise EventsFileError(f"{path}, line {number}: {exc}") from exc


def read_events(path: Path) -> list[Event[EventData]]:
    return list(iter_events(path))


def write_simulation(simulation: Simulation, directory: Path) -> tuple[Path, Path]:
    """``directory``/events.jsonl and ``directory``/outcomes.csv; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    events, outcomes = directory / EVENTS_FILE, directory / OUTCOMES_FILE
    write_events(simulation.events, events)
    write_outcomes(simulation.outcome_rows(), outcomes)
    return events, outcomes
