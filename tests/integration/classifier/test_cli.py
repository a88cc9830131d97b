"""``python -m services.classifier classify|evaluate|train`` as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.classifier.model import load
from services.classifier.policy import load_taxonomy

TAXONOMY = load_taxonomy()
MODEL = load(TAXONOMY.artifact_path)


def run(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.classifier", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(*records: dict[str, object]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def test_classify_reads_stdin_and_writes_one_json_line_per_input() -> None:
    done = run(
        "classify",
        stdin=lines(
            {"id": "a", "text": "重复扣款两次，再不处理我就去12315投诉", "lang": "zh"},
            {"text": "Thank you, lovely stay!", "customer": "vip"},
            {
                "text": "Refund still missing",
                "channel": "social",
                "customer": {"handle": "@li", "tier": "premium"},
                "metadata": {"followers": 40000},
            },
        ),
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 3
    first = out[0]
    assert first["id"] == "a"
    assert first["root_cause"] == "billing"
    assert first["urgency"] == "critical"
    assert {"name": "legal_threat", "evidence": "12315", "weight": 3.0} in first["signals"]
    assert first["model_version"] == f"{MODEL.version}+{TAXONOMY.version}"
    for key in ("secondary", "sentiment", "confidence", "needs_review"):
        assert key in first
    assert out[1]["urgency"] == "low" and out[1]["sentiment"] > 0
    assert {s["name"] for s in out[2]["signals"]} >= {"customer_tier", "public_reach"}
    assert first["expectation"] is None  # a threat, no ask
    assert out[2]["expectation"] == {
        "outcome": "refund",
        "source": "inferred",
        "evidence": "Refund still missing",
        "expected_by": None,
    }


def test_classify_reads_a_file_and_stops_at_a_bad_line_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(lines({"text": "快递一周了还没收到"}) + "not json\n", encoding="utf-8")
    done = run("classify", str(source))
    assert done.returncode == 2
    assert "line 2" in done.stderr


def test_evaluate_prints_per_class_scores_macro_f1_confusion_and_critical_recall(
    tmp_path: Path,
) -> None:
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        lines(
            {"text": "充电宝充电时冒烟了", "root_cause": "product_quality", "urgency": "critical"},
            {"text": "快递一周了还没收到", "root_cause": "delivery", "urgency": "medium"},
            {"text": "Thank you, great service", "root_cause": "other", "urgency": "low"},
        ),
        encoding="utf-8",
    )
    done = run("evaluate", str(labelled))
    assert done.returncode == 0, done.stderr
    for expected in ("precision", "recall", "macro-F1", "confusion matrix", "critical recall"):
        assert expected in done.stdout
    assert "critical recall: 1.000 (1/1)" in done.stdout
    assert "examples: 3" in done.stdout


def test_evaluate_names_a_bad_label(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(lines({"text": "x", "root_cause": "weather"}), encoding="utf-8")
    done = run("evaluate", str(labelled))
    assert done.returncode == 2
    assert "labelled.jsonl:1" in done.stderr


def test_train_writes_a_loadable_versioned_artifact(tmp_path: Path) -> None:
    small = tmp_path / "train.jsonl"
    source = Path("services/classifier/data/train.jsonl").read_text(encoding="utf-8")
    small.write_text("\n".join(source.splitlines()[:300]) + "\n", encoding="utf-8")
    target = tmp_path / "model.npz"
    done = run("train", "--train-file", str(small), "--output", str(target), "--without-corpus")
    assert done.returncode == 0, done.stderr
    model = load(target)
    assert model.version.startswith("ngram-lr-")
    assert model.version in done.stdout
