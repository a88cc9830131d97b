"""The customer health score: 0 (leaving) to 100, from a customer's cases.

Every part of the loyalty policy (loyalty.yaml, read by policy.py) counts something in
the customer's cases (complaints, missed deadlines, dissatisfied answers, churn intent,
good recoveries...), each item weighed by how long ago it happened: ``0.5 ** (age /
half-life)``. A part adds its points times that decayed count; the score is the
policy's base plus every part and the tier's offset, kept within 0..100. The score is
``50 - scale * log-odds`` of leaving, so a fitted logistic regression is a policy (see
``policy_from_logit``) and a policy gives a probability (``churn_probability``).

A score is taken at a time ``at``: only cases opened before it count, and of each case
only what had happened by then (a resolution, an answer, a deadline passed, a promise
broken or overdue); reopens and escalations carry no time in the facts and count from
the case's resolution or opening.

Pure functions: no I/O, no clock reads. The policy itself (its file, its fields and their
checks) is in policy.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from services.insights.domain import CHURN_SIGNAL, CaseFacts, PromiseFacts
from services.insights.policy import PARTS, LoyaltyPolicy, PartName
from shared.contracts import (
    CustomerAtRisk,
    CustomerRecovered,
    CustomerSignal,
    CustomerTier,
    ScoreReason,
    Urgency,
)

MIDPOINT = 50.0
"""The score at even odds of leaving."""

SEVERE = frozenset({Urgency.CRITICAL, Urgency.HIGH})
SATISFIED = frozenset({"satisfied", "delighted"})
Signal = Literal["at_risk", "recovered"]


# --- what counts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One thing a part counts: when it happened, how many, and its case (and promise)."""

    at: datetime
    case: CaseFacts
    count: float = 1.0
    promise: PromiseFacts | None = None


def known_cases(cases: Iterable[CaseFacts], at: datetime, horizon: timedelta) -> list[CaseFacts]:
    """The cases a score at ``at`` counts: opened before it, within the horizon; oldest
    first."""
    kept = [
        case
        for case in cases
        if case.opened_at is not None and at - horizon <= case.opened_at <= at
    ]
    return sorted(kept, key=lambda case: (case.opened_at or at, case.case_id))


def items(cases: Sequence[CaseFacts], at: datetime) -> dict[PartName, list[Item]]:
    """What each part counts among ``cases`` (already the known ones), as of ``at``."""
    out: dict[PartName, list[Item]] = {name: [] for name in PARTS}
    for case in cases:
        opened = case.opened_at
        assert opened is not None  # known_cases keeps only opened cases
        out["complaints"].append(Item(opened, case))
        if case.urgency in SEVERE:
            out["severe"].append(Item(opened, case))
        for met, due in (
            (case.first_response_sla_met, case.first_response_due),
            (case.resolution_sla_met, case.resolution_due),
        ):
            if met is False and due is not None and due <= at:
                out["deadlines_missed"].append(Item(due, case))
        resolved = _by(case.resolved_at, at)
        if case.reopen_count:
            out["reopened"].append(Item(resolved or opened, case, float(case.reopen_count)))
        if case.escalation_count:
            out["escalated"].append(Item(opened, case, float(case.escalation_count)))
        answered = _by(case.answer_stamp[0] if case.answer_stamp else None, at)
        if answered is not None and (case.verdict == "dissatisfied" or case.solved is False):
            out["dissatisfied"].append(Item(answered, case))
        if case.churn_evidence is not None or CHURN_SIGNAL in case.signals:
            out["churn_intent"].append(Item(opened, case))
        if _by(case.closed_at, at) is None:
            out["open_cases"].append(Item(at, case))
        if (
            answered is not None
            and resolved is not None
            and case.resolution_sla_met is True
            and case.verdict in SATISFIED
            and case.solved is not False
        ):
            out["recovered"].append(Item(answered, case))
        _promise_items(case, at, out)
    return out


def _promise_items(case: CaseFacts, at: datetime, out: dict[PartName, list[Item]]) -> None:
    """A promise broken by ``at`` counts as broken, from when it was recorded; one overdue
    by then and not broken (not yet, or kept late) counts as overdue, from when it went
    overdue: a promise overdue and then broken counts once, as broken."""
    for promise in case.promises:
        broken = _by(promise.outcome_at, at) if promise.outcome == "broken" else None
        overdue = _by(promise.overdue_at, at)
        if broken is not None:
            out["promises_broken"].append(Item(broken, case, promise=promise))
        elif overdue is not None:
            out["promises_overdue"].append(Item(overdue, case, promise=promise))


