"""What the customer asks for: the outcome the channel captured, else the one the
taxonomy's expectation rules read from the text, with the words that showed it; and the
precision traps (policies, negations, past refunds) that must not read as asks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from services.classifier import metrics
from services.classifier.domain import asks_in, classify, expectation_of, strongest_ask
from services.classifier.model import load, prepare
from services.classifier.policy import DEFAULT_TAXONOMY, load_taxonomy
from shared.config import ConfigError
from shared.contracts import ExpectedOutcome, Feedback
from tests.support import a_classification, a_feedback

TAXONOMY = load_taxonomy()
RULES = TAXONOMY.expectations
BY = datetime(2026, 3, 6, 17, 0, tzinfo=UTC)


def inferred(text: str) -> tuple[str, str] | None:
    ask = strongest_ask(RULES, asks_in(RULES, prepare(text), text))
    return (ask.outcome.value, ask.evidence) if ask else None


def feedback(text: str, **fields: Any) -> Feedback:
    return a_feedback(text, **fields)


@pytest.mark.parametrize(
    ("text", "outcome", "evidence"),
    [
        ("质量太差了，我要退款！", "refund", "我要退款"),
        ("我要退款", "refund", "我要退款"),
        ("The kettle leaks. I want my money back.", "refund", "I want my money back"),
        ("Refund me now!", "refund", "Refund me now"),
        ("please send a new one", "replacement", "please send a new one"),
        ("屏幕有坏点，请给我换一个新的。", "replacement", "请给我换一个新的"),
        ("给个说法", "explanation", "给个说法"),
        ("我希望你们给我一个合理的解释", "explanation", "我希望你们给我一个合理的解释"),
        ("explain why I was charged twice", "explanation", "explain why I was charged twice"),
        ("我要求赔偿", "compensation", "我要求赔偿"),
        ("I deserve compensation for the wasted day", "compensation", "I deserve compensation"),
        ("fix it", "repair", "fix it"),
        ("空调又坏了，希望尽快派人上门维修。", "repair", "希望尽快派人上门维修"),
        ("I expect an apology", "apology", "I expect an apology"),
        ("服务员骂人，必须向我道歉。", "apology", "必须向我道歉"),
        ("I want to speak to a manager", "other", "I want to speak to a manager"),
        ("我要取消订单", "other", "我要取消订单"),
    ],
)
def test_an_ask_in_the_text_is_inferred_with_its_words(
    text: str, outcome: str, evidence: str
) -> None:
    found = inferred(text)
    assert found is not None, text
    assert found[0] == outcome
    assert evidence in found[1]


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("can I get a refund?", "refund"),
        ("How do I get a refund for this?", "refund"),
        ("能退款吗", "refund"),
        ("这个能不能换货？", "replacement"),
        ("Why can't you just refund me?", "refund"),
        ("请问怎么退款", "refund"),
    ],
)
def test_a_question_asks(text: str, outcome: str) -> None:
    assert (inferred(text) or ("none",))[0] == outcome


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("I still haven't received my refund", "refund"),
        ("Still no refund after six weeks.", "refund"),
        ("Refund still missing", "refund"),
        ("退款一直没到账，再不处理我就去消协投诉！", "refund"),
        ("申请退款一周了还没到账", "refund"),
        ("再不退款我就去12315投诉", "refund"),
        ("商家不给退款，太过分了", "refund"),
        ("You refuse to refund unused days on an annual pass.", "refund"),
        ("I was promised a refund within 7 days; it has been seven weeks.", "refund"),
    ],
)
def test_an_outcome_awaited_or_refused_is_still_asked(text: str, outcome: str) -> None:
    assert (inferred(text) or ("none",))[0] == outcome


@pytest.mark.parametrize(
    "text",
    [
        # policies and mentions
        "Your refund policy is a joke",
        "What is your refund policy?",
        "退款政策太不合理了",
        "还在保修期内就坏了",
        "Just wanted to say the repair team did a fantastic job",
        # "not needed", negations
        "No refund needed, just letting you know the lift is broken",
        "I don't want a replacement",
        "I do not want a replacement, the shop should be more careful",
        "不用退款，下次注意就好",
        "我不想要赔偿，只是提个意见",
        "Please don't send a new one",
        # the past: done already
        "they refunded me last week",
        "I got a refund last week, thanks",
        "上周已经给我退款了，谢谢",
        "退款已经到账了",
        "我已经换过一次了，还是坏的",
        "They tried to fix it three times and it still leaks",
        "客服解释了半天也没用",
        # waved away
        "道歉有什么用？",
        # mentions without any ask
        "the replacement also broke",
        "The manager was rude to me",
        "快递一周了还没收到",
        "房间很干净，早餐也不错。",
    ],
)
def test_mentions_negations_and_past_outcomes_are_no_ask(text: str) -> None:
    assert inferred(text) is None


def test_a_negated_ask_leaves_the_other_clause_asking() -> None:
    assert inferred("我不要换货，我要退款") == ("refund", "我要退款")
    assert inferred("不需要退款，换一个就行") == ("replacement", "换一个就行")
    assert inferred("I'd like a replacement, not a refund") == (
        "replacement",
        "I'd like a replacement",
    )
    assert inferred("They refunded the first one but I want a refund for this one too") == (
        "refund",
        "I want a refund for this one too",
    )


def test_of_two_outcomes_asked_the_strongest_is_expected() -> None:
    # The rules list compensation, refund, replacement, repair, apology, explanation,
    # other: strongest first.
    assert RULES.compiled.outcomes[:3] == (
        ExpectedOutcome.COMPENSATION,
        ExpectedOutcome.REFUND,
        ExpectedOutcome.REPLACEMENT,
    )
    assert (inferred("I want a refund or a replacement") or ("",))[0] == "refund"
    assert (inferred("换货或者退款都可以") or ("",))[0] == "refund"
    assert (inferred("I want an apology and compensation") or ("",))[0] == "compensation"
    text = "Explain why it broke. Then fix it."
    asks = asks_in(RULES, prepare(text), text)
    assert [a.outcome for a in asks] == [ExpectedOutcome.EXPLANATION, ExpectedOutcome.REPAIR]
    assert (inferred(text) or ("",))[0] == "repair"


def test_the_evidence_is_the_customers_own_words() -> None:
    # Read from the original text: case and full-width punctuation as written.
    assert inferred("ＰＬＥＡＳＥ send a NEW one") == ("replacement", "ＰＬＥＡＳＥ send a NEW one")
    assert inferred("I don’t want a refund, I want a replacement") == (
        "replacement",
        "I want a replacement",
    )
    # A clause too long to quote whole is quoted from the words that ask.
    long = (
        "I bought this blender from your store in town last month, used it twice and then"
        " it stopped so I want my money back and an explanation of how this passed any test"
    )
    assert inferred(long) == (
        "refund",
        "want my money back and an explanation of how this passed any test",
    )


def test_the_outcome_the_channel_captured_is_the_customers() -> None:
    said = feedback(
        "我要退款", expected_outcome=ExpectedOutcome.REPLACEMENT, expected_by=BY, language="zh"
    )
    expectation = expectation_of(RULES, said)
    assert expectation is not None
    assert expectation.model_dump() == {
        "outcome": ExpectedOutcome.REPLACEMENT,
        "source": "customer",
        "evidence": None,
        "expected_by": BY,
    }


def test_an_inferred_expectation_keeps_the_date_the_channel_captured() -> None:
    expectation = expectation_of(RULES, feedback("Please fix it by Friday", expected_by=BY))
    assert expectation is not None
    assert (expectation.outcome, expectation.source) == (ExpectedOutcome.REPAIR, "inferred")
    assert expectation.evidence == "Please fix it by Friday"
    assert expectation.expected_by == BY
    assert expectation_of(RULES, feedback("Lovely stay, thank you", expected_by=BY)) is None


def test_the_subject_is_read_too() -> None:
    expectation = expectation_of(RULES, feedback("Order 1234", subject="Refund request"))
    assert expectation is not None and expectation.outcome is ExpectedOutcome.REFUND


def test_every_classification_carries_the_expectation_and_says_why() -> None:
    model = load(TAXONOMY.artifact_path)
    asked = classify(TAXONOMY, model, feedback("重复扣款两次，我要退款", language="zh"))
    assert asked.expectation is not None
    assert (asked.expectation.outcome, asked.expectation.source) == ("refund", "inferred")
    assert "expectation refund: inferred from 我要退款" in asked.reasons
    assert asked.reasons[-1].startswith("urgency ")
    said = classify(
        TAXONOMY, model, feedback("The app crashes", expected_outcome=ExpectedOutcome.REPAIR)
    )
    assert said.expectation is not None and said.expectation.source == "customer"
    assert "expectation repair: said by the customer" in said.reasons
    assert classify(TAXONOMY, model, feedback("Thanks, great service!")).expectation is None


def count(source: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "closeloop_classifier_expectations_total", {"source": source, "outcome": outcome}
    )
    return value or 0.0


def test_the_expectation_metric_moves_once_per_classification() -> None:
    expectation = expectation_of(RULES, feedback("I want my money back"))
    cases = [
        (a_classification(expectation=expectation), ("inferred", "refund")),
        (a_classification(), ("none", "none")),
        (
            a_classification(
                expectation=expectation_of(
                    RULES, feedback("x", expected_outcome=ExpectedOutcome.APOLOGY)
                )
            ),
            ("customer", "apology"),
        ),
    ]
    for classification, labels in cases:
        before = count(*labels)
        metrics.observe(classification)
        assert count(*labels) == before + 1


# --- the rules file -------------------------------------------------------------------


def taxonomy_with(tmp_path: Path, change: dict[str, Any] | None, drop: bool = False) -> Path:
    document = yaml.safe_load(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))
    if drop:
        del document["expectations"]
    for dotted, value in (change or {}).items():
        node = document
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "named", "why"),
    [
        (
            {"expectations.outcomes.refund.asks.regex": ["退款(还没"]},
            "expectations.outcomes.refund.asks.regex",
            "not a valid regular expression",
        ),
        (
            {"expectations.outcomes.money_back": {"terms": {"en": ["money back"]}}},
            "expectations.outcomes.money_back",
            "",
        ),
        (
            {"expectations.outcomes.apology": {"description": "no words"}},
            "expectations.outcomes.apology",
            "an outcome needs terms or asks",
        ),
        (
            {"expectations.negation.zh": ["不用", " "]},
            "expectations.negation.zh",
            "keywords must not be empty",
        ),
        (
            {"expectations.outcomes.refund.terms.spanish": ["reembolso"]},
            "expectations.outcomes.refund.terms.spanish",
            "",
        ),
    ],
)
def test_a_bad_expectation_rule_stops_the_start_naming_it(
    tmp_path: Path, change: dict[str, Any], named: str, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_taxonomy(taxonomy_with(tmp_path, change))
    assert named in str(caught.value)
    assert why in str(caught.value)


def test_the_rules_are_data(tmp_path: Path) -> None:
    added = taxonomy_with(
        tmp_path, {"expectations.outcomes.refund.asks.zh": ["退款退款"], "version": "t"}
    )
    rules = load_taxonomy(added).expectations
    text = "退款退款！"
    assert [a.outcome for a in asks_in(rules, prepare(text), text)] == ["refund"]
    assert inferred(text) is None


def test_a_taxonomy_without_expectation_rules_infers_nothing(tmp_path: Path) -> None:
    rules = load_taxonomy(taxonomy_with(tmp_path, None, drop=True)).expectations
    assert asks_in(rules, prepare("我要退款"), "我要退款") == []
    said = feedback("x", expected_outcome=ExpectedOutcome.REFUND)
    assert expectation_of(rules, said) is not None
