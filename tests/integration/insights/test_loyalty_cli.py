"""``python -m services.insights loyalty simulate|fit|evaluate`` as real processes: simulated
data is fitted, the written policy evaluates to the fit's in-sample AUC; bad input exits 2
naming what is wrong, a fit without --out says it wrote nothing and the tree reports its
rules (the command line in this process); and histories folded into insights' MongoDB
evaluate exactly as the same events read from a file."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from services.insights.offline.cli import app
from services.insights.offline.fitting import write_outcomes
from services.insights.offline.simulate import simulate, write_events
from services.insights.policy import load_policy
from services.insights.store import InsightsStore
from shared.db import Document
from shared.envelope import Event
from tests.conftest import Infra

CUSTOMERS = 1_000
SEED = 7
AT = "2026-10-01T00:00:00Z"
AUC = re.compile(r"^AUC (\d\.\d{4})", re.MULTILINE)
# The first AUC of a fit's report, indented under "cross-validated".
CROSS_VALIDATED_AUC = re.compile(r"^\s+AUC (\d\.\d{4})", re.MULTILINE)
IN_SAMPLE = re.compile(r"in sample: AUC (\d\.\d{4}) of the regression, (\d\.\d{4}) of the fitted")


def run(*args: str | Path | int, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.insights", "loyalty", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_here(*args: str | Path | int) -> subprocess.CompletedProcess[str]:
    """The same command line in this process: for refusals and reports, which need no
    second Python start (its imports cost seconds) to show what the user reads; the
    process itself is run by the fixture and the tests of fit and evaluate."""
    argv = ["loyalty", *map(str, args)]
    result = CliRunner().invoke(app, argv)
    return subprocess.CompletedProcess(argv, result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simulated")
    done = run("simulate", "--customers", CUSTOMERS, "--seed", SEED, "--at", AT, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"simulated {CUSTOMERS} customers (seed {SEED}, snapshot {AT})" in done.stdout
    assert re.search(r"oracle AUC \(of the true probabilities\): 0\.\d{4}", done.stdout)
    return out


def test_simulate_writes_events_and_outcomes(simulated: Path) -> None:
    lines = (simulated / "outcomes.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "customer_key,churned,when"
    assert len(lines) == CUSTOMERS + 1
    assert (simulated / "events.jsonl").stat().st_size > 0


def test_fit_writes_a_policy_that_evaluates_to_its_in_sample_auc(
    simulated: Path, tmp_path: Path
) -> None:
    outcomes, events = simulated / "outcomes.csv", simulated / "events.jsonl"
    out = tmp_path / "fitted.yaml"
    done = run("fit", outcomes, "--events", events, "--out", out)
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert "logistic regression of leaving" in report
    assert f"{CUSTOMERS} customers" in report
    assert "cross-validated (5 folds" in report and "lift in the riskiest 10%" in report
    assert "churn_intent" in report and "tier vip" in report
    assert f"fitted policy written to {out}" in report
    first = CROSS_VALIDATED_AUC.search(report)
    in_sample = IN_SAMPLE.search(report)
    assert first is not None and in_sample is not None
    cross_validated = float(first.group(1))
    policy = load_policy(out)
    assert policy.parts["churn_intent"].points < 0 < policy.parts["recovered"].points
    header = out.read_text(encoding="utf-8")
    assert f"cross-validated AUC {cross_validated:.4f}" in header

    checked = run("evaluate", outcomes, "--events", events, "--policy", out)
    assert checked.returncode == 0, checked.stderr
    assert "the policy as it is" in checked.stdout
    found = AUC.search(checked.stdout)
    assert found is not None
    assert found.group(1) == in_sample.group(2)
    assert abs(float(found.group(1)) - float(in_sample.group(1))) < 0.01


def test_fit_without_out_writes_nothing_and_says_so(simulated: Path) -> None:
    done = run_here("fit", simulated / "outcomes.csv", "--events", simulated / "events.jsonl")
    assert done.returncode == 0, done.stderr
    assert "fitted policy not written: give --out FILE" in done.stdout


def test_the_tree_reports_its_rules_and_a_useful_auc(simulated: Path) -> None:
    done = run_here(
        "fit", simulated / "outcomes.csv", "--events", simulated / "events.jsonl", "--model", "tree"
    )
    assert done.returncode == 0, done.stderr
    assert "decision tree (depth 3" in done.stdout and "|---" in done.stdout
    found = CROSS_VALIDATED_AUC.search(done.stdout)
    assert found is not None and float(found.group(1)) > 0.5


def test_a_bad_outcomes_line_exits_2_naming_the_line(simulated: Path, tmp_path: Path) -> None:
    good = (simulated / "outcomes.csv").read_text(encoding="utf-8").splitlines()[:3]
    bad = tmp_path / "outcomes.csv"
    bad.write_text("\n".join([*good, "c-x,maybe,2026-10-01T00:00:00Z"]) + "\n", encoding="utf-8")
    done = run_here("evaluate", bad, "--events", simulated / "events.jsonl")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert "line 4: churned must be 0, 1, true or false" in done.stderr
    assert done.stdout == ""


Args = Callable[[Path, Path], list[str | Path | int]]
BAD_INPUT: dict[str, tuple[Args, str]] = {
    "missing outcomes": (
        lambda sim, tmp: ["evaluate", tmp / "missing.csv", "--events", sim / "events.jsonl"],
        "missing.csv: no such file",
    ),
    "missing events": (
        lambda sim, tmp: ["fit", sim / "outcomes.csv", "--events", tmp / "missing.jsonl"],
        "missing.jsonl: no such file",
    ),
    "a tree written as a policy": (
        lambda sim, tmp: [
            "fit",
            sim / "outcomes.csv",
            "--events",
            sim / "events.jsonl",
            "--model",
            "tree",
            "--out",
            tmp / "tree.yaml",
        ],
        "--out goes with --model logistic",
    ),
    "missing policy": (
        lambda sim, tmp: ["evaluate", sim / "outcomes.csv", "--policy", tmp / "missing.yaml"],
        "missing.yaml",
    ),
    "a snapshot without a time zone": (
        lambda sim, tmp: ["simulate", "--out", tmp, "--at", "2026-10-01T00:00:00"],
        "--at must carry a time zone",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_a_message(simulated: Path, tmp_path: Path, case: str) -> None:
    args, message = BAD_INPUT[case]
    done = run_here(*args(simulated, tmp_path))
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("error: ") and message in done.stderr


# --- straight into insights -------------------------------------------------------------


async def fold_into(store: InsightsStore, events: list[Event[Any]]) -> None:
    """Each case's events in order, the cases side by side, as insights' consumers would."""
    cases: dict[str, list[Event[Any]]] = defaultdict(list)
    for event in events:
        cases[event.data.case_id].append(event)
    now = datetime(2026, 10, 1, tzinfo=UTC)

    async def one(case_id: str, case_events: list[Event[Any]]) -> None:
        for event in case_events:
            assert await store.apply(event, case_id, now)

    for start in range(0, len(cases), 8):
        batch = list(cases.items())[start : start + 8]
        await asyncio.gather(*(one(case_id, found) for case_id, found in batch))


async def test_evaluate_from_insights_database_matches_evaluate_from_the_events(
    infra: Infra,
    mongo_client: AsyncMongoClient[Document],
    database_name: str,
    tmp_path: Path,
) -> None:
    simulation = simulate(40, seed=3, at=datetime(2026, 10, 1, tzinfo=UTC))
    assert 0 < sum(o.churned for o in simulation.outcomes) < 40
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.csv"
    write_events(simulation.events, events)
    write_outcomes(simulation.outcome_rows(), outcomes)
    # The evaluation from the file needs no database: it runs while the events are folded.
    file_run = asyncio.ensure_future(
        asyncio.to_thread(run, "evaluate", outcomes, "--events", events)
    )
    await fold_into(InsightsStore(mongo_client[database_name]), simulation.events)
    from_database = await asyncio.to_thread(
        run, "evaluate", outcomes, "--mongo-url", infra.mongo_url, "--database", database_name
    )
    from_file = await file_run
    assert from_file.returncode == 0, from_file.stderr
    assert from_database.returncode == 0, from_database.stderr
    assert f"from insights' database {database_name!r}" in from_database.stdout
    file_lines, database_lines = from_file.stdout.splitlines(), from_database.stdout.splitlines()
    cases = f"histories: {simulation.cases} cases of "
    assert file_lines[0].startswith(cases) and database_lines[0].startswith(cases)
    # Everything after where the histories came from is the same, AUC to the last digit.
    assert database_lines[1:] == file_lines[1:]
    assert AUC.search(from_database.stdout) is not None