def _by(when: datetime | None, at: datetime) -> datetime | None:
    return when if when is not None and when <= at else None


def decay(age: timedelta, half_life_days: float | None) -> float:
    """What an item of this age counts: 1 when new, 1/2 after a half-life."""
    if half_life_days is None:
        return 1.0
    days = max(age.total_seconds(), 0.0) / 86_400
    return float(0.5 ** (days / half_life_days))


def features(
    cases: Iterable[CaseFacts], at: datetime, policy: LoyaltyPolicy
) -> dict[PartName, float]:
    """Each part's decayed count as of ``at``: what the points multiply (and what a fit
    learns its points from)."""
    counted = items(known_cases(cases, at, policy.horizon), at)
    return {
        name: sum(
            item.count * decay(at - item.at, policy.parts[name].half_life_days)
            for item in counted[name]
        )
        for name in PARTS
    }


# --- the score --------------------------------------------------------------------------


@dataclass(frozen=True)
class PartScore:
    part: str
    value: float
    """The decayed count."""
    points: float
    """What the part adds to the score."""
    reason: str


@dataclass(frozen=True)
class Health:
    score: float
    tier: CustomerTier
    parts: tuple[PartScore, ...]
    """Every part that adds or takes half a point or more, largest first."""
    open_case_ids: tuple[str, ...]
    at: datetime
    raw: float = field(default=0.0)
    """The score before it is kept within 0..100."""

    def reasons(self) -> list[ScoreReason]:
        return [ScoreReason(part=p.part, points=p.points, reason=p.reason) for p in self.parts]


def customer_tier(cases: Iterable[CaseFacts]) -> CustomerTier:
    """The tier the customer's latest feedback gave; standard when none says."""
    latest = max(
        (case for case in cases if case.customer_stamp is not None and case.customer),
        key=lambda case: case.customer_stamp or (datetime.min, ""),
        default=None,
    )
    if latest is not None and latest.customer is not None:
        return latest.customer.tier
    tiers = [case.customer_tier for case in cases if case.customer_tier is not None]
    return tiers[-1] if tiers else CustomerTier.STANDARD


def health(cases: Sequence[CaseFacts], at: datetime, policy: LoyaltyPolicy) -> Health:
    """The customer's score as of ``at``, with each part's contribution and reason."""
    known = known_cases(cases, at, policy.horizon)
    counted = items(known, at)
    tier = customer_tier(cases)
    parts: list[PartScore] = []
    for name in PARTS:
        part = policy.parts[name]
        value = sum(item.count * decay(at - item.at, part.half_life_days) for item in counted[name])
        points = part.points * value
        if counted[name]:
            parts.append(PartScore(name, value, points, _reason(name, counted[name], points, at)))
    tier_points = policy.tier_points(tier)
    if tier_points:
        parts.append(PartScore("tier", 1.0, tier_points, _line(tier_points, f"{tier} customer")))
    raw = policy.base + sum(part.points for part in parts)
    shown = sorted(
        (part for part in parts if abs(part.points) >= 0.5),
        key=lambda part: (-abs(part.points), part.part),
    )
    open_ids = tuple(item.case.case_id for item in counted["open_cases"])
    return Health(
        score=round(min(100.0, max(0.0, raw)), 1),
        tier=tier,
        parts=tuple(shown),
        open_case_ids=open_ids,
        at=at,
        raw=raw,
    )


def churn_probability(score: float, policy: LoyaltyPolicy) -> float:
    """The probability of leaving within the outcome window that a score stands for."""
    logit = (MIDPOINT - score) / policy.scale
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


def policy_from_logit(
    policy: LoyaltyPolicy,
    intercept: float,
    coefficients: Mapping[PartName, float],
    tier_coefficients: Mapping[CustomerTier, float],
) -> LoyaltyPolicy:
    """``policy`` with base, points and tier offsets from a logistic regression of leaving
    on the parts' decayed counts (log-odds = intercept + sum(coefficient * count)):
    half-lives, thresholds and scale stay."""
    scale = policy.scale
    parts = {
        name: part.model_copy(update={"points": round(-scale * coefficients[name], 2)})
        for name, part in policy.parts.items()
    }
    tiers = {tier: round(-scale * value, 2) for tier, value in tier_coefficients.items()}
    base = min(100.0, max(0.0, round(MIDPOINT - scale * intercept, 2)))
    return policy.model_copy(update={"base": base, "parts": parts, "tiers": tiers})


# --- crossings ------------------------------------------------------------------------


