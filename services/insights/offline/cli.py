"""``python -m services.insights loyalty fit|evaluate|simulate``: the customer health
score from the shell (docs/loyalty.md).

loyalty fit OUTCOMES.csv        fit the policy's points to who left; prints the report,
                                and with --out writes the fitted policy
loyalty evaluate OUTCOMES.csv   the same measures for a policy as it is
loyalty simulate --out DIR      simulated events and outcomes with a known churn process

fit and evaluate read the customers' histories from an events file (--events: JSON lines
of CloudEvents, folded in memory as insights folds them) or, without one, from insights'
MongoDB (--mongo-url, --database; the service's own environment variables).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from services.insights.domain import CaseFacts
from services.insights.offline.fitting import (
    FitError,
    LogisticFit,
    Outcome,
    OutcomesError,
    evaluate,
    fit,
    histories,
    policy_yaml,
    read_outcomes,
)
from services.insights.offline.simulate import (
    DEFAULT_AT,
    DEFAULT_CUSTOMERS,
    DEFAULT_SEED,
    OUTCOME_WINDOW_DAYS,
    EventsFileError,
    iter_events,
    simulate,
    write_simulation,
)
from services.insights.policy import DEFAULT_POLICY, LoyaltyPolicy, load_policy
from services.insights.store import InsightsStore
from shared.config import ConfigError
from shared.db import Document
from shared.settings import ServiceSettings

# Keys per query of insights' cases: one $in of a few thousand keys is one round trip.
KEYS_PER_QUERY = 5_000

app = typer.Typer(
    help="insights from the shell: the customer health score's fitting, checking and "
    "simulated data.",
    no_args_is_help=True,
    add_completion=False,
)
loyalty = typer.Typer(
    help="Fit the customer health score to outcomes, evaluate a policy, simulate data.",
    no_args_is_help=True,
)
app.add_typer(loyalty, name="loyalty")


class Model(StrEnum):
    LOGISTIC = "logistic"
    TREE = "tree"


OutcomesArgument = Annotated[
    Path,
    typer.Argument(
        help="CSV with the header customer_key,churned,when (churned 0/1 or true/false; "
        "when ISO 8601 with a time zone: the start of the outcome window)",
        show_default=False,
    ),
]
PolicyOption = Annotated[
    Path,
    typer.Option(
        "--policy",
        envvar="CLOSELOOP_INSIGHTS_LOYALTY_POLICY_FILE",
        help="Loyalty policy file (half-lives, scale and thresholds; for evaluate, the points too)",
    ),
]
EventsOption = Annotated[
    Path | None,
    typer.Option(
        "--events",
        help="Histories from this JSON lines file of CloudEvents (as `loyalty simulate` "
        "writes) instead of insights' MongoDB",
        show_default=False,
    ),
]
MongoUrlOption = Annotated[
    str,
    typer.Option("--mongo-url", envvar="CLOSELOOP_INSIGHTS_MONGO_URL", help="insights' MongoDB"),
]
DatabaseOption = Annotated[
    str,
    typer.Option(
        "--database", envvar="CLOSELOOP_INSIGHTS_MONGO_DATABASE", help="insights' database"
    ),
]
_DEFAULTS = ServiceSettings.model_fields
DEFAULT_MONGO_URL: str = _DEFAULTS["mongo_url"].default
DEFAULT_DATABASE: str = _DEFAULTS["mongo_database"].default
MONGO_TIMEOUT_MS: int = _DEFAULTS["mongo_timeout_ms"].default


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def policy_of(path: Path) -> LoyaltyPolicy:
    try:
        return load_policy(path)
    except ConfigError as exc:
        raise fail(str(exc)) from exc


def outcomes_of(path: Path) -> list[Outcome]:
    try:
        return read_outcomes(path)
    except OutcomesError as exc:
        raise fail(str(exc)) from exc


def histories_of(
    outcomes: Sequence[Outcome], events: Path | None, mongo_url: str, database: str
) -> tuple[dict[str, list[CaseFacts]], str]:
    """The histories and where they came from, in words."""
    if events is not None:
        try:
            found = histories(iter_events(events))
        except FileNotFoundError:
            raise fail(f"{events}: no such file") from None
        except (OSError, EventsFileError) as exc:
            raise fail(str(exc)) from exc
        return found, f"events in {events}"
    keys = sorted({outcome.customer_key for outcome in outcomes})
    try:
        found = asyncio.run(_from_database(mongo_url, database, keys))
    except PyMongoError as exc:
        raise fail(f"cannot read insights' database {database!r}: {exc}") from exc
    return found, f"insights' database {database!r}"


async def _from_database(url: str, database: str, keys: list[str]) -> dict[str, list[CaseFacts]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS
    )
    try:
        store = InsightsStore(client[database])
        found: dict[str, list[CaseFacts]] = {}
        for start in range(0, len(keys), KEYS_PER_QUERY):
            found |= await store.customers_cases(keys[start : start + KEYS_PER_QUERY])
        return found
    finally:
        await client.close()


def _echo_source(found: dict[str, list[CaseFacts]], source: str) -> None:
    cases = sum(len(cases) for cases in found.values())
    typer.echo(f"histories: {cases} cases of {len(found)} customers, from {source}")


@loyalty.command("fit")
def fit_command(
    outcomes_file: OutcomesArgument,
    model: Annotated[
        Model,
        typer.Option(
            "--model",
            help="logistic: points for a policy; tree: a shallow decision tree, a second "
            "opinion that writes no policy",
        ),
    ] = Model.LOGISTIC,
    policy_file: PolicyOption = DEFAULT_POLICY,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the fitted policy here (logistic only); without it nothing is "
            "written, the report shows the fitted points",
            show_default=False,
        ),
    ] = None,
    events: EventsOption = None,
    mongo_url: MongoUrlOption = DEFAULT_MONGO_URL,
    database: DatabaseOption = DEFAULT_DATABASE,
) -> None:
    """Fit the policy's base, points and tier offsets to who left (or a tree, to compare);
    prints cross-validated AUC, lift in the riskiest 10% and calibration."""
    if model is Model.TREE and out is not None:
        raise fail("a tree is no sum of points: --out goes with --model logistic")
    policy = policy_of(policy_file)
    outcomes = outcomes_of(outcomes_file)
    found, source = histories_of(outcomes, events, mongo_url, database)
    try:
        result = fit(outcomes, found, policy, model.value)
    except FitError as exc:
        raise fail(str(exc)) from exc
    _echo_source(found, source)
    typer.echo(f"policy: {policy_file}")
    typer.echo(result.format())
    if not isinstance(result, LogisticFit):
        return
    if out is None:
        typer.echo("fitted policy not written: give --out FILE to write it")
        return
    try:
        out.write_text(policy_yaml(result, outcomes_file.name, policy_file.name), "utf-8")
        load_policy(out)  # what insights will do with it: fail here, not at its start
    except (OSError, ConfigError) as exc:
        raise fail(f"{out}: {exc}") from exc
    typer.echo(
        f"fitted policy written to {out}; insights loads it with "
        f"CLOSELOOP_INSIGHTS_LOYALTY_POLICY_FILE={out}"
    )


@loyalty.command("evaluate")
def evaluate_command(
    outcomes_file: OutcomesArgument,
    policy_file: PolicyOption = DEFAULT_POLICY,
    events: EventsOption = None,
    mongo_url: MongoUrlOption = DEFAULT_MONGO_URL,
    database: DatabaseOption = DEFAULT_DATABASE,
) -> None:
    """The AUC, lift in the riskiest 10% and calibration of a policy as it is: scores as
    insights computes them, no fitting."""
    policy = policy_of(policy_file)
    outcomes = outcomes_of(outcomes_file)
    found, source = histories_of(outcomes, events, mongo_url, database)
    try:
        result = evaluate(outcomes, found, policy)
    except FitError as exc:
        raise fail(str(exc)) from exc
    _echo_source(found, source)
    typer.echo(f"policy: {policy_file}")
    typer.echo(result.format())


@loyalty.command("simulate")
def simulate_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Directory for events.jsonl and outcomes.csv", show_default=False
        ),
    ],
    customers: Annotated[int, typer.Option("--customers", min=1)] = DEFAULT_CUSTOMERS,
    seed: Annotated[int, typer.Option("--seed")] = DEFAULT_SEED,
    at: Annotated[
        str,
        typer.Option(
            "--at", help="The snapshot: histories end, the outcome window starts (ISO 8601)"
        ),
    ] = DEFAULT_AT.isoformat().replace("+00:00", "Z"),
) -> None:
    """Simulated customers, their cases as events and whether they left, drawn from a
    known churn process (services/insights/offline/simulate.py); prints the oracle AUC."""
    try:
        snapshot = datetime.fromisoformat(at)
    except ValueError:
        raise fail(
            f"--at must be an ISO 8601 time (e.g. 2026-10-01T00:00:00Z), not {at!r}"
        ) from None
    if snapshot.tzinfo is None:
        raise fail(f"--at must carry a time zone (e.g. {at}Z)")
    simulation = simulate(customers, seed, snapshot)
    try:
        events_path, outcomes_path = write_simulation(simulation, out)
    except OSError as exc:
        raise fail(str(exc)) from exc
    left = sum(outcome.churned for outcome in simulation.outcomes)
    typer.echo(
        f"simulated {customers} customers (seed {seed}, snapshot {at}): "
        f"{simulation.cases} cases, {len(simulation.events)} events"
    )
    typer.echo(f"left within {OUTCOME_WINDOW_DAYS} days: {left} ({simulation.churn_rate:.1%})")
    try:
        typer.echo(f"oracle AUC (of the true probabilities): {simulation.oracle_auc():.4f}")
    except FitError:
        typer.echo("oracle AUC: none (every customer left, or none did)")
    typer.echo(f"wrote {events_path} and {outcomes_path}")


def main(argv: Sequence[str]) -> None:
    app(args=list(argv), prog_name="python -m services.insights")
