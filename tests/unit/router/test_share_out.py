"""Sharing out a batch of new cases among agents, without I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.router.domain import AgentState, least_loaded, share_out


def agents(*states: AgentState) -> dict[str, AgentState]:
    return {state.id: state for state in states}


def test_each_case_goes_to_the_least_loaded_counting_the_cases_shared_before_it() -> None:
    team = agents(AgentState("a", 0, 3, True), AgentState("b", 1, 3, True))
    shares = share_out([(f"case-{i}", ["a", "b"]) for i in range(4)], team)
    assert sorted(shares.takes["a"] + shares.takes["b"]) == [f"case-{i}" for i in range(4)]
    assert shares.agent_of["case-0"] == "a"  # the only one at load 0
    final = sorted([0 + len(shares.takes["a"]), 1 + len(shares.takes["b"])])
    assert final == [2, 3]


def test_cases_beyond_every_eligible_agent_s_capacity_wait_in_the_queue() -> None:
    team = agents(AgentState("a", 1, 2, True), AgentState("b", 0, 5, False))
    shares = share_out([("c1", ["a", "b"]), ("c2", ["a", "b"]), ("c3", ["b"])], team)
    assert shares.agent_of == {"c1": "a", "c2": None, "c3": None}
    assert shares.takes == {"a": ["c1"]}


def test_a_case_an_agent_holds_already_stays_with_it_and_is_not_taken_again() -> None:
    team = agents(
        AgentState("a", 2, 2, True, holds=frozenset({"c1"})),
        AgentState("b", 0, 2, True),
    )
    shares = share_out([("c1", ["a", "b"]), ("c2", ["a", "b"])], team)
    assert shares.agent_of == {"c1": "a", "c2": "b"}
    assert shares.takes == {"b": ["c2"]}


def test_a_case_held_twice_or_by_an_agent_no_longer_eligible_is_left_unsettled() -> None:
    team = agents(
        AgentState("a", 1, 2, True, holds=frozenset({"c1", "c2"})),
        AgentState("b", 1, 2, True, holds=frozenset({"c1"})),
    )
    shares = share_out([("c1", ["a", "b"]), ("c2", ["b"])], team)
    assert shares.unsettled == ["c1", "c2"]
    assert shares.agent_of == {} and shares.takes == {}


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(1, 5), st.booleans()), min_size=1, max_size=6
    ),
    st.integers(1, 30),
)
def test_sharing_a_batch_chooses_what_routing_one_case_at_a_time_would(
    states: list[tuple[int, int, bool]], cases: int
) -> None:
    team = {
        f"agent-{i}": AgentState(f"agent-{i}", min(load, capacity), capacity, available)
        for i, (load, capacity, available) in enumerate(states)
    }
    eligible = sorted(team)
    shares = share_out([(f"case-{n}", eligible) for n in range(cases)], team)
    loads = {a.id: a.load for a in team.values()}
    for n in range(cases):
        free = {a: loads[a] for a in eligible if team[a].available and loads[a] < team[a].capacity}
        expected = least_loaded(free, f"case-{n}") if free else None
        assert shares.agent_of[f"case-{n}"] == expected
        if expected is not None:
            loads[expected] += 1
    assert all(loads[a] <= team[a].capacity or loads[a] == team[a].load for a in team)