def crossing(at_risk: bool, score: float, policy: LoyaltyPolicy) -> Signal | None:
    """The signal a new score gives a customer who is (or is not) at risk: at risk when
    it falls below ``at_risk_below``, recovered when it rises above ``recovered_above``;
    between the two the customer stays as they were."""
    if not at_risk and score < policy.at_risk_below:
        return "at_risk"
    if at_risk and score > policy.recovered_above:
        return "recovered"
    return None


def settled_score(score: float, policy: LoyaltyPolicy) -> bool:
    """True when a score may be left alone until the customer's next event: close enough
    to the base that decay cannot move it across a threshold."""
    return abs(score - policy.base) < 0.5


# --- reasons ----------------------------------------------------------------------------


def _line(points: float, text: str) -> str:
    return f"{points:+.1f}: {text}"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _since(items_: Sequence[Item], at: datetime) -> str:
    oldest = min(item.at for item in items_)
    days = max(1, math.ceil((at - oldest).total_seconds() / 86_400))
    return f"in the last {_plural(days, 'day')}"


def _reason(name: PartName, counted: Sequence[Item], points: float, at: datetime) -> str:
    cases = len({item.case.case_id for item in counted})
    total = round(sum(item.count for item in counted))
    latest = max(counted, key=lambda item: item.at)
    if name == "complaints":
        causes = Counter(str(item.case.root_cause or "unknown") for item in counted)
        by_cause = ", ".join(f"{cause} {n}" for cause, n in sorted(causes.items()))
        text = f"{_plural(cases, 'complaint')} {_since(counted, at)} ({by_cause})"
    elif name == "severe":
        text = f"{_plural(cases, 'complaint')} of high or critical urgency {_since(counted, at)}"
    elif name == "deadlines_missed":
        text = f"{_plural(total, 'deadline')} missed {_since(counted, at)}"
    elif name == "reopened":
        text = f"reopened {_plural(total, 'time')} ({_plural(cases, 'case')})"
    elif name == "escalated":
        text = f"escalated {_plural(total, 'time')} ({_plural(cases, 'case')})"
    elif name == "dissatisfied":
        ratio = latest.case.ratio
        detail = f" (ratio {ratio:.2f})" if ratio is not None else ""
        text = f"last survey dissatisfied{detail}"
        if cases > 1:
            text += f"; {cases} dissatisfied answers {_since(counted, at)}"
    elif name == "churn_intent":
        evidence = latest.case.churn_evidence
        text = f"churn intent '{evidence}'" if evidence else "churn intent"
        if cases > 1:
            text += f" ({cases} cases)"
    elif name == "promises_broken":
        text = f"{_plural(total, 'broken promise')} {_since(counted, at)}"
    elif name == "promises_overdue":
        text = f"{_plural(total, 'overdue promise')} {_since(counted, at)}"
        late = sum(1 for item in counted if _kept_late(item.promise, at))
        if late:
            text += f" ({late} kept late)"
    elif name == "open_cases":
        text = _plural(cases, "open case")
    else:  # recovered
        text = "last case solved within its deadline and satisfied"
        if cases > 1:
            text = f"{cases} cases solved within their deadlines and satisfied"
    return _line(points, text)


def _kept_late(promise: PromiseFacts | None, at: datetime) -> bool:
    return (
        promise is not None
        and promise.outcome == "kept"
        and _by(promise.outcome_at, at) is not None
    )


# --- the customer's standing --------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """What insights last told of a customer: at risk or not, after how many crossings."""

    at_risk: bool = False
    crossing: int = 0


def decide_signal(
    customer_key: str, standing: Standing, now_health: Health, policy: LoyaltyPolicy
) -> CustomerSignal | None:
    """The customer.signals event a new score calls for, if it crosses a threshold: the
    crossing after ``standing``'s, with the reasons and open cases of the score."""
    signal = crossing(standing.at_risk, now_health.score, policy)
    if signal is None:
        return None
    model: type[CustomerSignal] = CustomerAtRisk if signal == "at_risk" else CustomerRecovered
    threshold = policy.at_risk_below if signal == "at_risk" else policy.recovered_above
    return model(
        customer_key=customer_key,
        customer_tier=now_health.tier,
        score=now_health.score,
        threshold=threshold,
        crossing=standing.crossing + 1,
        reasons=now_health.reasons(),
        open_case_ids=list(now_health.open_case_ids),
        occurred_at=now_health.at,
    )


def standing_after(standing: Standing, signal: CustomerSignal | None) -> Standing:
    if signal is None:
        return standing
    return Standing(at_risk=isinstance(signal, CustomerAtRisk), crossing=signal.crossing)
