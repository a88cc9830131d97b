import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from functools import reduce
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.insights.domain import (
    DIMENSIONS,
    MEASURES,
    CaseFacts,
    day_of,
    dimensions,
    fold,
    measures,
    rollup_delta,
)
from services.insights.review import review
from shared.contracts import (
    CallbackDue,
    CallbackScheduled,
    CaseClosed,
    CaseEscalated,
    CaseEvent,
    CaseFirstResponse,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    Channel,
    Customer,
    CustomerTier,
    EventData,
    Expectation,
    ExpectedOutcome,
    FeedbackReceived,
    Priority,
    PromiseBroken,
    PromiseDue,
    PromiseKept,
    PromiseMade,
    PromiseOverdue,
    PromiseWarning,
    RootCause,
    SatisfactionVerdict,
    SlaBreached,
    SlaWarning,
    SurveyAnswered,
    SurveyRequested,
    Urgency,
    root_causes,
)
from shared.envelope import Event, new_event
from tests.support import a_classification, a_feedback, a_routing

CASE = "case-1"
CUSTOMER = Customer(id="C-1")
KEY = CUSTOMER.key
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ZONES = (UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5)))
_causes = itertools.count()


def at(minutes: int, zone: timezone = UTC) -> datetime:
    return (T0 + timedelta(minutes=minutes)).astimezone(zone)


def event(data: EventData, cause: str | None = None) -> Event[Any]:
    return new_event(data, source="test", cause=cause or f"cause-{next(_causes)}", time=T0)


def fold_all(events: Iterable[Event[Any]]) -> CaseFacts:
    facts = reduce(fold, events, None)
    assert facts is not None
    return facts


def routed(
    minutes: int = 0,
    *,
    received: int | None = None,
    text: str = "My parcel never arrived",
    linked: bool = False,
    tier: CustomerTier = CustomerTier.STANDARD,
    cause: RootCause = "delivery",
    **routing: Any,
) -> CaseRouted:
    received_at = at(minutes if received is None else received)
    feedback = a_feedback(
        text,
        at=received_at,
        customer=Customer(id="C-1", tier=tier),
        feedback_id=f"f-{received_at:%H%M}-{text[:8]}",
    )
    return CaseRouted(
        case_id=CASE,
        feedback=feedback,
        classification=a_classification(cause),
        routing=a_routing(at=at(minutes), **routing),
        linked_to=CASE if linked else None,
    )


def lifecycle(model: type[CaseEvent], minutes: int, **fields: Any) -> CaseEvent:
    return model(case_id=CASE, customer_key=KEY, occurred_at=at(minutes), **fields)


def answered(minutes: int, csat: int = 4, **fields: Any) -> CaseEvent:
    answer: dict[str, Any] = {
        "survey_id": "s-1",
        "csat": csat,
        "expected": 4,
        "perceived": csat,
        "ratio": csat / 4,
        "solved": True,
        "verdict": "satisfied",
        **fields,
    }
    return lifecycle(SurveyAnswered, minutes, **answer)


def closed(minutes: int, **fields: Any) -> CaseEvent:
    summary: dict[str, Any] = {
        "outcome": "satisfied",
        "feedback_id": "f-1",
        "channel": Channel.WEB,
        "customer_tier": CustomerTier.STANDARD,
        "root_cause": "delivery",
        "urgency": Urgency.MEDIUM,
        "priority": Priority.P3,
        "team": "logistics",
        "agent": None,
        "opened_at": at(0),
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": at(minutes),
        "time_to_first_response_s": None,
        "time_to_resolve_s": None,
        "first_response_sla_met": None,
        "resolution_sla_met": None,
        "callbacks_made": 0,
        "reopen_count": 0,
        "csat": None,
        "expected": None,
        "perceived": None,
        "ratio": None,
        **fields,
    }
    return lifecycle(CaseClosed, minutes, **summary)


# --- generated events of one case ---------------------------------------------------

# Two-hour steps over two and a half days: ties happen, and cases open on several days.
times = st.builds(at, st.integers(0, 30).map(lambda n: n * 120), st.sampled_from(ZONES))
small_ids = st.sampled_from(["x-1", "x-2", "x-3"])


