"""Fitting and checking the customer health score (services/insights/loyalty.py) against
outcomes: which customers left within the outcome window after a time ``when``.

Each outcome row becomes one row of features: each part's decayed count as of ``when``
(``loyalty.features``, with the policy's half-lives) and the customer's tier as two
dummies (premium, vip; standard the reference). Then:

- ``fit_logistic``: a logistic regression of leaving on those columns, whose intercept
  and coefficients are a policy's base, points and tier offsets
  (``loyalty.policy_from_logit``); half-lives, scale and thresholds stay the policy's;
- ``fit_tree``: a shallow decision tree on the same columns, for a second opinion (it
  finds interactions and thresholds a sum of points cannot); it reports, it is no policy;
- ``evaluate``: a policy as it is, from the scores insights would compute.

Each gives the same measures: the AUC (the chance that a customer who left was ranked
riskier than one who stayed), the lift in the riskiest 10% (their churn rate over the
overall one) and a calibration table (deciles of predicted probability: customers, mean
predicted, observed rate). A fit's measures are cross-validated: each customer's
probability comes from a model fitted without them (5 stratified folds).

Pure apart from reading and writing the outcomes CSV: no clock, no database.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeClassifier, export_text

from services.insights.domain import CaseFacts, fold
from services.insights.loyalty import (
    churn_probability,
    customer_tier,
    features,
    health,
    policy_from_logit,
)
from services.insights.policy import PARTS, LoyaltyPolicy
from shared.contracts import CaseEvent, CaseRouted, CustomerTier
from shared.envelope import Event

Model = Literal["logistic", "tree"]
MODELS: Final[tuple[Model, ...]] = ("logistic", "tree")

TIER_COLUMNS: Final[Mapping[CustomerTier, str]] = {
    CustomerTier.PREMIUM: "tier_premium",
    CustomerTier.VIP: "tier_vip",
}
COLUMNS: Final[tuple[str, ...]] = (*PARTS, *TIER_COLUMNS.values())

FOLDS: Final = 5
RANDOM_STATE: Final = 0
RISKIEST_SHARE: Final = 0.10
BINS: Final = 10
# An L2 penalty of |w|^2 / 2 against a log-loss summed over thousands of customers
# (sklearn's C=1): it moves well-supported coefficients by well under a point, and only
# settles parts that few customers have or that move together (a reopen always comes
# with an escalation), which an unpenalised fit could send anywhere.
LOGISTIC_C: Final = 1.0
LOGISTIC_TOL: Final = 1e-10
LOGISTIC_MAX_ITER: Final = 10_000
TREE_DEPTH: Final = 3
# Leaves of at least 1% of the customers (and 25): a rule about a handful is noise.
TREE_MIN_LEAF: Final = 25
TREE_MIN_LEAF_SHARE: Final = 0.01


class OutcomesError(ValueError):
    """An outcomes file that cannot be used; the message names the file and line."""


class FitError(ValueError):
    """Outcomes that cannot be fitted or measured (one class only, too few rows)."""


# --- outcomes -------------------------------------------------------------------------

OUTCOMES_HEADER: Final = ("customer_key", "churned", "when")
_TRUE: Final = frozenset({"1", "true"})
_FALSE: Final = frozenset({"0", "false"})


@dataclass(frozen=True)
class Outcome:
    """Whether the customer left within the outcome window that starts at ``when``."""

    customer_key: str
    churned: bool
    when: datetime


def parse_outcomes(lines: Iterable[str], name: str) -> list[Outcome]:
    """Outcomes from CSV text with the header ``customer_key,churned,when``: churned 0/1
    or true/false, when ISO 8601 with a time zone. OutcomesError names the bad line."""
    reader = csv.reader(lines)
    header = next(reader, None)
    expected = ",".join(OUTCOMES_HEADER)
    if header is None:
        raise OutcomesError(f"{name}: empty; the first line must be the header {expected}")
    if [column.strip().lower() for column in header] != list(OUTCOMES_HEADER):
        raise OutcomesError(
            f"{name}, line 1: the header must be {expected}, not {','.join(header)}"
        )
    outcomes: list[Outcome] = []
    seen: dict[tuple[str, datetime], int] = {}
    for row in reader:
        line = reader.line_num
        if not any(value.strip() for value in row):
            continue
        outcome = _outcome(row, f"{name}, line {line}")
        earlier = seen.setdefault((outcome.customer_key, outcome.when), line)
        if earlier != line:
            raise OutcomesError(
                f"{name}, line {line}: {outcome.customer_key} at {row[2].strip()} is already "
                f"on line {earlier}"
            )
        outcomes.append(outcome)
    if not outcomes:
        raise OutcomesError(f"{name}: no outcomes after the header")
    return outcomes


def _outcome(row: Sequence[str], where: str) -> Outcome:
    if len(row) != len(OUTCOMES_HEADER):
        raise OutcomesError(
            f"{where}: expected 3 fields (customer_key,churned,when), got {len(row)}"
        )
    key, churned, when = (value.strip() for value in row)
    if not key:
        raise OutcomesError(f"{where}: customer_key is empty")
    if churned.lower() not in _TRUE | _FALSE:
        raise OutcomesError(f"{where}: churned must be 0, 1, true or false, not {churned!r}")
    try:
        at = datetime.fromisoformat(when)
    except ValueError:
        raise OutcomesError(
            f"{where}: when must be an ISO 8601 time (e.g. 2026-10-01T00:00:00Z), not {when!r}"
        ) from None
    if at.tzinfo is None:
        raise OutcomesError(f"{where}: when must carry a time zone (e.g. {when}Z), not {when!r}")
    return Outcome(key, churned.lower() in _TRUE, at.astimezone(UTC))


def read_outcomes(path: Path) -> list[Outcome]:
    try:
        # utf-8-sig: a file saved by a spreadsheet starts with a byte order mark.
        with path.open(encoding="utf-8-sig", newline="") as lines:
            return parse_outcomes(lines, str(path))
    except FileNotFoundError:
        raise OutcomesError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutcomesError(f"{path}: {exc}") from exc


def write_outcomes(outcomes: Iterable[Outcome], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(OUTCOMES_HEADER)
        for outcome in outcomes:
            when = outcome.when.astimezone(UTC).isoformat().replace("+00:00", "Z")
            writer.writerow((outcome.customer_key, int(outcome.churned), when))


# --- histories ------------------------------------------------------------------------

Histories = Mapping[str, Sequence[CaseFacts]]
"""Each customer key's cases."""


