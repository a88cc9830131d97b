"""``python -m services.classifier.offline.expectations evaluate FILE``: the report's
arithmetic, and the command on a small labelled file written for these tests
(data/expectations_sample.jsonl: 25 texts, some the rules get wrong on purpose)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from services.classifier.offline.expectations import (
    LABELS,
    app,
    format_expectation_report,
    score_expectations,
)

SAMPLE = Path(__file__).with_name("data") / "expectations_sample.jsonl"


def test_scores_count_per_label_and_the_three_kinds_of_error() -> None:
    truth = ["refund", "refund", "apology", "none", "none", "replacement"]
    predicted = ["refund", "none", "apology", "refund", "none", "refund"]
    report = score_expectations(truth, predicted)
    scores = {s.label: s for s in report.labels}
    assert [s.label for s in report.labels] == list(LABELS)
    assert (scores["refund"].precision, scores["refund"].recall) == (0.3333, 0.5)
    assert (scores["refund"].support, scores["refund"].predicted) == (2, 3)
    assert (scores["none"].precision, scores["none"].recall, scores["none"].support) == (
        0.5,
        0.5,
        2,
    )
    assert scores["replacement"].precision is None  # never inferred
    assert scores["repair"].recall is None  # never asked
    assert report.accuracy == 0.5
    assert report.asked_but_missed == 1
    assert report.not_asked_but_inferred == 1
    assert report.wrong_outcome == 1
    text = format_expectation_report(report)
    assert "asked but missed: 1" in text and "not asked but inferred: 1" in text


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_evaluate_prints_the_report_of_the_sample() -> None:
    code, out = run("evaluate", str(SAMPLE))
    assert code == 0, out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:1].isalpha()}
    # Worked out by hand from the file: the rules miss two implicit apologies, read a
    # refund where the customer put a replacement first ("a replacement would be nice
    # but a refund is fine") and a replacement in "to the new one in my profile".
    assert rows["refund"] == ["0.800", "1.000", "4", "5"]
    assert rows["replacement"] == ["0.667", "0.667", "3", "3"]
    assert rows["apology"] == ["1.000", "0.500", "4", "2"]
    assert rows["none"] == ["0.778", "0.875", "8", "9"]
    assert "25 examples" in out
    assert "accuracy: 0.840" in out
    assert "asked but missed: 2" in out
    assert "not asked but inferred: 1" in out
    assert "asked for one outcome, another inferred: 1" in out


def test_evaluate_reports_json() -> None:
    code, out = run("evaluate", str(SAMPLE), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["examples"] == 25 and report["accuracy"] == 0.84
    assert report["rules_version"].startswith("rules-")
    assert {s["label"]: s["support"] for s in report["labels"]}["compensation"] == 1


def test_evaluate_stops_at_a_bad_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"text": "我要退款", "language": "zh", "expected_outcome": "refund"}\n'
        '{"text": "I want cake", "language": "en", "expected_outcome": "cake"}\n',
        encoding="utf-8",
    )
    code, out = run("evaluate", str(bad))
    assert code == 2
    assert "bad.jsonl:2" in out and "expected_outcome" in out


def test_the_command_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.classifier.offline.expectations", "evaluate", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "accuracy: 0.840" in done.stdout