@st.composite
def routed_data(draw: st.DrawFn) -> CaseRouted:
    received_at = draw(times)
    customer = Customer(id="C-1", tier=draw(st.sampled_from(CustomerTier)))
    feedback = a_feedback(
        draw(st.sampled_from(["parcel lost", "refund late", "rude agent"])),
        at=received_at,
        customer=customer,
        feedback_id=draw(st.sampled_from(["f-1", "f-2", "f-3"])),
        channel=draw(st.sampled_from(Channel)),
        language=draw(st.sampled_from(["en", "zh"])),
    )
    routing = a_routing(
        draw(st.sampled_from(Priority)),
        at=draw(times),
        team=draw(st.sampled_from(["logistics", "billing"])),
        agent=draw(st.sampled_from([None, "agent-1", "agent-2"])),
        queued=draw(st.booleans()),
        reroute_count=draw(st.integers(0, 2)),
        first_response_due=draw(times),
        resolution_due=draw(times),
    )
    return CaseRouted(
        case_id=CASE,
        feedback=feedback,
        classification=a_classification(
            draw(st.sampled_from(root_causes())),
            draw(st.sampled_from(Urgency)),
            expectation=draw(
                st.none()
                | st.builds(
                    Expectation,
                    outcome=st.sampled_from(ExpectedOutcome),
                    source=st.just("customer"),
                )
            ),
        ),
        routing=routing,
        linked_to=draw(st.sampled_from([None, CASE])),
    )


def case_event(model: type[CaseEvent], **fields: Any) -> st.SearchStrategy[CaseEvent]:
    return st.builds(
        model, case_id=st.just(CASE), customer_key=st.just(KEY), occurred_at=times, **fields
    )


survey_answers = st.integers(1, 5).flatmap(
    lambda csat: case_event(
        SurveyAnswered,
        survey_id=small_ids,
        csat=st.just(csat),
        expected=st.integers(1, 5),
        perceived=st.integers(1, 5),
        ratio=st.sampled_from([0.5, 1.0, 1.25]),
        solved=st.booleans(),
        verdict=st.sampled_from(["dissatisfied", "satisfied", "delighted"]),
        expectation_met=st.none() | st.booleans(),
    )
)
closes = st.builds(
    closed,
    st.integers(0, 30).map(lambda n: n * 120),
    outcome=st.sampled_from(["satisfied", "delighted", "no_response", "dissatisfied"]),
    first_response_at=st.none() | times,
    resolved_at=st.none() | times,
    first_response_sla_met=st.none() | st.booleans(),
    resolution_sla_met=st.none() | st.booleans(),
    reopen_count=st.integers(0, 3),
    expected_outcome=st.none() | st.sampled_from(ExpectedOutcome),
    expectation_met=st.none() | st.booleans(),
    promises_made=st.integers(0, 3),
    promises_kept=st.integers(0, 2),
    promises_broken=st.integers(0, 2),
    promises_overdue=st.integers(0, 2),
    promises_open=st.integers(0, 2),
)


def promise_event(model: type[CaseEvent], **fields: Any) -> st.SearchStrategy[CaseEvent]:
    return case_event(
        model,
        promise_id=small_ids,
        what=st.sampled_from(["call back", "refund"]),
        due_at=times,
        made_by=st.sampled_from(["agent-1", "agent-2"]),
        team=st.sampled_from(["logistics", "billing"]),
        **fields,
    )


promise_events = st.one_of(
    promise_event(PromiseMade, due_in=st.none() | st.just("3 working days")),
    promise_event(PromiseWarning),
    promise_event(PromiseDue),
    promise_event(PromiseKept, recorded_by=st.just("agent-1"), late=st.booleans()),
    promise_event(PromiseBroken, recorded_by=st.just("agent-1")),
    promise_event(PromiseOverdue),
)
sla_kinds = st.sampled_from(["first_response", "resolution"])
lifecycle_data: st.SearchStrategy[EventData] = st.one_of(
    case_event(CaseFirstResponse, responded_by=st.just("agent-1"), within_sla=st.booleans()),
    case_event(
        CaseResolved,
        resolved_by=st.just("agent-1"),
        solution=st.just("refunded"),
        within_sla=st.booleans(),
    ),
    case_event(CaseReopened, reason=st.just("not solved"), reopen_count=st.integers(1, 3)),
    case_event(CaseEscalated, reason=st.just("angry"), reopen_count=st.none() | st.integers(1, 3)),
    case_event(SlaWarning, sla=sla_kinds, due_at=times),
    case_event(SlaBreached, sla=sla_kinds, due_at=times),
    case_event(CallbackScheduled, callback_id=small_ids, due_at=times, reason=st.just("check")),
    case_event(CallbackDue, callback_id=small_ids, due_at=times),
    case_event(
        SurveyRequested,
        survey_id=small_ids,
        channel=st.just(Channel.EMAIL),
        expires_at=times,
        reminder=st.booleans(),
    ),
    survey_answers,
    closes,
    promise_events,
)