def histories(events: Iterable[Event[Any]]) -> dict[str, list[CaseFacts]]:
    """Each customer's cases, folded from their events as insights folds them; events of
    no case (feedback, reports, customer signals) are left out. Oldest case first."""
    cases: dict[str, CaseFacts] = {}
    for event in events:
        data = event.data
        if isinstance(data, CaseRouted | CaseEvent):
            cases[data.case_id] = fold(cases.get(data.case_id), event)
    out: dict[str, list[CaseFacts]] = {}
    for facts in cases.values():
        out.setdefault(facts.customer_key, []).append(facts)
    for found in out.values():
        found.sort(key=lambda case: (case.opened_at is None, case.opened_at, case.case_id))
    return out


# --- the design matrix ------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    x: NDArray[np.float64]
    """One row per outcome, one column per name in COLUMNS."""
    y: NDArray[np.int64]
    without_history: int
    """Outcomes of customers with no case at all: every feature zero."""

    @property
    def customers(self) -> int:
        return len(self.y)

    @property
    def churned(self) -> int:
        return int(self.y.sum())


def design(outcomes: Sequence[Outcome], found: Histories, policy: LoyaltyPolicy) -> Design:
    x = np.zeros((len(outcomes), len(COLUMNS)))
    y = np.fromiter((o.churned for o in outcomes), dtype=np.int64, count=len(outcomes))
    without = 0
    for row, outcome in enumerate(outcomes):
        cases = found.get(outcome.customer_key, ())
        without += not cases
        values = features(cases, outcome.when, policy)
        x[row, : len(PARTS)] = [values[name] for name in PARTS]
        tier = customer_tier(cases)
        if tier in TIER_COLUMNS:
            x[row, COLUMNS.index(TIER_COLUMNS[tier])] = 1.0
    return Design(x=x, y=y, without_history=without)


# --- measures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    customers: int
    predicted: float
    """Mean predicted probability of leaving."""
    observed: float
    """Share who left."""


