"""Prometheus configuration and alert rules, checked by promtool (Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, ROOT

PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
# What the operations runbook must cover (docs/operations.md has an entry for each).
ISSUE_ALERTS = {
    "CloseloopServiceDown",
    "CloseloopConsumerLagGrowing",
    "CloseloopDeadLetters",
    "CloseloopIntakeErrors",
    "CloseloopSlaBreachRateHigh",
    "CloseloopCallbacksOverdue",
    "CloseloopSurveyResponseRateFalling",
    "CloseloopClassificationConfidenceFalling",
    "CloseloopPromisesBroken",
    "CloseloopCustomersLeftInSilence",
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (make test does)")
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def alerts() -> dict[str, dict[str, object]]:
    return {
        rule["alert"]: rule
        for path in RULE_FILES
        for group in manifests.load(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_the_rules_pass_promtool_check_with_its_linter() -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_a_broken_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    source = PROMETHEUS / "tests" / "closeloop.test.yml"
    broken = tmp_path / "tests" / source.name
    broken.parent.mkdir()
    shutil.copytree(PROMETHEUS / "rules", tmp_path / "rules")
    text = source.read_text(encoding="utf-8")
    assert 'summary: "intake fails 5% of requests"' in text
    broken.write_text(text.replace("intake fails 5%", "intake fails 6%"), encoding="utf-8")
    result = promtool("test", "rules", broken)
    assert result.returncode != 0
    assert "intake fails 5% of requests" in result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "compose.yml"])
def test_the_scrape_configurations_pass_promtool_check(config: str) -> None:
    result = promtool("check", "config", PROMETHEUS / config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_the_alerts_the_runbook_covers_are_all_defined() -> None:
    assert set(alerts()) >= ISSUE_ALERTS


def test_every_alert_is_unit_tested_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for test in manifests.load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(alerts()) - fired == set()
    assert set(alerts()) - quiet == set(), "every alert is also shown staying quiet"


def slug(heading: str) -> str:
    """The anchor GitHub and most Markdown renderers give a heading."""
    text = unicodedata.normalize("NFKC", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_alert_has_a_severity_and_a_runbook_entry_that_exists() -> None:
    operations = ROOT / "docs" / "operations.md"
    anchors = {
        slug(line.lstrip("#"))
        for line in operations.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for name, rule in alerts().items():
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in ("critical", "warning"), name
        assert isinstance(annotations, dict), name
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), name
        page, _, anchor = str(annotations["runbook_url"]).partition("#")
        assert page == "docs/operations.md" and anchor in anchors, name
    text = operations.read_text(encoding="utf-8")
    for name in alerts():
        assert f"`{name}`" in text, f"docs/operations.md does not name {name}"