def case_events(min_routed: int = 0) -> st.SearchStrategy[list[Event[Any]]]:
    """Events of one case, each with its own id (as the producers derive them)."""
    payloads = st.tuples(
        st.lists(routed_data(), min_size=min_routed, max_size=3),
        st.lists(lifecycle_data, max_size=10),
    ).map(lambda parts: parts[0] + parts[1])
    return payloads.filter(bool).map(
        lambda datas: [event(data, cause=f"e-{i}") for i, data in enumerate(datas)]
    )


def redelivered(data: st.DataObject, events: list[Event[Any]]) -> list[Event[Any]]:
    """The same events shuffled, some of them more than once."""
    again = data.draw(st.lists(st.sampled_from(events), max_size=6))
    return data.draw(st.permutations(events + again))


PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(data=st.data())
def test_any_order_and_any_redelivery_fold_to_equal_facts(data: st.DataObject) -> None:
    events = data.draw(case_events())
    reference = fold_all(events)
    result = fold_all(redelivered(data, events))
    assert result == reference
    # Equal down to the stored document: same instants in UTC, sets in order.
    assert result.model_dump_json() == reference.model_dump_json()
    assert result.applied == {e.id for e in events}


@PROPERTIES
@given(data=st.data())
def test_rollups_kept_step_by_step_in_any_order_add_up_to_the_final_facts(
    data: st.DataObject,
) -> None:
    events = data.draw(case_events(min_routed=1))
    totals: dict[tuple[date, tuple[tuple[str, str], ...]], dict[str, float]] = {}
    facts: CaseFacts | None = None
    for next_event in redelivered(data, events):
        after = fold(facts, next_event)
        for day, dims, values in rollup_delta(facts, after):
            assert values and all(v != 0 and name in MEASURES for name, v in values.items())
            bucket = totals.setdefault((day, tuple(sorted(dims.items()))), {})
            for name, value in values.items():
                bucket[name] = bucket.get(name, 0.0) + value
        facts = after
    left = {key: {n: v for n, v in b.items() if v != 0} for key, b in totals.items()}
    final = fold_all(events)
    final_day = day_of(final)
    assert facts == final and final_day is not None
    expected = {n: v for n, v in measures(final).items() if v != 0}
    assert {key: b for key, b in left.items() if b} == {
        (final_day, tuple(sorted(dimensions(final).items()))): expected
    }


# --- the rule of each field ---------------------------------------------------------


def test_the_earliest_first_response_counts_whatever_the_order() -> None:
    responses = [
        event(lifecycle(CaseFirstResponse, m, responded_by="agent-1", within_sla=True))
        for m in (30, 10, 20)
    ]
    assert fold_all(responses).first_response_at == at(10)
    assert fold_all(reversed(responses)).first_response_at == at(10)


def test_one_instant_given_in_two_time_zones_is_stored_alike_whatever_the_order() -> None:
    def response(zone: timezone) -> Event[Any]:
        data = lifecycle(CaseFirstResponse, 10, responded_by="a", within_sla=True)
        return event(data.model_copy(update={"occurred_at": at(10, zone)}))

    in_utc, in_beijing = response(UTC), response(ZONES[1])
    one, other = fold_all([in_utc, in_beijing]), fold_all([in_beijing, in_utc])
    assert one.model_dump_json() == other.model_dump_json()
    assert one.first_response_at is not None and one.first_response_at.tzinfo == UTC


def test_the_latest_resolution_and_the_latest_close_count() -> None:
    resolutions = [
        event(lifecycle(CaseResolved, m, resolved_by="a", solution="s", within_sla=True))
        for m in (300, 100)
    ]
    closes = [event(closed(400, outcome="no_response")), event(closed(200, outcome="delighted"))]
    facts = fold_all([*resolutions, *closes])
    assert facts.resolved_at == at(300)
    assert (facts.closed_at, facts.outcome) == (at(400), "no_response")


