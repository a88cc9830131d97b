"""Fitting the health score against simulated customers whose churn process is known: the
fit finds about what the truth allows, with the truth's signs; the measures add up; the
outcomes file is read strictly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from services.insights.domain import CaseFacts, PromiseFacts
from services.insights.loyalty import health
from services.insights.offline import fitting
from services.insights.offline.fitting import Outcome, OutcomesError
from services.insights.offline.simulate import DEFAULT_SEED, Simulation, simulate
from services.insights.policy import PARTS, load_policy
from shared.contracts import CustomerTier

CUSTOMERS = 3_000
AT = datetime(2026, 10, 1, tzinfo=UTC)
DEFAULT = load_policy()


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(CUSTOMERS, seed=DEFAULT_SEED, at=AT)


@pytest.fixture(scope="module")
def found(simulation: Simulation) -> dict[str, list[CaseFacts]]:
    return fitting.histories(simulation.events)


@pytest.fixture(scope="module")
def outcomes(simulation: Simulation) -> list[Outcome]:
    return simulation.outcome_rows()


@pytest.fixture(scope="module")
def logistic(outcomes: list[Outcome], found: dict[str, list[CaseFacts]]) -> fitting.LogisticFit:
    return fitting.fit_logistic(outcomes, found, DEFAULT)


def test_histories_hold_every_case_under_its_customer(
    simulation: Simulation, found: dict[str, list[CaseFacts]]
) -> None:
    assert sum(len(cases) for cases in found.values()) == simulation.cases
    for outcome in simulation.outcomes:
        cases = found.get(outcome.customer_key, [])
        assert len(cases) == outcome.cases
        opened = [case.opened_at for case in cases]
        assert opened == sorted(opened)  # type: ignore[type-var]


def test_the_fit_ranks_close_to_the_truth_and_better_than_the_default_policy(
    simulation: Simulation,
    outcomes: list[Outcome],
    found: dict[str, list[CaseFacts]],
    logistic: fitting.LogisticFit,
) -> None:
    oracle = simulation.oracle_auc()
    default = fitting.evaluate(outcomes, found, DEFAULT).measures.auc
    fitted = logistic.cross_validated.auc
    assert fitted >= oracle - 0.03
    assert fitted > default
    # Out of fold is the honest figure: in sample can only look better.
    assert logistic.in_sample_auc >= fitted


def test_the_fitted_points_have_the_true_process_s_signs(logistic: fitting.LogisticFit) -> None:
    points = {name: part.points for name, part in logistic.policy.parts.items()}
    for name in ("complaints", "dissatisfied", "churn_intent", "open_cases"):
        assert points[name] < 0, name
    assert points["recovered"] > 0
    # The truth's heaviest parts weigh most, as they do there.
    assert points["churn_intent"] < points["dissatisfied"] < points["complaints"]
    assert logistic.policy.tier_points(CustomerTier.VIP) > 0
    assert logistic.policy.tier_points(CustomerTier.STANDARD) == 0.0
    # What a fit leaves alone.
    for name in PARTS:
        assert logistic.policy.parts[name].half_life_days == DEFAULT.parts[name].half_life_days
    assert (logistic.policy.scale, logistic.policy.at_risk_below) == (
        DEFAULT.scale,
        DEFAULT.at_risk_below,
    )


def test_the_written_policy_loads_and_evaluates_to_the_in_sample_auc(
    outcomes: list[Outcome],
    found: dict[str, list[CaseFacts]],
    logistic: fitting.LogisticFit,
    tmp_path: Path,
) -> None:
    path = tmp_path / "fitted.yaml"
    path.write_text(fitting.policy_yaml(logistic, "outcomes.csv", "loyalty.yaml"), "utf-8")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Customer health score policy")
    assert f"{CUSTOMERS} customers" in text
    assert f"cross-validated AUC {logistic.cross_validated.auc:.4f}" in text
    loaded = load_policy(path)
    assert loaded == logistic.policy
    again = fitting.evaluate(outcomes, found, loaded)
    assert again.measures.auc == pytest.approx(logistic.written.measures.auc, abs=1e-12)
    # Rounded points and scores kept within 0..100 rank almost as the regression does.
    assert again.measures.auc == pytest.approx(logistic.in_sample_auc, abs=0.005)


def test_fitting_twice_gives_the_same_points(
    outcomes: list[Outcome], found: dict[str, list[CaseFacts]], logistic: fitting.LogisticFit
) -> None:
    again = fitting.fit_logistic(outcomes, found, DEFAULT)
    for name in PARTS:
        assert again.policy.parts[name].points == pytest.approx(
            logistic.policy.parts[name].points, abs=0.011
        )
    assert again.cross_validated.auc == pytest.approx(logistic.cross_validated.auc, abs=1e-9)


def test_the_tree_ranks_better_than_chance_and_shows_its_rules(
    outcomes: list[Outcome], found: dict[str, list[CaseFacts]]
) -> None:
    tree = fitting.fit_tree(outcomes, found, DEFAULT)
    assert tree.cross_validated.auc > 0.6
    assert tree.min_leaf == CUSTOMERS // 100
    report = tree.format()
    assert "|---" in report and "writes none" in report
    assert any(name in tree.rules for name in ("churn_intent", "dissatisfied", "open_cases"))


def test_the_measures_add_up(
    outcomes: list[Outcome], found: dict[str, list[CaseFacts]], logistic: fitting.LogisticFit
) -> None:
    default = fitting.evaluate(outcomes, found, DEFAULT)
    for measures in (logistic.cross_validated, logistic.written.measures, default.measures):
        assert sum(b.customers for b in measures.calibration) == CUSTOMERS
        assert len(measures.calibration) == fitting.BINS
        predicted = [b.predicted for b in measures.calibration]
        assert predicted == sorted(predicted)
        assert measures.lift >= 1
        assert measures.lift == pytest.approx(measures.riskiest_rate / measures.churn_rate)
        observed = sum(b.customers * b.observed for b in measures.calibration)
        assert observed == pytest.approx(measures.churned)
    # Out-of-fold probabilities are calibrated: the riskiest tenth left about as predicted.
    top = logistic.cross_validated.calibration[-1]
    assert abs(top.predicted - top.observed) < 0.1


def test_the_reports_read_as_text(
    outcomes: list[Outcome], found: dict[str, list[CaseFacts]], logistic: fitting.LogisticFit
) -> None:
    report = logistic.format()
    assert f"AUC {logistic.cross_validated.auc:.4f}" in report
    assert "lift in the riskiest 10%" in report
    for name in PARTS:
        assert name in report
    evaluation = fitting.evaluate(outcomes, found, DEFAULT)
    text = evaluation.format()
    assert "the policy as it is" in text and "tenth  customers" in text
    below = sum(
        1 for o in outcomes if health(found.get(o.customer_key, []), o.when, DEFAULT).score < 50
    )
    assert 0 < below < CUSTOMERS and evaluation.at_risk == below
    assert f"at risk (score below 50): {below} customers" in text
    assert f"under the current one: {below}" in report


def test_a_customer_without_history_has_zero_features_and_is_counted(
    outcomes: list[Outcome], found: dict[str, list[CaseFacts]]
) -> None:
    extra = [*outcomes[:50], Outcome("c-nobody", True, AT)]
    data = fitting.design(extra, found, DEFAULT)
    assert data.x.shape == (51, len(fitting.COLUMNS))
    assert not data.x[-1].any()
    quiet = sum(1 for o in outcomes[:50] if not found.get(o.customer_key))
    assert data.without_history == quiet + 1
    evaluation = fitting.evaluate(extra, found, DEFAULT)
    assert evaluation.without_history == quiet + 1


def test_outcomes_with_one_class_cannot_be_measured(found: dict[str, list[CaseFacts]]) -> None:
    stayed = [Outcome(key, False, AT) for key in list(found)[:20]]
    with pytest.raises(fitting.FitError, match="left and customers who stayed"):
        fitting.evaluate(stayed, found, DEFAULT)
    few = [*stayed, Outcome("c-one", True, AT)]
    with pytest.raises(fitting.FitError, match="at least 5"):
        fitting.fit_logistic(few, found, DEFAULT)


def test_ties_at_the_cut_share_the_riskiest_places() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0] * 3, dtype=np.int64)
    same = np.full(30, 0.2)
    measures = fitting.measures(y, same)
    assert measures.auc == 0.5
    assert measures.lift == pytest.approx(1.0)
    risk = np.arange(30, dtype=float)[::-1]  # the first row riskiest, then in order
    assert fitting.measures(y, same, risk=risk).lift == pytest.approx((1 / 3) / 0.1)


# --- the outcomes file ----------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "outcomes.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_outcomes_are_read_with_their_forms_of_churned_and_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customer_key,churned,when\n"
        "c-a,1,2026-10-01T00:00:00Z\n"
        "\n"
        "c-b, false ,2026-10-01T08:00:00+08:00\n"
        "c-a,TRUE,2026-07-01T00:00:00+00:00\n",
    )
    assert fitting.read_outcomes(path) == [
        Outcome("c-a", True, AT),
        Outcome("c-b", False, AT),
        Outcome("c-a", True, AT - timedelta(days=92)),
    ]


def test_outcomes_round_trip_through_the_csv_writer(tmp_path: Path) -> None:
    rows = [Outcome("c-a", True, AT), Outcome("c-b", False, AT + timedelta(hours=1))]
    path = tmp_path / "outcomes.csv"
    fitting.write_outcomes(rows, path)
    assert path.read_text(encoding="utf-8").splitlines()[2] == "c-b,0,2026-10-01T01:00:00Z"
    assert fitting.read_outcomes(path) == rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("key,churned,when\nc-a,1,2026-10-01T00:00:00Z\n", "line 1: the header must be"),
        ("customer_key,churned,when\n", "no outcomes"),
        (
            "customer_key,churned,when\nc-a,1,2026-10-01T00:00:00Z\nc-b,yes,2026-10-01Z\n",
            "line 3: churned",
        ),
        (
            "customer_key,churned,when\nc-a,1,2026-10-01T00:00:00\n",
            "line 2: when must carry a time zone",
        ),
        ("customer_key,churned,when\nc-a,1,last monday\n", "line 2: when must be an ISO 8601"),
        ("customer_key,churned,when\nc-a,1\n", "line 2: expected 3 fields"),
        ("customer_key,churned,when\n,1,2026-10-01T00:00:00Z\n", "line 2: customer_key is empty"),
        (
            "customer_key,churned,when\nc-a,1,2026-10-01T00:00:00Z\nc-a,0,2026-10-01T08:00:00+08:00\n",
            "line 3: c-a at .* is already on line 2",
        ),
    ],
)
def test_a_bad_outcomes_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OutcomesError, match=message):
        fitting.read_outcomes(write(tmp_path, text))


def test_a_missing_outcomes_file_is_an_outcomes_error(tmp_path: Path) -> None:
    with pytest.raises(OutcomesError, match=r"missing\.csv"):
        fitting.read_outcomes(tmp_path / "missing.csv")


def broken_promise(case: CaseFacts) -> CaseFacts:
    opened = case.opened_at
    assert opened is not None
    recorded = opened + timedelta(days=1)
    promise = PromiseFacts(
        promise_id=f"{case.case_id}-p1",
        what="call back",
        due_at=opened + timedelta(hours=8),
        made_by="agent-1",
        team="logistics",
        details_stamp=(opened, "made"),
        made_at=opened,
        outcome="broken",
        outcome_at=recorded,
        outcome_stamp=(recorded, "broken"),
    )
    return case.model_copy(update={"promises": (promise,)})


def test_a_part_no_customer_has_keeps_its_current_points(
    outcomes: list[Outcome], found: dict[str, list[CaseFacts]], logistic: fitting.LogisticFit
) -> None:
    # The simulated histories have no promises: nothing to fit their points to.
    for name in ("promises_broken", "promises_overdue"):
        assert logistic.means[name] == 0.0
        assert logistic.policy.parts[name] == DEFAULT.parts[name]
    noted = [line for line in logistic.format().splitlines() if "the current points kept" in line]
    assert [line.split()[0] for line in noted] == ["promises_broken", "promises_overdue"]
    # Once the customers who left had their promises broken, the fit learns the points.
    left = {outcome.customer_key for outcome in outcomes if outcome.churned}
    broken = {
        key: [broken_promise(case) for case in cases] if key in left else cases
        for key, cases in found.items()
    }
    refit = fitting.fit_logistic(outcomes, broken, DEFAULT)
    assert refit.means["promises_broken"] > 0
    assert refit.policy.parts["promises_broken"].points < DEFAULT.parts["promises_broken"].points
    assert refit.policy.parts["promises_overdue"] == DEFAULT.parts["promises_overdue"]
