"""The simulator of customer histories: deterministic, real contract events that fold into
consistent facts, and a churn process that behaves as documented."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.insights.domain import CaseFacts, fold
from services.insights.offline import simulate as sim
from shared.contracts import (
    EVENT_MODELS,
    CaseClosed,
    CaseEvent,
    CaseRouted,
    Customer,
    CustomerTier,
    EventData,
    SurveyAnswered,
)
from shared.envelope import Event, derive_id

AT = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def small() -> sim.Simulation:
    return sim.simulate(400, seed=11, at=AT)


def by_case(events: list[Event[Any]]) -> dict[str, list[Event[Any]]]:
    cases: dict[str, list[Event[Any]]] = defaultdict(list)
    for event in events:
        cases[event.data.case_id].append(event)
    return cases


def occurred(event: Event[Any]) -> datetime:
    data = event.data
    return data.occurred_at if isinstance(data, CaseEvent) else data.routing.routed_at


def test_a_seed_gives_the_same_events_and_outcomes_and_another_seed_others() -> None:
    first, again = sim.simulate(60, seed=3, at=AT), sim.simulate(60, seed=3, at=AT)
    assert first.events == again.events
    assert first.outcomes == again.outcomes
    other = sim.simulate(60, seed=4, at=AT)
    assert {e.id for e in other.events}.isdisjoint(e.id for e in first.events)


def test_a_customer_is_the_same_whatever_the_number_of_customers() -> None:
    fewer, more = sim.simulate(30, seed=5, at=AT), sim.simulate(45, seed=5, at=AT)
    assert more.outcomes[:30] == fewer.outcomes
    assert more.events[: len(fewer.events)] == fewer.events


def test_every_kind_of_case_event_is_published_and_nothing_after_the_snapshot(
    small: sim.Simulation,
) -> None:
    names = Counter(event.name for event in small.events)
    assert set(names) == {
        "case.routed",
        "case.first_response",
        "sla.breached",
        "case.resolved",
        "survey.requested",
        "survey.answered",
        "case.reopened",
        "case.escalated",
        "case.closed",
    }
    assert all(occurred(event) <= AT and event.time == occurred(event) for event in small.events)
    assert len({event.id for event in small.events}) == len(small.events)


def test_every_event_validates_and_round_trips_through_the_json_lines_file(
    small: sim.Simulation, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    assert sim.write_events(small.events, path) == len(small.events)
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert set(first) == {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
    }
    assert first["type"] == "closeloop.case.routed.v1" and first["time"].endswith("Z")
    read = sim.read_events(path)
    assert read == small.events
    for event in read:
        model: type[EventData] = EVENT_MODELS[event.name]
        assert model.model_validate(event.data.model_dump(mode="json")) == event.data
        assert isinstance(event.data, CaseRouted | CaseEvent)
        assert event.subject == event.data.case_id


def test_the_reader_names_the_line_that_is_not_an_event(
    small: sim.Simulation, tmp_path: Path
) -> None:
    good = sim.event_line(small.events[0])
    broken = json.loads(sim.event_line(small.events[1]))
    del broken["data"]["customer_key"]
    path = tmp_path / "events.jsonl"
    path.write_text(f"{good}\n\n{json.dumps(broken)}\n", encoding="utf-8")
    with pytest.raises(sim.EventsFileError, match=r"line 3: invalid .*customer_key"):
        sim.read_events(path)
    path.write_text(good + "\n" + good.replace('"time": "', '"time": "x'), encoding="utf-8")
    with pytest.raises(sim.EventsFileError, match="line 2"):
        sim.read_events(path)


def test_each_case_opens_with_case_routed_and_closes_with_case_closed_last(
    small: sim.Simulation,
) -> None:
    for case_id, events in by_case(small.events).items():
        first = events[0].data
        assert isinstance(first, CaseRouted)
        assert first.routing.reroute_count == 0
        assert case_id == derive_id("case", first.feedback.feedback_id)
        times = [occurred(event) for event in events]
        assert times == sorted(times)
        closed = [e for e in events if isinstance(e.data, CaseClosed)]
        assert len(closed) <= 1
        if closed:
            assert events[-1] == closed[0]


def test_each_case_folds_into_facts_consistent_with_its_events(small: sim.Simulation) -> None:
    open_cases = 0
    for case_id, events in by_case(small.events).items():
        facts: CaseFacts | None = None
        for event in events:
            facts = fold(facts, event)
        assert facts is not None and facts.case_id == case_id
        assert facts.opened_at is not None and facts.root_cause is not None
        closing = next((e.data for e in events if isinstance(e.data, CaseClosed)), None)
        if closing is None:
            open_cases += 1
            assert facts.closed_at is None and facts.outcome is None
            continue
        assert facts.outcome == closing.outcome and facts.closed_at == closing.closed_at
        assert facts.first_response_at == closing.first_response_at
        assert facts.resolved_at == closing.resolved_at
        assert facts.reopen_count == closing.reopen_count == facts.escalation_count
        assert facts.first_response_sla_met is ("first_response" not in facts.sla_breached)
        assert facts.resolution_sla_met is ("resolution" not in facts.sla_breached)
        assert facts.team == closing.team and facts.priority == closing.priority
        if closing.outcome in ("satisfied", "delighted"):
            assert facts.verdict == closing.outcome and facts.solved is True
            assert facts.csat == closing.csat and facts.ratio == closing.ratio
        else:
            assert closing.outcome == "no_response" and closing.csat is None
            assert facts.surveys_sent >= 1
        if facts.csat is not None:
            assert facts.expected and facts.perceived and facts.verdict
            assert facts.ratio == round(facts.perceived / facts.expected, 3)
        # Each reopen follows an answer that does not close the case, as followup decides.
        unhappy = [
            e.data
            for e in events
            if isinstance(e.data, SurveyAnswered)
            and (e.data.verdict == "dissatisfied" or not e.data.solved)
        ]
        assert len(unhappy) == facts.reopen_count
        if facts.reopen_count:
            assert facts.team == "escalations"
    # Cases opened in the last days before the snapshot are still open.
    assert open_cases >= 1


def test_customer_keys_are_real_ones_and_churn_intent_comes_with_its_sentence(
    small: sim.Simulation,
) -> None:
    routed = [e.data for e in small.events if isinstance(e.data, CaseRouted)]
    for data in routed:
        customer = data.feedback.customer
        assert customer.email is not None
        assert data.feedback.customer_key == Customer(email=customer.email).key
        assert data.feedback.customer_key.startswith("c-")
        for signal in data.classification.signals:
            assert signal.name == "churn_intent" and signal.evidence in data.feedback.text
    intents = sum(1 for data in routed if data.classification.signals)
    assert 0 < intents < len(routed) / 4
    assert {data.feedback.language for data in routed} == {"zh", "en"}


def test_the_churn_rate_and_the_tiers_are_within_their_documented_ranges() -> None:
    low, high = sim.CHURN_RATE_RANGE
    for seed in (1, 2):
        simulation = sim.simulate(1_000, seed=seed, at=AT)
        assert low <= simulation.churn_rate <= high
        tiers = Counter(outcome.tier for outcome in simulation.outcomes)
        for tier, share in sim.TIER_SHARES.items():
            assert abs(tiers[tier] / 1_000 - share) < 0.05
        assert all(outcome.when == AT for outcome in simulation.outcomes)


def test_the_true_probability_is_the_documented_process() -> None:
    simulation = sim.simulate(1_000, seed=9, at=AT)
    quiet = [o for o in simulation.outcomes if o.cases == 0]
    assert quiet
    for outcome in quiet:
        expected = sim.sigmoid(sim.TRUE_INTERCEPT + sim.TRUE_TIERS[outcome.tier])
        assert outcome.true_probability == pytest.approx(expected, rel=1e-12)
    complained = [o.true_probability for o in simulation.outcomes if o.cases >= 3]
    baseline = sim.sigmoid(sim.TRUE_INTERCEPT)
    assert sum(complained) / len(complained) > 2 * baseline
    # The draws follow the probabilities: the mean of these is the churn rate's expectation.
    mean = sum(o.true_probability for o in simulation.outcomes) / 1_000
    assert abs(simulation.churn_rate - mean) < 0.03
    assert simulation.oracle_auc() > 0.7


def test_a_simulation_is_written_as_events_and_outcomes(tmp_path: Path) -> None:
    simulation = sim.simulate(20, seed=2, at=AT)
    events, outcomes = sim.write_simulation(simulation, tmp_path / "out")
    assert sim.read_events(events) == simulation.events
    lines = outcomes.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "customer_key,churned,when"
    assert len(lines) == 21
    key, churned, when = lines[1].split(",")
    assert key == simulation.outcomes[0].customer_key
    assert churned == str(int(simulation.outcomes[0].churned))
    assert when == "2026-10-01T00:00:00Z"


def test_the_simulator_refuses_what_it_cannot_simulate() -> None:
    with pytest.raises(ValueError, match="customers"):
        sim.simulate(0)
    with pytest.raises(ValueError, match="time zone"):
        sim.simulate(10, at=datetime(2026, 10, 1))
    assert sim.simulate(1, seed=1).outcomes[0].tier in set(CustomerTier)