@dataclass(frozen=True)
class Measures:
    customers: int
    churned: int
    auc: float
    lift: float
    """Churn rate in the riskiest 10% over the overall churn rate."""
    riskiest_rate: float
    calibration: tuple[Bin, ...]

    @property
    def churn_rate(self) -> float:
        return self.churned / self.customers

    def format(self) -> list[str]:
        lines = [
            f"AUC {self.auc:.4f} (0.5 ranks no better than chance, 1 ranks every customer "
            "who left above every one who stayed)",
            f"lift in the riskiest 10%: {self.lift:.2f} (their churn rate "
            f"{self.riskiest_rate:.1%} against {self.churn_rate:.1%} overall)",
            "calibration, by tenths of predicted probability:",
            "  tenth  customers  predicted  observed",
        ]
        lines += [
            f"  {i:>5}  {b.customers:>9}  {b.predicted:>9.3f}  {b.observed:>8.3f}"
            for i, b in enumerate(self.calibration, start=1)
        ]
        return lines


def auc(churned: Sequence[bool] | NDArray[Any], risk: Sequence[float] | NDArray[Any]) -> float:
    """The AUC of ``risk`` (higher: riskier) against who left; ties count half."""
    y = np.asarray(churned, dtype=np.int64)
    _both_classes(y)
    return float(roc_auc_score(y, np.asarray(risk, dtype=float)))


def measures(
    y: NDArray[np.int64], probability: NDArray[np.float64], risk: NDArray[np.float64] | None = None
) -> Measures:
    """The measures of predicted probabilities; ``risk`` orders customers for the AUC and
    the lift when it is not the probability itself (a score: lower is riskier)."""
    _both_classes(y)
    order = probability if risk is None else risk
    rate, riskiest = float(y.mean()), _riskiest_rate(y, order)
    return Measures(
        customers=len(y),
        churned=int(y.sum()),
        auc=float(roc_auc_score(y, order)),
        lift=riskiest / rate,
        riskiest_rate=riskiest,
        calibration=_calibration(y, probability),
    )


def _both_classes(y: NDArray[np.int64]) -> None:
    if y.size == 0 or y.min() == y.max():
        raise FitError("the outcomes need customers who left and customers who stayed")


def _riskiest_rate(y: NDArray[np.int64], risk: NDArray[np.float64]) -> float:
    """The churn rate among the riskiest 10%; customers tied at the cut share the places
    left pro rata, so that the answer does not depend on the order of the rows."""
    top = max(1, math.ceil(RISKIEST_SHARE * len(y)))
    cut = np.sort(risk)[::-1][top - 1]
    above, tied = risk > cut, risk == cut
    places = top - int(above.sum())
    churned = float(y[above].sum()) + places * float(y[tied].mean())
    return churned / top


def _calibration(y: NDArray[np.int64], probability: NDArray[np.float64]) -> tuple[Bin, ...]:
    order = np.argsort(probability, kind="stable")
    return tuple(
        Bin(len(part), float(probability[part].mean()), float(y[part].mean()))
        for part in np.array_split(order, BINS)
        if len(part)
    )


# --- evaluate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    policy: LoyaltyPolicy
    measures: Measures
    without_history: int
    at_risk: int
    """Customers whose score is below the policy's at_risk_below: how many the policy
    would announce at risk."""

    def format(self) -> str:
        m = self.measures
        lines = [
            f"the policy as it is, on {m.customers} customers, {m.churned} of whom left "
            f"({m.churn_rate:.1%}); {self.without_history} without any case",
            *m.format(),
            f"at risk (score below {self.policy.at_risk_below:g}): {self.at_risk} customers "
            f"({self.at_risk / m.customers:.1%})",
        ]
        return "\n".join(lines)


def evaluate(outcomes: Sequence[Outcome], found: Histories, policy: LoyaltyPolicy) -> Evaluation:
    """The measures of a policy as it is: each customer's score as insights computes it
    (``loyalty.health``), its probability (``loyalty.churn_probability``); no fitting."""
    scores = np.array(
        [health(found.get(o.customer_key, ()), o.when, policy).score for o in outcomes]
    )
    probability = np.array([churn_probability(score, policy) for score in scores])
    y = np.fromiter((o.churned for o in outcomes), dtype=np.int64, count=len(outcomes))
    without = sum(1 for o in outcomes if not found.get(o.customer_key))
    at_risk = int((scores < policy.at_risk_below).sum())
    return Evaluation(policy, measures(y, probability, risk=-scores), without, at_risk)