def test_reopen_count_is_the_largest_seen_on_reopens_and_closes() -> None:
    reopens = [
        event(lifecycle(CaseReopened, m, reason="r", reopen_count=n)) for m, n in ((50, 2), (90, 1))
    ]
    assert fold_all(reopens).reopen_count == 2
    assert fold_all([*reopens, event(closed(100, reopen_count=3))]).reopen_count == 3
    assert fold_all([event(closed(100, reopen_count=1)), *reopens]).reopen_count == 2


def test_escalations_count_distinct_events_not_deliveries() -> None:
    first = event(lifecycle(CaseEscalated, 10, reason="angry"))
    second = event(lifecycle(CaseEscalated, 20, reason="media threat"))
    assert fold_all([first, first, first]).escalation_count == 1
    assert fold_all([first, second, first]).escalation_count == 2


def test_surveys_and_callbacks_count_distinct_ids_so_reminders_count_once() -> None:
    def survey(survey_id: str, reminder: bool) -> Event[Any]:
        return event(
            lifecycle(
                SurveyRequested,
                10,
                survey_id=survey_id,
                channel=Channel.EMAIL,
                expires_at=at(4000),
                reminder=reminder,
            )
        )

    def callback(callback_id: str) -> Event[Any]:
        return event(
            lifecycle(CallbackScheduled, 10, callback_id=callback_id, due_at=at(60), reason="r")
        )

    facts = fold_all(
        [
            *(survey("s-1", False), survey("s-1", True), survey("s-2", False)),
            *(callback("c-1"), callback("c-1"), callback("c-2"), callback("c-3")),
        ]
    )
    assert (facts.surveys_sent, facts.callbacks_scheduled) == (2, 3)


def test_the_latest_survey_answer_wins_even_when_it_arrives_first() -> None:
    later = event(answered(600, csat=5, verdict="delighted"))
    earlier = event(answered(300, csat=2, verdict="dissatisfied"))
    for order in ([later, earlier], [earlier, later]):
        facts = fold_all(order)
        assert (facts.csat, facts.verdict, facts.answer_stamp) == (
            5,
            "delighted",
            (at(600), later.id),
        )


def test_answers_at_the_same_instant_are_decided_by_event_id_in_any_order() -> None:
    one, other = event(answered(300, csat=1)), event(answered(300, csat=5))
    winner = max(one, other, key=lambda e: e.id)
    assert fold_all([one, other]).csat == fold_all([other, one]).csat == winner.data.csat


def test_opened_at_comes_from_the_first_routing_and_deadlines_from_the_latest() -> None:
    first = routed(0, received=-30, team="logistics", resolution_due=at(600))
    reroute = routed(
        120,
        received=-30,
        team="escalations",
        reroute_count=1,
        first_response_due=at(180),
        resolution_due=at(900),
    )
    for order in ([first, reroute], [reroute, first]):
        facts = fold_all(event(r, cause=r.routing.team) for r in order)
        assert facts.opened_at == at(-30)
        assert (facts.team, facts.first_response_due, facts.resolution_due) == (
            "escalations",
            at(180),
            at(900),
        )


def test_a_reroute_at_the_same_instant_ranks_after_the_routing_it_replaces() -> None:
    first = event(routed(0, team="logistics"), cause="z-first")  # ids in either order
    again = event(routed(0, team="escalations", reroute_count=1), cause="a-again")
    assert fold_all([first, again]).team == fold_all([again, first]).team == "escalations"


def test_a_case_assigned_from_the_queue_keeps_the_agent_whatever_the_order() -> None:
    queued = event(routed(0, agent=None, queued=True))
    assigned = event(routed(0, agent="agent-2", queued=False))
    assert fold_all([assigned, queued]).agent == fold_all([queued, assigned]).agent == "agent-2"


def test_a_linked_feedback_raises_priority_but_does_not_open_the_case() -> None:
    own = event(routed(0, text="parcel lost", priority=Priority.P3))
    link = event(routed(0, received=30, text="still no parcel", linked=True, priority=Priority.P2))
    # A link carries the case's routed_at; even one received before the case's own
    # feedback (clocks of channels differ) does not open the case.
    early_link = event(routed(0, received=-600, text="where is it", linked=True))
    for order in ([own, link, early_link], [early_link, link, own]):
        facts = fold_all(order)
        assert (facts.text, facts.opened_at, facts.priority) == ("parcel lost", at(0), Priority.P2)


