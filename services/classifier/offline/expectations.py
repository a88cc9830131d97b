"""``python -m services.classifier.offline.expectations evaluate FILE``: how well the
classifier reads what customers ask for.

FILE holds JSON lines ``{"text": ..., "language": "zh" | "en" | ..., "channel": ...,
"expected_outcome": "<outcome>" | null}``, where ``expected_outcome`` is the label: what
the text asks for, null when it asks for nothing. Each text is classified as feedback
whose channel captured no outcome, so the expectation is the one the rules infer, and the
report gives per outcome (and for "none") precision, recall and support, the accuracy,
and the counts of texts that asked but got none ("asked but missed") and that asked for
nothing but got an outcome ("not asked but inferred").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.classifier.domain import expectation_of
from services.classifier.policy import DEFAULT_TAXONOMY, ExpectationRules, load_taxonomy
from shared.clock import utcnow
from shared.config import ConfigError
from shared.contracts import Channel, Customer, ExpectedOutcome, Feedback

NONE = "none"
LABELS = (*(outcome.value for outcome in ExpectedOutcome), NONE)


class ExpectationExample(BaseModel):
    """One labelled text: what it asks for (``expected_outcome``), null for nothing."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str = Field(min_length=1)
    subject: str | None = None
    language: str = "other"
    channel: Channel | None = None
    expected_outcome: ExpectedOutcome | None

    @property
    def label(self) -> str:
        return self.expected_outcome.value if self.expected_outcome else NONE


class ExampleError(ValueError):
    """A line of the file that is not a labelled example; the message names it."""


def read_expectation_examples(path: Path) -> list[ExpectationExample]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            examples.append(ExpectationExample.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ExampleError(f"{path}:{number}: {exc}") from exc
    return examples


def inferred_outcomes(rules: ExpectationRules, examples: Sequence[ExpectationExample]) -> list[str]:
    """The outcome the rules read from each example's text, or "none"."""
    now = utcnow()
    customer = Customer(id="evaluation")
    outcomes = []
    for number, example in enumerate(examples):
        feedback = Feedback(
            feedback_id=f"evaluation-{number}",
            channel=example.channel or Channel.WEB,
            customer=customer,
            customer_key=customer.key,
            text=example.text,
            subject=example.subject,
            language=example.language,
            received_at=now,
            ingested_at=now,
        )
        expectation = expectation_of(rules, feedback)
        outcomes.append(expectation.outcome.value if expectation else NONE)
    return outcomes


@dataclass(frozen=True)
class LabelScores:
    label: str
    precision: float | None  # None when the label was never predicted
    recall: float | None  # None when no example has the label
    support: int
    predicted: int


@dataclass(frozen=True)
class ExpectationReport:
    examples: int
    labels: list[LabelScores]
    accuracy: float | None
    asked_but_missed: int
    not_asked_but_inferred: int
    wrong_outcome: int  # asked for one outcome, another inferred


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def score_expectations(truth: Sequence[str], predicted: Sequence[str]) -> ExpectationReport:
    """Per-label precision, recall and support, accuracy and the three kinds of error."""
    if len(truth) != len(predicted):
        raise ValueError("one prediction per example")
    pairs = list(zip(truth, predicted, strict=True))
    labels = []
    for label in LABELS:
        support = sum(1 for t, _ in pairs if t == label)
        guessed = sum(1 for _, p in pairs if p == label)
        right = sum(1 for t, p in pairs if t == p == label)
        labels.append(
            LabelScores(label, _ratio(right, guessed), _ratio(right, support), support, guessed)
        )
    return ExpectationReport(
        examples=len(pairs),
        labels=labels,
        accuracy=_ratio(sum(1 for t, p in pairs if t == p), len(pairs)),
        asked_but_missed=sum(1 for t, p in pairs if t != NONE and p == NONE),
        not_asked_but_inferred=sum(1 for t, p in pairs if t == NONE and p != NONE),
        wrong_outcome=sum(1 for t, p in pairs if NONE not in (t, p) and t != p),
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_expectation_report(report: ExpectationReport) -> str:
    lines = [
        f"{report.examples} examples",
        f"{'outcome':<14}{'precision':>10}{'recall':>10}{'support':>10}{'inferred':>10}",
    ]
    lines += [
        f"{s.label:<14}{_number(s.precision):>10}{_number(s.recall):>10}{s.support:>10}"
        f"{s.predicted:>10}"
        for s in report.labels
    ]
    lines += [
        f"accuracy: {_number(report.accuracy)}",
        f"asked but missed: {report.asked_but_missed}",
        f"not asked but inferred: {report.not_asked_but_inferred}",
        f"asked for one outcome, another inferred: {report.wrong_outcome}",
    ]
    return "\n".join(lines)


app = typer.Typer(
    help="Evaluate how the classifier reads what customers ask for.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def commands() -> None:
    """Evaluate how the classifier reads what customers ask for."""


@app.command()
def evaluate(
    file: Annotated[
        Path, typer.Argument(help="JSON lines with `text`, `language`, `expected_outcome`")
    ],
    taxonomy_file: Annotated[
        Path,
        typer.Option(
            "--taxonomy",
            envvar="CLOSELOOP_CLASSIFIER_TAXONOMY_FILE",
            help="Taxonomy file with the expectation rules",
        ),
    ] = DEFAULT_TAXONOMY,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Per-outcome precision, recall and support, accuracy, misses and false asks."""
    try:
        taxonomy = load_taxonomy(taxonomy_file)
        examples = read_expectation_examples(file)
    except (ConfigError, ExampleError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    report = score_expectations(
        [e.label for e in examples], inferred_outcomes(taxonomy.expectations, examples)
    )
    if as_json:
        data: dict[str, Any] = asdict(report)
        data["rules_version"] = taxonomy.version
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"rules: {taxonomy.version}")
    typer.echo(format_expectation_report(report))


if __name__ == "__main__":
    app(prog_name="python -m services.classifier.offline.expectations")