# --- fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticFit:
    previous: LoyaltyPolicy
    policy: LoyaltyPolicy
    """The previous policy with fitted base, points and tier offsets."""
    cross_validated: Measures
    in_sample_auc: float
    """Of the regression's own probabilities, on the customers it was fitted on."""
    written: Evaluation
    """The fitted policy evaluated as insights would score with it (rounded points,
    scores kept within 0..100): what ``evaluate`` of the written file gives."""
    current_at_risk: int
    """Customers below at_risk_below under the current policy: next to ``written.at_risk``,
    how the number of customers at risk would change with the fitted policy deployed."""
    means: Mapping[str, float]
    """Each column's mean: how much of each part the customers have."""
    without_history: int
    iterations: int

    def format(self) -> str:
        m = self.cross_validated
        lines = [
            f"logistic regression of leaving on {len(COLUMNS)} columns, {m.customers} "
            f"customers, {m.churned} of whom left ({m.churn_rate:.1%}); "
            f"{self.without_history} without any case; converged in {self.iterations} "
            "iterations",
            f"cross-validated ({FOLDS} folds, each customer predicted by a fit without them):",
            *(f"  {line}" for line in m.format()),
            f"in sample: AUC {self.in_sample_auc:.4f} of the regression, "
            f"{self.written.measures.auc:.4f} of the fitted policy's scores",
            f"at risk under the fitted policy (score below {self.policy.at_risk_below:g}): "
            f"{self.written.at_risk} customers; under the current one: {self.current_at_risk}",
            "",
            f"{'points (per item when new)':<28}{'fitted':>9}{'current':>9}{'mean count':>12}",
        ]
        for name in PARTS:
            fitted, current = self.policy.parts[name].points, self.previous.parts[name].points
            unseen = (
                "  (no customer has it: the current points kept)" if not self.means[name] else ""
            )
            lines.append(
                f"{name:<28}{fitted:>9.2f}{current:>9.2f}{self.means[name]:>12.3f}{unseen}"
            )
        lines.append(f"{'base':<28}{self.policy.base:>9.2f}{self.previous.base:>9.2f}")
        for tier, column in TIER_COLUMNS.items():
            fitted, current = self.policy.tier_points(tier), self.previous.tier_points(tier)
            label = f"tier {tier.value}"
            lines.append(f"{label:<28}{fitted:>9.2f}{current:>9.2f}{self.means[column]:>12.3f}")
        lines.append(
            "half-lives, horizon, scale and thresholds are the current policy's: a fit learns "
            "points only"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class TreeFit:
    cross_validated: Measures
    rules: str
    min_leaf: int
    without_history: int

    def format(self) -> str:
        m = self.cross_validated
        lines = [
            f"decision tree (depth {TREE_DEPTH}, leaves of at least {self.min_leaf} customers) "
            f"on {len(COLUMNS)} columns, {m.customers} customers, {m.churned} of whom left "
            f"({m.churn_rate:.1%}); {self.without_history} without any case",
            f"cross-validated ({FOLDS} folds, each customer predicted by a fit without them):",
            *(f"  {line}" for line in m.format()),
            "",
            "rules of the tree fitted on every customer (weights: customers who stayed, left):",
            self.rules.rstrip(),
            "a tree is not a sum of points: it checks a policy, it writes none",
        ]
        return "\n".join(lines)


def _folds(y: NDArray[np.int64]) -> StratifiedKFold:
    _both_classes(y)
    fewest = int(min(y.sum(), len(y) - y.sum()))
    if fewest < FOLDS:
        raise FitError(
            f"cross-validation needs at least {FOLDS} customers who left and {FOLDS} who "
            f"stayed; the outcomes have {fewest} of one"
        )
    return StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=RANDOM_STATE)


def _out_of_fold(model: Any, data: Design) -> NDArray[np.float64]:
    predicted = cross_val_predict(model, data.x, data.y, cv=_folds(data.y), method="predict_proba")
    return np.asarray(predicted[:, 1], dtype=np.float64)