def test_lifecycle_events_before_the_routing_are_kept_until_it_comes() -> None:
    response = event(lifecycle(CaseFirstResponse, 45, responded_by="a", within_sla=True))
    early = fold(None, response)
    assert (early.case_id, early.customer_key, early.first_response_at) == (CASE, KEY, at(45))
    assert early.team is None and early.opened_at is None and day_of(early) is None
    assert rollup_delta(None, early) == []
    routing = event(routed(0, first_response_due=at(60)))
    facts = fold(early, routing)
    assert (facts.team, facts.first_response_at, facts.first_response_sla_met) == (
        "logistics",
        at(45),
        True,
    )
    assert facts.applied == {response.id, routing.id}
    assert fold(facts, response) == facts


def test_sla_met_is_derived_from_the_deadlines_in_force() -> None:
    routing = event(routed(0, first_response_due=at(60), resolution_due=at(120)))
    assert fold_all([routing]).first_response_sla_met is None
    respond = event(lifecycle(CaseFirstResponse, 60, responded_by="a", within_sla=True))
    resolve = event(lifecycle(CaseResolved, 121, resolved_by="a", solution="s", within_sla=False))
    facts = fold_all([routing, respond, resolve])
    assert (facts.first_response_sla_met, facts.resolution_sla_met) == (True, False)
    late_reroute = event(routed(100, reroute_count=1, first_response_due=at(50)))
    assert fold_all([routing, respond, late_reroute]).first_response_sla_met is False


def test_a_breach_is_a_miss_even_if_a_reroute_moved_the_deadline() -> None:
    routing = event(routed(0, resolution_due=at(500)))
    resolve = event(lifecycle(CaseResolved, 100, resolved_by="a", solution="s", within_sla=True))
    breach = event(lifecycle(SlaBreached, 90, sla="resolution", due_at=at(80)))
    assert fold_all([routing, resolve]).resolution_sla_met is True
    facts = fold_all([routing, resolve, breach])
    assert (facts.resolution_sla_met, sorted(facts.sla_breached)) == (False, ["resolution"])
    assert fold_all([breach]).resolution_sla_met is False


def test_the_close_summary_decides_sla_met_when_it_knows() -> None:
    routing = event(routed(0, first_response_due=at(60), resolution_due=at(120)))
    respond = event(lifecycle(CaseFirstResponse, 200, responded_by="a", within_sla=False))
    close = event(closed(300, first_response_sla_met=True, resolution_sla_met=None))
    facts = fold_all([routing, respond, close])
    assert (facts.first_response_sla_met, facts.resolution_sla_met) == (True, None)


def test_events_of_another_case_or_no_case_are_refused() -> None:
    facts = fold(None, event(routed(0)))
    other = CaseReopened(
        case_id="case-2", customer_key=KEY, occurred_at=at(5), reason="r", reopen_count=1
    )
    with pytest.raises(ValueError, match="case-2"):
        fold(facts, event(other))
    with pytest.raises(ValueError, match="not an event of a case"):
        fold(None, event(FeedbackReceived(feedback=a_feedback(customer=CUSTOMER))))


def test_facts_read_back_from_their_json_are_equal() -> None:
    facts = fold_all(
        [
            event(routed(0)),
            event(lifecycle(SlaBreached, 30, sla="first_response", due_at=at(20))),
            event(answered(50)),
            event(closed(60)),
        ]
    )
    assert CaseFacts.model_validate_json(facts.model_dump_json()) == facts


# --- measures, dimensions and rollup deltas -----------------------------------------


def a_full_case() -> list[Event[Any]]:
    return [
        event(
            routed(0, received=-60, first_response_due=at(60), resolution_due=at(600), agent=None)
        ),
        event(lifecycle(CaseFirstResponse, 30, responded_by="a", within_sla=True)),
        event(lifecycle(CaseResolved, 900, resolved_by="a", solution="s", within_sla=False)),
        event(lifecycle(CaseEscalated, 700, reason="late")),
        event(
            lifecycle(
                SurveyRequested, 901, survey_id="s-1", channel=Channel.EMAIL, expires_at=at(5000)
            )
        ),
        event(answered(1000, csat=3, expected=5, perceived=3, verdict="dissatisfied")),
    ]


