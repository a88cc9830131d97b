"""Root cause, urgency and sentiment of feedback: pure functions, no I/O.

The trained model (services.classifier.model) scores the root causes and the
sentiment; the taxonomy's keywords feed the model as evidence per cause; the
taxonomy's signal patterns decide urgency by rules. Every decision records the text
spans (or the customer data) that drove it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.classifier.model import CauseModel, Explanation, prepare
from services.classifier.policy import Match, Taxonomy
from shared.contracts import OTHER, Channel, Classification, Feedback, RootCause, Signal, Urgency

MAX_EVIDENCE = 3
TIER_SIGNAL = "customer_tier"
REACH_SIGNAL = "public_reach"
AMPLIFIERS = frozenset({TIER_SIGNAL, REACH_SIGNAL})


def text_of(feedback: Feedback) -> str:
    return "\n".join(part for part in (feedback.subject, feedback.text) if part)


def distinct(matches: Sequence[Match], limit: int = MAX_EVIDENCE) -> list[str]:
    return list(dict.fromkeys(m.text.strip() for m in matches))[:limit]


def outermost(matches: Sequence[Match]) -> list[Match]:
    """In text order, without matches inside a longer one ("fire" in "caught fire")."""
    ordered = sorted(matches, key=lambda m: (m.start, -m.end))
    kept: list[Match] = []
    for match in ordered:
        if not kept or match.end > kept[-1].end:
            kept.append(match)
    return kept


def keyword_matches(taxonomy: Taxonomy, prepared: str) -> dict[RootCause, list[Match]]:
    return causes_in(taxonomy, taxonomy.index.find_all(prepared))


def causes_in(taxonomy: Taxonomy, found: dict[str, list[Match]]) -> dict[RootCause, list[Match]]:
    return {cause: found[group] for cause, group in taxonomy.cause_groups}


def keyword_counts(
    matches: Sequence[dict[RootCause, list[Match]]], causes: Sequence[RootCause]
) -> np.ndarray:
    """Distinct keywords found per text (rows) and cause (columns, in ``causes`` order)."""
    rows = [
        [len({m.text for m in ms}) if (ms := found.get(c)) else 0 for c in causes]
        for found in matches
    ]
    return np.array(rows, dtype=np.float32).reshape(len(matches), len(causes))


def text_signals(
    taxonomy: Taxonomy, prepared: str, found: dict[str, list[Match]], sentiment: float
) -> list[Signal]:
    """Signals found in the text, each with the spans that showed it. A match right after a
    negation ("no danger", "没有危险") does not count; nor does a signal whose
    ``max_sentiment`` the feedback's sentiment reaches (praise is not anger)."""
    signals = []
    for name, spec, group in taxonomy.signal_groups:
        spans = found[group]
        if not spans or sentiment >= spec.max_sentiment:
            continue
        matches = [m for m in outermost(spans) if not taxonomy.negation.negates(prepared, m.start)]
        if matches:
            signals.append(
                Signal(name=name, evidence="; ".join(distinct(matches)), weight=spec.weight)
            )
    return signals


def followers_of(feedback: Feedback) -> int | None:
    value = feedback.metadata.get("followers")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def customer_signals(taxonomy: Taxonomy, feedback: Feedback) -> list[Signal]:
    """Who is speaking and how loudly: customer tier and public reach on social channels."""
    signals = []
    tier_weight = taxonomy.urgency.tier_weight.get(feedback.customer.tier, 0.0)
    if tier_weight > 0:
        signals.append(
            Signal(
                name=TIER_SIGNAL,
                evidence=f"tier={feedback.customer.tier.value}",
                weight=tier_weight,
            )
        )
    followers = followers_of(feedback)
    if (
        feedback.channel is Channel.SOCIAL
        and followers is not None
        and followers >= taxonomy.urgency.public_reach_followers
    ):
        signals.append(
            Signal(
                name=REACH_SIGNAL,
                evidence=f"followers={followers}",
                weight=taxonomy.urgency.public_reach_weight,
            )
        )
    return signals


def urgency_of(taxonomy: Taxonomy, signals: Sequence[Signal], sentiment: float) -> Urgency:
    thresholds = taxonomy.urgency
    found = [s for s in signals if s.name not in AMPLIFIERS]
    if any(s.name in taxonomy.critical_signals for s in found):
        return Urgency.CRITICAL
    complaint = (
        sum(s.weight for s in found) >= thresholds.medium_at
        or sentiment <= thresholds.negative_sentiment_medium
    )
    # Tier and reach amplify complaints only: praise or a question from a VIP stays low.
    if not complaint:
        return Urgency.LOW
    score = sum(s.weight for s in signals)
    if score >= thresholds.critical_at:
        return Urgency.CRITICAL
    if score >= thresholds.high_at:
        return Urgency.HIGH
    return Urgency.MEDIUM


