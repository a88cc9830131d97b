"""Root cause, urgency, sentiment and expectation of feedback: pure functions, no I/O.

The trained model (services.classifier.model) scores the root causes and the
sentiment; the taxonomy's keywords feed the model as evidence per cause; the
taxonomy's signal patterns decide urgency by rules, and its expectation rules read what
the customer asks for. Every decision records the text spans (or the customer data)
that drove it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.classifier.model import CauseModel, Explanation, prepare
from services.classifier.policy import (
    ASKING_END,
    ASKS,
    BREAK,
    DESCRIBING,
    MENTION,
    NEGATION,
    NOT_ASKS,
    REQUEST,
    ExpectationRules,
    Match,
    Taxonomy,
)
from shared.contracts import (
    OTHER,
    Channel,
    Classification,
    Expectation,
    ExpectedOutcome,
    Feedback,
    RootCause,
    Signal,
    Urgency,
)

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
    expectation = expectation_of(taxonomy.expectations, feedback, item.prepared)
    if expectation is not None:
        reasons.append(expectation_reason(expectation))
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
        expectation=expectation,
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


# --- the expectation: what the customer asks for ------------------------------------

MAX_EXPECTATION_EVIDENCE = 80
# Typographic apostrophes as typed on phones ("don’t"): the rules are written with "'".
_APOSTROPHES = ("\u2019", "\u2018", "\u02bc")


@dataclass(frozen=True)
class Ask:
    """An outcome the text asks for: where the match starts and the words that showed it."""

    outcome: ExpectedOutcome
    start: int
    evidence: str


@dataclass(frozen=True)
class _Clause:
    start: int
    end: int
    asking: bool  # a question, or ends with "please", 吧, 就行 ...: asks for what it names


@dataclass(frozen=True)
class _Cue:
    start: int
    end: int
    request: bool  # else a negation


def expectation_of(
    rules: ExpectationRules, feedback: Feedback, prepared: str | None = None
) -> Expectation | None:
    """What the customer expects: the outcome the channel captured (``customer``), else
    the strongest outcome the text asks for (``inferred``, with its words); None when
    the text asks for nothing. ``prepared`` is ``prepare(text_of(feedback))``, when the
    caller has it."""
    if feedback.expected_outcome is not None:
        return Expectation(
            outcome=feedback.expected_outcome, source="customer", expected_by=feedback.expected_by
        )
    text = text_of(feedback)
    asks = asks_in(rules, prepare(text) if prepared is None else prepared, text)
    ask = strongest_ask(rules, asks)
    if ask is None:
        return None
    return Expectation(
        outcome=ask.outcome,
        source="inferred",
        evidence=ask.evidence,
        expected_by=feedback.expected_by,
    )


def strongest_ask(rules: ExpectationRules, asks: Sequence[Ask]) -> Ask | None:
    """Of several outcomes asked, the one the rules list first (the strongest), the first
    asked among equals: "an apology and compensation" expects compensation."""
    rank = {outcome: k for k, outcome in enumerate(rules.compiled.outcomes)}
    return min(asks, key=lambda ask: (rank[ask.outcome], ask.start), default=None)


def asks_in(rules: ExpectationRules, prepared: str, original: str | None = None) -> list[Ask]:
    """Every outcome the prepared text asks for, in text order. A term of an outcome
    ("refund", 退款) asks when a request comes before it in its clause ("I want a",
    我要) with no negation after that request, or when its clause asks (a question, or
    ends with "please", 吧, 就行); an ask phrase ("refund me", 给个说法) asks unless a
    negation comes before it in its clause. Neither asks in a clause with one of the
    outcome's ``not_asks`` ("they refunded me", 已经退款). Evidence is read from
    ``original`` when its offsets are the prepared text's."""
    compiled = rules.compiled
    for apostrophe in _APOSTROPHES:
        prepared = prepared.replace(apostrophe, "'")  # far faster than str.translate
    items = _items(compiled.items.find_all(prepared))
    if not items:
        return []
    named = {item.outcome for item in items}
    # Only the named outcomes' not_asks matter: the others' regexes need not run.
    unnamed = frozenset(f"{NOT_ASKS}{k}" for k in range(len(compiled.outcomes)) if k not in named)
    found = compiled.cues.find_all(prepared, skip=unnamed)
    clauses = clauses_of(prepared, found)
    cues = cues_in(prepared, found)
    waved = waved_away(len(compiled.outcomes), prepared, found)
    source = original if original is not None and len(original) == len(prepared) else prepared
    asks: list[Ask] = []
    taken: list[_Item] = []
    for item in items:
        if any(
            t.outcome == item.outcome and t.start < item.end and item.start < t.end for t in taken
        ):
            continue  # the term inside an ask phrase already asked ("refund" in "refund me")
        if not item.ask and _followed_by(prepared, found[MENTION], item.end):
            continue  # "refund policy"
        clause = next(c for c in clauses if item.start < c.end)
        if any(k == item.outcome and clause.start <= at < clause.end for k, at in waved):
            continue
        phrase = item.ask and not _preceded_by(prepared, found[DESCRIBING], item.start)
        begin = _asked_from(cues, clause, item.start, ask_phrase=phrase)
        if begin is not None:
            taken.append(item)
            evidence = _evidence(source, clause, begin, item.end)
            asks.append(Ask(compiled.outcomes[item.outcome], item.start, evidence))
    return asks