def _logistic() -> LogisticRegression:
    return LogisticRegression(C=LOGISTIC_C, tol=LOGISTIC_TOL, max_iter=LOGISTIC_MAX_ITER)


def fit_logistic(
    outcomes: Sequence[Outcome], found: Histories, policy: LoyaltyPolicy
) -> LogisticFit:
    data = design(outcomes, found, policy)
    cross_validated = measures(data.y, _out_of_fold(_logistic(), data))
    model = _logistic().fit(data.x, data.y)
    coefficients = dict(zip(COLUMNS, (float(c) for c in model.coef_[0]), strict=True))
    fitted = policy_from_logit(
        policy,
        float(model.intercept_[0]),
        {name: coefficients[name] for name in PARTS},
        {
            CustomerTier.STANDARD: 0.0,
            **{tier: coefficients[column] for tier, column in TIER_COLUMNS.items()},
        },
    )
    # A part no customer has (every count zero: promises, in histories from before they
    # were tracked) has nothing to learn from: it keeps its current points, not the
    # fit's zero. Adding 0.0 turns the -0.0 of a zero coefficient times -scale into 0.0.
    unseen = {
        name: policy.parts[name] for name in PARTS if not data.x[:, COLUMNS.index(name)].any()
    }
    fitted = fitted.model_copy(
        update={
            "parts": {**fitted.parts, **unseen},
            "tiers": {tier: points + 0.0 for tier, points in fitted.tiers.items()},
        }
    )
    in_sample = float(roc_auc_score(data.y, model.predict_proba(data.x)[:, 1]))
    return LogisticFit(
        previous=policy,
        policy=fitted,
        cross_validated=cross_validated,
        in_sample_auc=in_sample,
        written=evaluate(outcomes, found, fitted),
        current_at_risk=evaluate(outcomes, found, policy).at_risk,
        means=dict(zip(COLUMNS, (float(v) for v in data.x.mean(axis=0)), strict=True)),
        without_history=data.without_history,
        iterations=int(model.n_iter_[0]),
    )


def _tree(customers: int) -> DecisionTreeClassifier:
    min_leaf = max(TREE_MIN_LEAF, math.ceil(TREE_MIN_LEAF_SHARE * customers))
    return DecisionTreeClassifier(
        max_depth=TREE_DEPTH, min_samples_leaf=min_leaf, random_state=RANDOM_STATE
    )


def fit_tree(outcomes: Sequence[Outcome], found: Histories, policy: LoyaltyPolicy) -> TreeFit:
    data = design(outcomes, found, policy)
    tree = _tree(data.customers)
    cross_validated = measures(data.y, _out_of_fold(tree, data))
    fitted = _tree(data.customers).fit(data.x, data.y)
    rules = export_text(fitted, feature_names=list(COLUMNS), show_weights=True, decimals=3)
    return TreeFit(
        cross_validated=cross_validated,
        rules=rules,
        min_leaf=int(tree.min_samples_leaf),
        without_history=data.without_history,
    )


def fit(
    outcomes: Sequence[Outcome], found: Histories, policy: LoyaltyPolicy, model: Model
) -> LogisticFit | TreeFit:
    if model == "tree":
        return fit_tree(outcomes, found, policy)
    return fit_logistic(outcomes, found, policy)


# --- the fitted policy as a file ----------------------------------------------------------


def policy_yaml(result: LogisticFit, outcomes_name: str, previous_name: str) -> str:
    """The fitted policy as a loyalty policy file, with a header saying how it was made."""
    m = result.cross_validated
    header = [
        "Customer health score policy (docs/loyalty.md), fitted by `python -m services.insights",
        f"loyalty fit` (logistic regression) to the outcomes in {outcomes_name}:",
        f"{m.customers} customers, {m.churned} of whom left; cross-validated AUC {m.auc:.4f},",
        f"lift in the riskiest 10% {m.lift:.2f}. Base, points and tier offsets are fitted;",
        f"scale, half-lives, horizon and thresholds are those of {previous_name}.",
        "Deploy: CLOSELOOP_INSIGHTS_LOYALTY_POLICY_FILE names the file insights loads.",
    ]
    body = yaml.safe_dump(
        result.policy.model_dump(mode="json"),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )
    return "".join(f"# {line}\n" for line in header) + "\n" + body