def secondary_of(
    taxonomy: Taxonomy,
    ranked: Sequence[tuple[RootCause, float]],
    keywords: dict[RootCause, list[Match]],
) -> tuple[RootCause, float] | None:
    """A second cause: the likeliest other one that the text names by a keyword (and the
    model gives at least ``secondary_min``), else one the model rates at least
    ``secondary_ratio`` of the first."""
    if len(ranked) < 2:
        return None
    spec = taxonomy.model
    p_first = ranked[0][1]
    for cause, probability in ranked[1:]:
        if cause == OTHER:
            continue
        if keywords.get(cause) and probability >= spec.secondary_min:
            return cause, probability
        if probability >= spec.secondary_ratio * p_first:
            return cause, probability
    return None


@dataclass(frozen=True)
class _Scored:
    prepared: str
    found: dict[str, list[Match]]
    keywords: dict[RootCause, list[Match]]


def classify_batch(
    taxonomy: Taxonomy, model: CauseModel, feedbacks: Sequence[Feedback]
) -> list[Classification]:
    """Classify many feedbacks at once: the model scores the whole batch in one pass."""
    if not feedbacks:
        return []
    scored = []
    for feedback in feedbacks:
        prepared = prepare(text_of(feedback))
        found = taxonomy.index.find_all(prepared)
        scored.append(_Scored(prepared, found, causes_in(taxonomy, found)))
    counts = keyword_counts([s.keywords for s in scored], model.keyword_causes)
    predictions = model.predict([s.prepared for s in scored], counts)
    version = f"{model.version}+{taxonomy.version}"
    order = np.argsort(-predictions.probabilities, axis=1, kind="stable")
    ranked_probabilities = np.take_along_axis(predictions.probabilities, order, axis=1)
    rankings = [
        [(model.classes[k], p) for k, p in zip(ks, ps, strict=True)]
        for ks, ps in zip(order.tolist(), ranked_probabilities.tolist(), strict=True)
    ]
    firsts = [ranked[0][0] for ranked in rankings]
    sentiments = predictions.sentiment.tolist()
    explanations = model.explain(
        predictions,
        firsts,
        [
            len({m.text for m in item.keywords.get(c, ())})
            for item, c in zip(scored, firsts, strict=True)
        ],
        MAX_EVIDENCE,
    )
    return [
        _classification(
            taxonomy, feedback, item, rankings[row], sentiments[row], explanation, version
        )
        for row, (feedback, item, explanation) in enumerate(
            zip(feedbacks, scored, explanations, strict=True)
        )
    ]


def _classification(
    taxonomy: Taxonomy,
    feedback: Feedback,
    item: _Scored,
    ranked: Sequence[tuple[RootCause, float]],
    model_sentiment: float,
    explanation: Explanation,
    version: str,
) -> Classification:
    """One feedback's classification, from the model's ranking of its causes."""
    cause, confidence = ranked[0]
    secondary = secondary_of(taxonomy, ranked, item.keywords)
    sentiment = round(model_sentiment, 3)
    signals = text_signals(taxonomy, item.prepared, item.found, sentiment)
    signals += customer_signals(taxonomy, feedback)
    urgency = urgency_of(taxonomy, signals, sentiment)
    cause_keywords = item.keywords.get(cause, [])
    reasons = [root_cause_reason(cause, confidence, explanation, cause_keywords)]
    if secondary is not None:
        reasons.append(f"secondary cause {secondary[0]} ({secondary[1]:.2f})")
    reasons += [f"{s.name}: {s.evidence}" for s in signals]
    reasons.append(urgency_reason(urgency, signals, sentiment))
    confidence = round(confidence, 3)
    return Classification(
        root_cause=cause,
        secondary_cause=secondary[0] if secondary else None,
        urgency=urgency,
        sentiment=sentiment,
        confidence=confidence,
        signals=signals,
        needs_review=confidence < taxonomy.review_threshold,
        model_version=version,
        reasons=reasons,
    )


def classify(taxonomy: Taxonomy, model: CauseModel, feedback: Feedback) -> Classification:
    return classify_batch(taxonomy, model, [feedback])[0]


def root_cause_reason(
    cause: RootCause, confidence: float, explanation: Explanation, keywords: Sequence[Match]
) -> str:
    parts = [f"root cause {cause} ({confidence:.2f})"]
    if explanation.ngrams:
        parts.append("text " + ", ".join(explanation.ngrams))
    if keywords:
        parts.append("keywords " + ", ".join(distinct(keywords)))
    return ": ".join(parts[:1]) + ("; " + "; ".join(parts[1:]) if len(parts) > 1 else "")


def urgency_reason(urgency: Urgency, signals: Sequence[Signal], sentiment: float) -> str:
    if not signals:
        return f"urgency {urgency.value}: no signal, sentiment {sentiment}"
    names = ", ".join(f"{s.name} {s.weight:g}" for s in signals)
    return f"urgency {urgency.value}: {names}; sentiment {sentiment}"