def test_measures_of_one_case() -> None:
    m = measures(fold_all(a_full_case()))
    assert set(m) == set(MEASURES)
    assert {name: v for name, v in m.items() if v} == {
        "cases": 1,
        "first_responded": 1,
        "first_response_s": 90 * 60,
        "first_response_bucket_4": 1,  # 1 to 2 hours
        "resolved": 1,
        "resolve_s": 960 * 60,
        "resolve_bucket_7": 1,  # 8 hours to a day
        "first_response_deadlines_known": 1,
        "first_response_deadlines_met": 1,
        "resolution_deadlines_known": 1,
        "escalated": 1,
        "surveys_sent": 1,
        "answered": 1,
        "csat_sum": 3,
        "csat_3": 1,
        "perceived_sum": 3,
        "expected_sum": 5,
        "dissatisfied": 1,
    }


@pytest.mark.parametrize("verdict", ["dissatisfied", "satisfied", "delighted"])
def test_each_verdict_counts_in_its_own_bucket(verdict: SatisfactionVerdict) -> None:
    m = measures(fold_all([event(routed(0)), event(answered(10, verdict=verdict))]))
    assert {b: m[b] for b in ("dissatisfied", "satisfied", "delighted")} == {
        b: float(b == verdict) for b in ("dissatisfied", "satisfied", "delighted")
    }


def test_dimensions_are_text_and_none_when_not_known() -> None:
    facts = fold_all(a_full_case())
    assert tuple(dimensions(facts)) == DIMENSIONS
    assert dimensions(facts) == {
        "root_cause": "delivery",
        "team": "logistics",
        "agent": "none",
        "channel": "web",
        "priority": "P3",
        "language": "en",
        "customer_tier": "standard",
    }
    assert set(dimensions(fold(None, event(answered(5)))).values()) == {"none"}


def test_the_day_is_the_utc_day_the_feedback_was_received() -> None:
    facts = fold_all([event(routed(0, received=-10 * 60 + 1))])  # 2026-03-01 23:01 UTC
    assert day_of(facts) == date(2026, 3, 1)


def test_a_change_within_the_same_rollup_is_one_entry_of_differences() -> None:
    before = fold(None, event(routed(0, first_response_due=at(60))))
    after = fold(
        before, event(lifecycle(CaseFirstResponse, 90, responded_by="a", within_sla=False))
    )
    assert rollup_delta(before, after) == [
        (
            date(2026, 3, 2),
            dimensions(before),
            {
                "first_responded": 1,
                "first_response_s": 5400,
                "first_response_bucket_4": 1,
                "first_response_deadlines_known": 1,
            },
        )
    ]
    assert rollup_delta(after, after) == []


def test_a_reroute_to_another_team_moves_the_case_between_rollups() -> None:
    before = fold(None, event(routed(0)))
    after = fold(before, event(routed(60, team="escalations", reroute_count=1)))
    old, new = rollup_delta(before, after)
    assert old == (date(2026, 3, 2), dimensions(before), {"cases": -1})
    assert new == (date(2026, 3, 2), {**dimensions(before), "team": "escalations"}, {"cases": 1})


def test_a_new_case_adds_its_whole_contribution() -> None:
    facts = fold(None, event(routed(0)))
    assert rollup_delta(None, facts) == [(date(2026, 3, 2), dimensions(facts), {"cases": 1})]


def test_a_review_answers_unknown_where_the_facts_do_not_tell() -> None:
    facts = fold(None, event(routed(0)))
    answers = review(facts)
    assert answers["closed"] is False
    assert answers["answered_in_time"]["answer"] is None
    assert answers["answered_in_time"]["took_s"] is None
    assert answers["customer_satisfied"] is None and answers["solution_accepted"] is None
    assert answers["promise_kept"] is None and answers["reopened"] is False


# --- promises and expectations -------------------------------------------------------


def promise(
    model: type[CaseEvent], minutes: int, promise_id: str = "p-1", **fields: Any
) -> Event[Any]:
    details: dict[str, Any] = {
        "promise_id": promise_id,
        "what": "call back with the courier's answer",
        "due_at": at(600),
        "made_by": "agent-1",
        "team": "logistics",
        **fields,
    }
    return event(lifecycle(model, minutes, **details))