@dataclass(frozen=True)
class _Item:
    outcome: int  # the outcome's place in the rules
    start: int
    end: int
    ask: bool  # an ask phrase, else a term


def _items(found: dict[str, list[Match]]) -> list[_Item]:
    """Every ask phrase and term found, in text order, an ask phrase before a term that
    starts with it."""
    items = [
        _Item(int(name[1:]), m.start, m.end, ask=name[0] == ASKS)
        for name, matches in found.items()
        if matches
        for m in matches
    ]
    return sorted(items, key=lambda i: (i.start, not i.ask, -i.end))


def clauses_of(prepared: str, found: dict[str, list[Match]]) -> list[_Clause]:
    """The text between clause breaks (punctuation, "but", 但是), in order, each marked
    asking when the break after it has a "?" or it ends with an asking word."""
    ends = {m.end for m in found[ASKING_END]}
    clauses, start = [], 0
    breaks = sorted(found[BREAK], key=lambda m: m.start)
    for end, after in [*((m.start, m.end) for m in breaks), (len(prepared), len(prepared))]:
        if end < start:
            continue  # a break inside the one before ("but" after a comma)
        question = "?" in prepared[end:after]
        ending = len(prepared[start:end].rstrip()) + start in ends
        clauses.append(_Clause(start, end, question or ending))
        start = after
    return clauses


def _overlap(a: Match, b: Match) -> bool:
    return a.start < b.end and b.start < a.end


def _ends_at(prepared: str, match: Match, start: int) -> bool:
    """The match ends right before ``start`` (one space between allowed)."""
    return match.end == start or (match.end == start - 1 and prepared[match.end] == " ")


def _preceded_by(prepared: str, matches: Sequence[Match], start: int) -> bool:
    return any(_ends_at(prepared, m, start) for m in matches)


def _followed_by(prepared: str, matches: Sequence[Match], end: int) -> bool:
    return any(m.start == end or (m.start == end + 1 and prepared[end] == " ") for m in matches)


def cues_in(prepared: str, found: dict[str, list[Match]]) -> list[_Cue]:
    """Requests and negations, in the order of their ends. Of a request and a negation
    that overlap, the longer wins, the negation on a tie ("不想要" over "想要", "still
    no" over "no"); a request right after a negation is negated ("don't" + "want", "没" +
    "要求")."""
    requests, negations = found[REQUEST], found[NEGATION]
    kept = [
        n
        for n in negations
        if not any(_overlap(n, r) and r.end - r.start > n.end - n.start for r in requests)
    ]
    cues = [_Cue(n.start, n.end, request=False) for n in kept]
    for r in requests:
        if any(_overlap(r, n) and n.end - n.start >= r.end - r.start for n in negations):
            continue
        cues.append(_Cue(r.start, r.end, request=not _preceded_by(prepared, kept, r.start)))
    # Of cues ending together, the longest last ("我要" after "要"): the evidence starts there.
    return sorted(cues, key=lambda c: (c.end, -c.start))


def waved_away(
    outcomes: int, prepared: str, found: dict[str, list[Match]]
) -> list[tuple[int, int]]:
    """(outcome number, position) of each ``not_asks`` phrase that no negation right
    before turns around ("received my refund", but not "haven't received my refund")."""
    return [
        (k, m.start)
        for k in range(outcomes)
        for m in found[f"{NOT_ASKS}{k}"]
        if not _preceded_by(prepared, found[NEGATION], m.start)
    ]


def _asked_from(cues: Sequence[_Cue], clause: _Clause, start: int, ask_phrase: bool) -> int | None:
    """Where the words asking for the match at ``start`` begin, or None when it does not
    ask: decided by the last request or negation before it in its clause."""
    last = None
    for cue in cues:
        if cue.end > start:
            break
        if cue.start >= clause.start:
            last = cue
    if clause.asking:
        # "why can't you refund me?" asks; "不用退款吧" does not.
        if last is not None and not last.request and last.end >= start - 1:
            return None
        return clause.start
    if last is None:
        return start if ask_phrase else None
    return last.start if last.request else None


def _evidence(text: str, clause: _Clause, begin: int, match_end: int) -> str:
    """The clause; when it is longer than MAX_EXPECTATION_EVIDENCE characters, from the
    asking words on, and when that is too, as much as fits ending with the match."""
    for start, end in ((clause.start, clause.end), (begin, clause.end)):
        evidence = text[start:end].strip()
        if len(evidence) <= MAX_EXPECTATION_EVIDENCE:
            return evidence
    return text[max(begin, match_end - MAX_EXPECTATION_EVIDENCE) : match_end].strip()


def expectation_reason(expectation: Expectation) -> str:
    if expectation.source == "customer":
        return f"expectation {expectation.outcome.value}: said by the customer"
    return f"expectation {expectation.outcome.value}: inferred from {expectation.evidence}"
