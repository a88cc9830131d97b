"""How good the classifier is on a labelled set: pure computations over pairs of
labelled examples and classifications, and their plain-text report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sklearn.metrics import precision_recall_fscore_support

from services.classifier.offline.dataset import LabelledExample
from shared.contracts import Classification, Urgency, root_causes

URGENCY_ORDER = [Urgency.CRITICAL, Urgency.HIGH, Urgency.MEDIUM, Urgency.LOW]
HIGH_OR_CRITICAL = frozenset({Urgency.HIGH, Urgency.CRITICAL})


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class LabelReport:
    """Per-class scores, macro-F1, accuracy and the confusion matrix of one label."""

    labels: list[str]
    classes: list[ClassScores]
    macro_f1: float
    accuracy: float
    confusion: list[list[int]]
    examples: int


@dataclass(frozen=True)
class EvaluationReport:
    examples: int
    root_cause: LabelReport
    root_cause_by_language: dict[str, float]
    primary_or_secondary_accuracy: float
    secondary_predicted: int
    secondary_labelled: int
    secondary_correct: int
    secondary_found: int
    needs_review_rate: float
    accuracy_when_confident: float | None
    urgency: LabelReport | None = None
    critical_total: int = 0
    critical_found: int = 0
    critical_missed: list[str] = field(default_factory=list)
    positive_total: int = 0
    positive_high_or_critical: int = 0
    sentiment_total: int = 0
    sentiment_sign_correct: int = 0

    @property
    def critical_recall(self) -> float | None:
        return self.critical_found / self.critical_total if self.critical_total else None

    @property
    def positive_high_rate(self) -> float | None:
        return self.positive_high_or_critical / self.positive_total if self.positive_total else None

    @property
    def sentiment_sign_accuracy(self) -> float | None:
        return self.sentiment_sign_correct / self.sentiment_total if self.sentiment_total else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["critical_recall"] = self.critical_recall
        data["positive_high_rate"] = self.positive_high_rate
        data["sentiment_sign_accuracy"] = self.sentiment_sign_accuracy
        return data


def label_report(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> LabelReport:
    present = [label for label in labels if label in truth or label in predicted]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=present, zero_division=0
    )
    classes = [
        ClassScores(label, round(float(p), 4), round(float(r), 4), round(float(f), 4), int(s))
        for label, p, r, f, s in zip(present, precision, recall, f1, support, strict=True)
    ]
    # Macro-F1 over the classes that occur in the truth: a class nobody labelled cannot
    # be recalled, and counting it as 0 would say more about the file than the model.
    scored = [c for c in classes if c.support > 0]
    macro = sum(c.f1 for c in scored) / len(scored) if scored else 0.0
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    position = {label: i for i, label in enumerate(present)}
    matrix = [[0] * len(present) for _ in present]
    for t, p in zip(truth, predicted, strict=True):
        matrix[position[t]][position[p]] += 1
    return LabelReport(
        labels=list(present),
        classes=classes,
        macro_f1=round(macro, 4),
        accuracy=round(correct / len(truth), 4) if truth else 0.0,
        confusion=matrix,
        examples=len(truth),
    )


Pairs = Sequence[tuple[LabelledExample, Classification]]


def _cause_figures(pairs: Pairs) -> dict[str, Any]:
    """Root-cause scores, overall and per language, and how sure the classifier was."""
    causes = list(root_causes())
    truth = [e.root_cause for e, _ in pairs]
    predicted = [r.root_cause for _, r in pairs]
    by_language: dict[str, tuple[list[str], list[str]]] = {}
    for (example, _), t, p in zip(pairs, truth, predicted, strict=True):
        pair = by_language.setdefault(example.lang, ([], []))
        pair[0].append(t)
        pair[1].append(p)
    either = sum(
        1
        for e, r in pairs
        if r.root_cause in (e.root_cause, e.secondary_cause)
        or (e.secondary_cause is not None and r.secondary_cause == e.root_cause)
    )
    confident = [(e, r) for e, r in pairs if not r.needs_review]
    return {
        "root_cause": label_report(truth, predicted, causes),
        "root_cause_by_language": {
            lang: label_report(t, p, causes).macro_f1
            for lang, (t, p) in sorted(by_language.items())
        },
        "primary_or_secondary_accuracy": round(either / len(pairs), 4) if pairs else 0.0,
        "needs_review_rate": round(sum(r.needs_review for _, r in pairs) / len(pairs), 4)
        if pairs
        else 0.0,
        "accuracy_when_confident": round(
            sum(e.root_cause == r.root_cause for e, r in confident) / len(confident), 4
        )
        if confident
        else None,
    }


def _secondary_figures(pairs: Pairs) -> dict[str, Any]:
    secondary_predicted = [(e, r) for e, r in pairs if r.secondary_cause is not None]
    return {
        "secondary_predicted": len(secondary_predicted),
        "secondary_labelled": sum(1 for e, _ in pairs if e.secondary_cause is not None),
        # A predicted second cause is right when the example names it, as first or second.
        "secondary_correct": sum(
            1
            for e, r in secondary_predicted
            if r.secondary_cause in (e.root_cause, e.secondary_cause)
        ),
        "secondary_found": sum(
            1
            for e, r in pairs
            if e.secondary_cause is not None and r.secondary_cause == e.secondary_cause
        ),
    }


def _urgency_figures(pairs: Pairs) -> dict[str, Any]:
    """Urgency scores on the examples labelled with one, and the critical ones missed."""
    with_urgency = [(e, r) for e, r in pairs if e.urgency]
    urgency = None
    critical = [(e, r) for e, r in with_urgency if e.urgency is Urgency.CRITICAL]
    if with_urgency:
        urgency = label_report(
            [str(e.urgency) for e, _ in with_urgency],
            [r.urgency.value for _, r in with_urgency],
            [u.value for u in URGENCY_ORDER],
        )
    missed = [e.text for e, r in critical if r.urgency is not Urgency.CRITICAL]
    return {
        "urgency": urgency,
        "critical_total": len(critical),
        "critical_found": len(critical) - len(missed),
        "critical_missed": missed,
    }


def _sentiment_figures(pairs: Pairs) -> dict[str, Any]:
    positives = [(e, r) for e, r in pairs if e.sentiment == "positive"]
    polar = [(e, r) for e, r in pairs if e.sentiment in ("positive", "negative")]
    return {
        "positive_total": len(positives),
        "positive_high_or_critical": sum(1 for _, r in positives if r.urgency in HIGH_OR_CRITICAL),
        "sentiment_total": len(polar),
        "sentiment_sign_correct": sum(
            1 for e, r in polar if (r.sentiment > 0) == (e.sentiment == "positive")
        ),
    }


def evaluate(
    examples: Sequence[LabelledExample], results: Sequence[Classification]
) -> EvaluationReport:
    if len(examples) != len(results):
        raise ValueError("one classification per example")
    pairs = list(zip(examples, results, strict=True))
    return EvaluationReport(
        examples=len(examples),
        **_cause_figures(pairs),
        **_secondary_figures(pairs),
        **_urgency_figures(pairs),
        **_sentiment_figures(pairs),
    )


def _table(report: LabelReport) -> list[str]:
    width = max(len(label) for label in report.labels) if report.labels else 10
    lines = [f"{'':{width}}  precision  recall     f1  support"]
    for c in report.classes:
        lines.append(
            f"{c.label:{width}}  {c.precision:9.3f}  {c.recall:6.3f}  {c.f1:5.3f}  {c.support:7d}"
        )
    lines.append(f"{'macro-F1':{width}}  {report.macro_f1:.3f}   accuracy {report.accuracy:.3f}")
    lines.append("")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    short = [label[:6] for label in report.labels]
    lines.append(f"{'':{width}}  " + " ".join(f"{s:>6}" for s in short))
    for label, row in zip(report.labels, report.confusion, strict=True):
        lines.append(f"{label:{width}}  " + " ".join(f"{n:6d}" for n in row))
    return lines


def format_label_report(report: LabelReport) -> str:
    """Per-class table, macro-F1 and confusion matrix of one label, as plain text."""
    return "\n".join(_table(report))


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_report(report: EvaluationReport) -> str:
    lines = [f"examples: {report.examples}", "", "ROOT CAUSE", *_table(report.root_cause), ""]
    languages = ", ".join(f"{k} {v:.3f}" for k, v in report.root_cause_by_language.items())
    lines.append(f"macro-F1 by language: {languages}")
    lines.append(f"primary or secondary cause agrees: {report.primary_or_secondary_accuracy:.3f}")
    if report.secondary_predicted or report.secondary_labelled:
        precision = (
            report.secondary_correct / report.secondary_predicted
            if report.secondary_predicted
            else None
        )
        recall = (
            report.secondary_found / report.secondary_labelled
            if report.secondary_labelled
            else None
        )
        lines.append(
            f"secondary cause: {report.secondary_predicted} given, precision {_rate(precision)};"
            f" {report.secondary_labelled} labelled, recall {_rate(recall)}"
        )
    lines.append(
        f"needs review: {report.needs_review_rate:.3f} of classifications;"
        f" accuracy of the others {_rate(report.accuracy_when_confident)}"
    )
    if report.urgency is not None:
        lines += ["", "URGENCY", *_table(report.urgency), ""]
        lines.append(
            f"critical recall: {_rate(report.critical_recall)}"
            f" ({report.critical_found}/{report.critical_total})"
        )
        lines += [f"  missed critical: {text}" for text in report.critical_missed]
    if report.positive_total:
        lines.append(
            f"positive feedback rated high or critical: {_rate(report.positive_high_rate)}"
            f" ({report.positive_high_or_critical}/{report.positive_total})"
        )
    if report.sentiment_total:
        lines.append(
            f"sentiment sign agrees with the label: {_rate(report.sentiment_sign_accuracy)}"
            f" ({report.sentiment_sign_correct}/{report.sentiment_total})"
        )
    return "\n".join(lines)