def promise_counts(facts: CaseFacts) -> tuple[int, int, int, int, int]:
    return (
        facts.promises_made,
        facts.promises_kept,
        facts.promises_broken,
        facts.promises_overdue,
        facts.promises_overdue_open,
    )


def test_each_promise_ends_kept_broken_or_overdue_whatever_the_order() -> None:
    events = [
        event(routed(0)),
        promise(PromiseMade, 10, "p-kept"),
        promise(PromiseKept, 500, "p-kept", recorded_by="agent-1", late=False),
        promise(PromiseMade, 20, "p-late"),
        promise(PromiseOverdue, 840, "p-late"),
        promise(PromiseKept, 900, "p-late", recorded_by="agent-1", late=True),
        promise(PromiseMade, 30, "p-broken"),
        promise(PromiseOverdue, 840, "p-broken"),
        promise(PromiseBroken, 1000, "p-broken", recorded_by="lead-li"),
        promise(PromiseMade, 40, "p-waiting"),
        promise(PromiseOverdue, 840, "p-waiting"),
        promise(PromiseMade, 50, "p-open"),
        promise(PromiseWarning, 480, "p-open"),
    ]
    facts = fold_all(events)
    # made, kept (on time or late), broken, went overdue, overdue with no outcome yet
    assert promise_counts(facts) == (5, 2, 1, 3, 1)
    assert fold_all(reversed(events)) == facts
    by_id = {p.promise_id: p for p in facts.promises}
    assert (by_id["p-late"].outcome, by_id["p-late"].late) == ("kept", True)
    assert by_id["p-broken"].overdue_at == at(840) and by_id["p-broken"].outcome_at == at(1000)
    assert by_id["p-open"].outcome is None and by_id["p-open"].made_at == at(50)
    assert [p.promise_id for p in facts.promises] == sorted(by_id)


def test_a_later_record_of_a_promise_s_outcome_corrects_an_earlier_one() -> None:
    broken = promise(PromiseBroken, 700, recorded_by="agent-1", note="courier lost it")
    kept = promise(PromiseKept, 760, recorded_by="lead-li", late=True)
    for order in ([broken, kept], [kept, broken]):
        facts = fold_all([event(routed(0)), *order])
        assert promise_counts(facts) == (1, 1, 0, 0, 0)


def test_a_promise_known_only_from_a_later_event_still_counts_as_made() -> None:
    facts = fold_all([event(routed(0)), promise(PromiseOverdue, 840, what="refund by Friday")])
    assert promise_counts(facts) == (1, 0, 0, 1, 1)
    (only,) = facts.promises
    assert only.what == "refund by Friday" and only.made_at is None


def test_the_close_summary_s_promise_counts_decide_once_the_case_is_closed() -> None:
    made = promise(PromiseMade, 10)
    overdue = promise(PromiseOverdue, 840)
    summary = {
        "promises_made": 2,
        "promises_kept": 1,
        "promises_overdue": 1,
        "promises_open": 1,
    }
    facts = fold_all([event(routed(0)), made, overdue, event(closed(900, **summary))])
    assert promise_counts(facts) == (2, 1, 0, 1, 1)
    # The events show fewer promises than the summary: as many overdue without an
    # outcome as the summary allows.
    alone = fold_all([event(routed(0)), event(closed(900, **summary))])
    assert promise_counts(alone) == (2, 1, 0, 1, 1)
    # The one overdue promise was kept late: the summary's open one is not overdue.
    late = promise(PromiseKept, 870, recorded_by="agent-1", late=True)
    other = promise(PromiseMade, 20, "p-2")
    kept_late = fold_all(
        [event(routed(0)), made, overdue, late, other, event(closed(900, **summary))]
    )
    assert promise_counts(kept_late) == (2, 1, 0, 1, 0)


def test_a_close_summary_that_counts_no_promise_leaves_the_events_counts() -> None:
    events = [
        event(routed(0)),
        promise(PromiseMade, 10),
        promise(PromiseBroken, 700, recorded_by="a"),
    ]
    facts = fold_all([*events, event(closed(900))])
    assert promise_counts(facts) == (1, 0, 1, 0, 0)
    # A case with no promise at all counts none, closed or not.
    assert promise_counts(fold_all([event(routed(0)), event(closed(900))])) == (0, 0, 0, 0, 0)


