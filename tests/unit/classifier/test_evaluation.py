"""The evaluation report: pure arithmetic over labelled examples and classifications."""

from typing import Any

import pytest

from services.classifier.offline.dataset import LabelledExample
from services.classifier.offline.evaluation import evaluate, format_report
from shared.contracts import Classification, RootCause, Urgency


def example(cause: RootCause, urgency: Urgency, **fields: Any) -> LabelledExample:
    return LabelledExample(text="x", root_cause=cause, urgency=urgency, lang="zh", **fields)


def result(cause: RootCause, urgency: Urgency, **fields: Any) -> Classification:
    defaults: dict[str, Any] = {"sentiment": 0.0, "confidence": 0.9, "model_version": "m"}
    return Classification(root_cause=cause, urgency=urgency, **{**defaults, **fields})


def test_perfect_predictions_score_one() -> None:
    examples = [
        example("billing", Urgency.HIGH),
        example("delivery", Urgency.CRITICAL),
    ]
    report = evaluate(examples, [result(e.root_cause, e.urgency or Urgency.LOW) for e in examples])
    assert report.root_cause.macro_f1 == 1.0
    assert report.root_cause.accuracy == 1.0
    assert report.critical_recall == 1.0
    assert report.root_cause.confusion == [[1, 0], [0, 1]]


def test_per_class_precision_recall_and_macro_f1() -> None:
    examples = [example("billing", Urgency.MEDIUM)] * 2 + [example("delivery", Urgency.MEDIUM)] * 2
    predicted = [
        result("billing", Urgency.MEDIUM),
        result("delivery", Urgency.MEDIUM),
        result("delivery", Urgency.MEDIUM),
        result("delivery", Urgency.MEDIUM),
    ]
    report = evaluate(examples, predicted)
    scores = {c.label: c for c in report.root_cause.classes}
    assert scores["billing"].precision == 1.0 and scores["billing"].recall == 0.5
    assert scores["delivery"].precision == pytest.approx(2 / 3, abs=1e-4)
    assert scores["delivery"].recall == 1.0
    f1_billing, f1_delivery = 2 / 3, 0.8
    assert report.root_cause.macro_f1 == pytest.approx((f1_billing + f1_delivery) / 2, abs=1e-4)


def test_critical_recall_counts_and_lists_the_missed() -> None:
    examples = [
        LabelledExample(text="起火了", root_cause="product_quality", urgency=Urgency.CRITICAL),
        LabelledExample(text="律师", root_cause="billing", urgency=Urgency.CRITICAL),
    ]
    predicted = [
        result("product_quality", Urgency.CRITICAL),
        result("billing", Urgency.HIGH),
    ]
    report = evaluate(examples, predicted)
    assert report.critical_recall == 0.5
    assert report.critical_missed == ["律师"]
    assert "missed critical: 律师" in format_report(report)


def test_positive_feedback_rated_high_is_counted() -> None:
    examples = [example("other", Urgency.LOW, sentiment="positive")] * 4
    predicted = [result("other", Urgency.LOW, sentiment=0.8)] * 3 + [
        result("other", Urgency.HIGH, sentiment=-0.2)
    ]
    report = evaluate(examples, predicted)
    assert report.positive_high_rate == 0.25
    assert report.sentiment_sign_accuracy == 0.75


def test_the_secondary_cause_counts_when_it_names_the_labelled_cause() -> None:
    examples = [example("delivery", Urgency.MEDIUM, secondary_cause="billing")]
    predicted = [result("billing", Urgency.MEDIUM, secondary_cause="delivery")]
    report = evaluate(examples, predicted)
    assert report.root_cause.accuracy == 0.0
    assert report.primary_or_secondary_accuracy == 1.0
    assert report.secondary_correct == 1


def test_the_report_prints_every_number_the_issue_asks_for() -> None:
    examples = [example("billing", Urgency.CRITICAL)]
    text = format_report(evaluate(examples, [result("billing", Urgency.CRITICAL)]))
    for heading in ("precision", "recall", "f1", "macro-F1", "confusion matrix", "critical recall"):
        assert heading in text


def test_the_report_as_json_carries_the_derived_rates() -> None:
    examples = [example("billing", Urgency.CRITICAL, sentiment="positive")]
    data = evaluate(examples, [result("billing", Urgency.CRITICAL)]).as_dict()
    assert data["critical_recall"] == 1.0
    assert data["positive_high_rate"] == 1.0
    assert data["root_cause"]["macro_f1"] == 1.0


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError):
        evaluate([example("billing", Urgency.LOW)], [])
