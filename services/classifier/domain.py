"""Root cause, urgency and sentiment from the feedback text: pure functions, no I/O.

A first, explainable rule classifier: keyword evidence per root cause, signal
patterns with weights for urgency, a lexicon for sentiment. Every decision records
the text spans that drove it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.classifier.config import Keywords, Taxonomy
from shared.contracts import (
    Channel,
    Classification,
    CustomerTier,
    Feedback,
    RootCause,
    Signal,
    Urgency,
)

MAX_EVIDENCE = 3


@dataclass(frozen=True)
class Match:
    text: str
    start: int


def find(keywords: Keywords, text: str) -> list[Match]:
    pattern = keywords.pattern
    if pattern is None:
        return []
    return [Match(m.group(0), m.start()) for m in pattern.finditer(text)]


def _prepared(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


def score_causes(taxonomy: Taxonomy, text: str) -> list[tuple[RootCause, list[Match]]]:
    """Causes with their keyword matches, the most evidenced first."""
    scored = [(cause, find(spec.keywords, text)) for cause, spec in taxonomy.root_causes.items()]
    scored = [(cause, matches) for cause, matches in scored if matches]
    # More distinct keywords is stronger evidence than one keyword repeated.
    scored.sort(key=lambda item: (len({m.text for m in item[1]}), len(item[1])), reverse=True)
    return scored


def sentiment_of(taxonomy: Taxonomy, text: str, anger_hits: int) -> float:
    positive = len(find(taxonomy.sentiment.positive, text))
    negative = len(find(taxonomy.sentiment.negative, text)) + 2 * anger_hits
    if positive == negative == 0:
        return 0.0
    return round(max(-1.0, min(1.0, (positive - negative) / (positive + negative + 1))), 3)


def detect_signals(taxonomy: Taxonomy, text: str, feedback: Feedback) -> list[Signal]:
    signals = []
    for name, spec in taxonomy.signals.items():
        matches = find(spec.patterns, text)
        if matches:
            evidence = ", ".join(dict.fromkeys(m.text for m in matches[:MAX_EVIDENCE]))
            signals.append(Signal(name=name, evidence=evidence, weight=spec.weight))
    if feedback.customer.tier is CustomerTier.VIP:
        signals.append(Signal(name="customer_tier", evidence="tier=vip", weight=1.0))
    followers = feedback.metadata.get("followers")
    if (
        feedback.channel is Channel.SOCIAL
        and isinstance(followers, int)
        and followers >= taxonomy.urgency.public_reach_followers
    ):
        signals.append(Signal(name="public_reach", evidence=f"followers={followers}", weight=1.0))
    return signals


def urgency_of(taxonomy: Taxonomy, signals: list[Signal], sentiment: float) -> Urgency:
    thresholds = taxonomy.urgency
    critical_names = {name for name, spec in taxonomy.signals.items() if spec.critical}
    if any(s.name in critical_names for s in signals):
        return Urgency.CRITICAL
    text_signals = [s for s in signals if s.name not in ("customer_tier", "public_reach")]
    # Praise with a VIP tag is still praise: tier and reach amplify complaints only.
    if not text_signals and sentiment > 0:
        return Urgency.LOW
    score = sum(s.weight for s in signals)
    if score >= thresholds.critical_at:
        return Urgency.CRITICAL
    if score >= thresholds.high_at:
        return Urgency.HIGH
    if score >= thresholds.medium_at or sentiment <= thresholds.negative_sentiment_medium:
        return Urgency.MEDIUM
    return Urgency.LOW


def classify(taxonomy: Taxonomy, feedback: Feedback) -> Classification:
    text = _prepared(" ".join(filter(None, (feedback.subject, feedback.text))))
    causes = score_causes(taxonomy, text)
    signals = detect_signals(taxonomy, text, feedback)
    anger_hits = sum(1 for s in signals if s.name == "anger")
    sentiment = sentiment_of(taxonomy, text, anger_hits)
    urgency = urgency_of(taxonomy, signals, sentiment)

    reasons: list[str] = []
    if causes:
        best, best_matches = causes[0]
        best_strength = len({m.text for m in best_matches})
        runner_up = len({m.text for m in causes[1][1]}) if len(causes) > 1 else 0
        confidence = round(
            min(0.95, 0.4 + 0.5 * (best_strength - runner_up + 1) / (best_strength + 1)), 3
        )
        secondary = causes[1][0] if len(causes) > 1 and runner_up * 2 >= best_strength else None
        reasons.append(
            f"root cause {best.value}: "
            + ", ".join(dict.fromkeys(m.text for m in best_matches[:MAX_EVIDENCE]))
        )
    else:
        best, confidence, secondary = RootCause.OTHER, 0.3, None
        reasons.append("no root-cause keyword matched")
    for signal in signals:
        reasons.append(f"{signal.name}: {signal.evidence}")
    reasons.append(f"urgency {urgency.value} from {len(signals)} signal(s), sentiment {sentiment}")

    return Classification(
        root_cause=best,
        secondary_cause=secondary,
        urgency=urgency,
        sentiment=sentiment,
        confidence=confidence,
        signals=signals,
        needs_review=confidence < taxonomy.review_threshold,
        model_version=taxonomy.version,
        reasons=reasons,
    )