def test_promise_counts_are_measures_of_the_case() -> None:
    facts = fold_all(
        [
            event(routed(0)),
            promise(PromiseMade, 10),
            promise(PromiseOverdue, 840),
            promise(PromiseBroken, 1000, recorded_by="lead-li"),
            promise(PromiseMade, 20, "p-2"),
            promise(PromiseOverdue, 840, "p-2"),
        ]
    )
    m = measures(facts)
    assert {name: m[name] for name in m if name.startswith("promises_")} == {
        "promises_made": 2,
        "promises_kept": 0,
        "promises_broken": 1,
        "promises_overdue": 2,
        "promises_overdue_open": 1,
    }


def test_what_the_customer_asked_for_comes_from_the_opening_and_then_the_close() -> None:
    expectation = Expectation(outcome=ExpectedOutcome.REFUND, source="inferred", evidence="退款")
    opening = CaseRouted(
        **{
            **routed(0).model_dump(),
            "classification": a_classification(expectation=expectation),
        }
    )
    facts = fold_all([event(opening), event(answered(100, expectation_met=False))])
    assert (facts.expected_outcome, facts.expectation_met) == (ExpectedOutcome.REFUND, False)
    m = measures(facts)
    assert (m["expectations_asked"], m["expectations_met"]) == (1, 0)
    assert (m["expectations_asked_refund"], m["expectations_met_refund"]) == (1, 0)
    # case.closed's answer and outcome win once it comes.
    close = event(closed(200, expected_outcome="replacement", expectation_met=True))
    after = fold_all([event(opening), event(answered(100, expectation_met=False)), close])
    assert (after.expected_outcome, after.expectation_met) == (ExpectedOutcome.REPLACEMENT, True)
    assert measures(after)["expectations_met_replacement"] == 1
    assert measures(after)["expectations_asked_refund"] == 0
    # The channel's form, when the classifier says nothing; no question asked, no count.
    form = routed(0).model_copy(
        update={"feedback": routed(0).feedback.model_copy(update={"expected_outcome": "repair"})}
    )
    plain = fold_all([event(form), event(answered(100))])
    assert (plain.expected_outcome, plain.expectation_met) == ("repair", None)
    assert measures(plain)["expectations_asked"] == 0


def test_facts_stored_before_promises_were_tracked_read_with_none() -> None:
    facts = fold_all([event(routed(0)), event(answered(50)), event(closed(60))])
    stored = facts.model_dump(mode="json")
    for name in (
        "promises", "closed_promises", "promises_made", "promises_kept", "promises_broken",
        "promises_overdue", "promises_overdue_open", "expected_outcome", "expectation_met",
        "opening_expected_outcome", "closed_expected_outcome", "closed_expectation_met",
        "answer_expectation_met",
    ):  # fmt: skip
        del stored[name]
    old = CaseFacts.model_validate(stored)
    assert promise_counts(old) == (0, 0, 0, 0, 0) and old.expectation_met is None
    assert measures(old) == measures(facts)
    # The next event of the case derives the new fields as if they had always been there.
    assert fold(old, promise(PromiseMade, 70)).promises_made == 1


def test_a_review_says_whether_the_promises_were_kept() -> None:
    base = [event(routed(0)), promise(PromiseMade, 10)]
    assert review(fold_all(base))["promise_kept"] is None  # no result yet
    kept = fold_all([*base, promise(PromiseKept, 500, recorded_by="a", late=False)])
    answers = review(kept)
    assert answers["promise_kept"] is True
    assert answers["promises"]["kept_rate"] == 1.0
    assert answers["promises"]["each"][0]["outcome"] == "kept"
    assert answers["promises"]["each"][0]["late"] is False
    overdue = fold_all([*base, promise(PromiseOverdue, 840)])
    assert review(overdue)["promise_kept"] is False
    assert review(overdue)["promises"]["kept_rate"] == 0.0
    assert review(overdue)["promises"]["each"][0]["overdue"] is True
    broken = fold_all([*base, promise(PromiseBroken, 700, recorded_by="a")])
    assert review(broken)["promise_kept"] is False
    assert review(broken)["promises"]["broken"] == 1
