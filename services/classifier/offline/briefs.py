"""Briefs for synthetic complaints: what each example must be, not how it is worded.

A writer who sees only a brief (the cause, a second cause, the urgency and what makes it
so, the channel, the language, who is writing, how long and how indirect) writes one
feedback text for it; the brief's fields are the example's labels. Writers never see the
taxonomy's keywords, the evaluation sets or each other's output (PROVENANCE.md), so the
words are theirs, not the rules'.

``python -m services.classifier.offline.briefs --count 900 --seed 11 --out FILE`` writes briefs as
JSON lines; the same count and seed always give the same briefs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.contracts import OTHER, RootCause, Urgency, check_root_cause, root_causes

CHANNELS = ("sms", "email", "phone", "chat", "social", "app_review", "web")
CHANNEL_STYLE = {
    "sms": "a terse text message, one or two sentences, no greeting",
    "email": "an e-mail with a greeting and sign-off; sometimes a quoted earlier reply below",
    "phone": "a call-centre transcript with turns (Agent: / Customer:), the customer's words"
    " carrying the complaint",
    "chat": "a live-chat exchange or a few short chat messages in a row",
    "social": "a public social-media post or reply, written for an audience",
    "app_review": "an app-store or shop review, sometimes with a star rating in words",
    "web": "a web contact form: a subject line and a message",
}
# Every kind of critical the classifier must catch (docs/classifier.md, "Urgency").
CRITICAL_KINDS = (
    "injury to a person",
    "illness after eating, drinking or staying",
    "fire, smoke, sparks, an electrical or gas hazard",
    "unsafe food or medicine (spoiled, contaminated, stored wrongly)",
    "a child at risk",
    "theft, an intruder, a door or lock that does not secure",
    "harassment or threatening behaviour by staff or others",
    "personal data exposed to other people",
    "a lawyer or a court case",
    "a police report",
    "a complaint to a regulator, consumer association or ombudsman",
    "a threat to go to the media or expose the business publicly",
    "a large financial loss, fraud or unauthorised charges",
)
HIGH_SIGNALS = (
    "anger",
    "intent to leave or never buy again",
    "the same failure again after an earlier complaint",
    "an ordinary money loss",
    "a VIP or long-standing high-value customer",
    "a writer with public reach (many followers)",
)
MEDIUM_NOTE = "a plain complaint: unhappy, but no anger, threat, risk or loss beyond the problem"
OTHER_KINDS = (
    "praise for the product or staff",
    "a question (opening hours, how to do something, order status)",
    "a neutral message (a change of address, a thank-you note, an update)",
    "a suggestion for improvement, calmly put",
)
LOW_COMPLAINT_NOTE = "a mild remark: a small disappointment, polite, no demand"
PERSONAS = (
    "a retired teacher, careful and formal",
    "a busy parent writing in a hurry",
    "a small-business owner who buys for the shop",
    "a university student, casual",
    "a frequent business traveller",
    "an elderly customer not used to apps",
    "a non-native speaker of the language, simple grammar",
    "an IT professional, precise and technical",
    "a customer who has written before and is tired of it",
    "a new customer, first purchase",
    "someone writing on behalf of a relative",
    "a young professional, sarcastic humour",
)
SETTINGS = (
    "online shop",
    "hotel",
    "restaurant or takeaway",
    "mobile operator",
    "bank or card issuer",
    "airline or rail",
    "home appliance brand",
    "car dealer or garage",
    "courier or parcel service",
    "insurance",
    "utility (power, water, gas, internet)",
    "gym or membership club",
    "supermarket",
    "software or streaming app",
    "property management or landlord",
    "clinic or pharmacy",
    "education or training course",
    "furniture or home improvement",
)
# Words that sound alarming but are harmless in context: a book review set in a hospital
# is not a safety incident. Some non-critical briefs ask for one, so that a detector
# learns the context, not the word.
HARMLESS_MENTIONS = (
    "a hospital or clinic, harmlessly (where the writer works, a book's setting, a visit)",
    "fire or burning, harmlessly (a fireplace, fireworks, 'fired up', a spicy dish)",
    "the police, harmlessly (a police officer as the customer's job, a crime novel)",
    "a lawyer, harmlessly (the customer's job, a legal thriller)",
    "a child, harmlessly (shopping for a child's birthday)",
    "medicine, harmlessly (buying vitamins, a pharmacy's opening hours)",
    "money lost, harmlessly (a joke about spending too much on a good meal)",
)
HARMLESS_SHARE = 0.15
LENGTHS = ("short (under 30 words or 50 characters)", "medium (2-5 sentences)", "long")
INDIRECTNESS = (
    "direct: says plainly what is wrong",
    "partly indirect: the problem is clear from details, not named",
    "indirect: hints, sarcasm or a story; the reader works out the problem",
)


@dataclass(frozen=True)
class Brief:
    id: str
    root_cause: str
    secondary_cause: str | None
    urgency: str
    what_makes_it_urgent: str
    sentiment: str
    channel: str
    channel_style: str
    lang: str
    persona: str
    setting: str
    length: str
    indirectness: str
    harmless_mention: str | None


def _urgency_for(rng: random.Random, cause: RootCause, shares: dict[Urgency, float]) -> Urgency:
    if cause == OTHER:
        return Urgency.LOW
    kinds = [u for u in shares if u is not Urgency.LOW] + [Urgency.LOW]
    return rng.choices(kinds, weights=[shares[u] for u in kinds])[0]


class _Turns:
    """What makes each brief urgent (or, for ``other``, what kind it is): the critical
    kinds, high signals and kinds of ``other`` are taken in turn."""

    def __init__(self) -> None:
        self.critical = self.high = self.other = 0

    def why(self, cause: RootCause, urgency: Urgency) -> str:
        if urgency is Urgency.CRITICAL:
            self.critical += 1
            return CRITICAL_KINDS[(self.critical - 1) % len(CRITICAL_KINDS)]
        if urgency is Urgency.HIGH:
            self.high += 1
            return HIGH_SIGNALS[(self.high - 1) % len(HIGH_SIGNALS)]
        if urgency is Urgency.MEDIUM:
            return MEDIUM_NOTE
        if cause == OTHER:
            self.other += 1
            return OTHER_KINDS[(self.other - 1) % len(OTHER_KINDS)]
        return LOW_COMPLAINT_NOTE


def _secondary_for(rng: random.Random, cause: RootCause, share: float) -> RootCause | None:
    if cause == OTHER or rng.random() >= share:
        return None
    return rng.choice([c for c in root_causes() if c not in (cause, OTHER)])


def _sentiment_for(cause: RootCause, why: str) -> str:
    if cause == OTHER:
        return "positive" if why == OTHER_KINDS[0] else "neutral"
    return "negative"


def _brief(
    rng: random.Random,
    brief_id: str,
    cause: RootCause,
    urgency: Urgency,
    why: str,
    secondary: RootCause | None,
    english_share: float,
) -> Brief:
    # The draws keep their order (channel, language, persona, ...): a seed gives the
    # briefs it always gave.
    channel = rng.choice(CHANNELS)
    return Brief(
        id=brief_id,
        root_cause=cause,
        secondary_cause=secondary,
        urgency=urgency.value,
        what_makes_it_urgent=why,
        sentiment=_sentiment_for(cause, why),
        channel=channel,
        channel_style=CHANNEL_STYLE[channel],
        lang="en" if rng.random() < english_share else "zh",
        persona=rng.choice(PERSONAS),
        setting=rng.choice(SETTINGS),
        length=LENGTHS[0] if channel == "sms" else rng.choice(LENGTHS),
        indirectness=rng.choice(INDIRECTNESS),
        harmless_mention=(
            rng.choice(HARMLESS_MENTIONS)
            if urgency is not Urgency.CRITICAL and rng.random() < HARMLESS_SHARE
            else None
        ),
    )


def make_briefs(
    count: int,
    seed: int,
    *,
    english_share: float = 0.5,
    secondary_share: float = 0.3,
    urgency_shares: dict[Urgency, float] | None = None,
    prefix: str = "b",
    causes: Sequence[RootCause] | None = None,
) -> list[Brief]:
    """``count`` briefs with ``causes`` in turn (by default every root cause, each getting
    an equal share), urgency drawn by ``urgency_shares`` (``other`` is always low),
    critical kinds, high signals and the kinds of ``other`` in turn."""
    causes = causes or root_causes()
    shares = urgency_shares or {
        Urgency.CRITICAL: 0.3,
        Urgency.HIGH: 0.25,
        Urgency.MEDIUM: 0.3,
        Urgency.LOW: 0.15,
    }
    rng = random.Random(seed)
    turns = _Turns()
    briefs = []
    for index in range(count):
        cause = causes[index % len(causes)]
        urgency = _urgency_for(rng, cause, shares)
        why = turns.why(cause, urgency)
        secondary = _secondary_for(rng, cause, secondary_share)
        brief_id = f"{prefix}{seed}-{index:05d}"
        briefs.append(_brief(rng, brief_id, cause, urgency, why, secondary, english_share))
    return briefs


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.classifier.offline.briefs")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--prefix", default="b")
    parser.add_argument(
        "--causes", default=",".join(root_causes()), help="comma-separated causes to take in turn"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(list(argv))
    causes = [check_root_cause(c) for c in args.causes.split(",")]
    briefs = make_briefs(args.count, args.seed, prefix=args.prefix, causes=causes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "".join(json.dumps(asdict(b), ensure_ascii=False) + "\n" for b in briefs),
        encoding="utf-8",
    )
    print(f"{len(briefs)} briefs written to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
