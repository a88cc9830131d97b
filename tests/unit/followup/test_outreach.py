"""What the customer is told and when, without a database: the acknowledgement of a new
case, a redelivery saying it again, the silence check, and the apology for a missed
resolution deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.followup.decisions import Decision, decide_routed
from services.followup.domain import Case, DueItem
from services.followup.outreach import decide_silence, load_outreach, silence_item
from services.followup.policy import FollowupPolicy, NotifyPolicy, SilencePolicy
from shared.contracts import CaseRouted, CustomerNotify, Priority
from tests.support import a_customer, a_feedback
from tests.unit.followup.test_decisions import NOW, POLICY, fire, respond, routed, written

OUTREACH = load_outreach()


def opened(policy: FollowupPolicy = POLICY, **feedback: Any) -> tuple[Case, Decision]:
    event = routed()
    if feedback:
        event = event.model_copy(update={"feedback": a_feedback(at=NOW, **feedback)})
    decision = decide_routed(None, event, NOW, policy, OUTREACH)
    return written(decision), decision


def notices(decision: Decision) -> list[CustomerNotify]:
    return [e.data for e in (*decision.replies, *decision.events) if e.name == "customer.notify"]


def test_a_new_case_is_acknowledged_with_its_deadlines_in_the_customers_language() -> None:
    case, decision = opened()
    (ack,) = notices(decision)
    assert ack.kind == "acknowledgement" and ack.case_id == case.id
    assert ack.language == "zh" and ack.channel.value == "sms"  # as the feedback came
    assert ack.first_response_by == case.first_response_due
    assert ack.resolution_by == case.resolution_due
    assert ack.reference == case.reference and case.reference in ack.text
    assert ack.time_zone == "Asia/Shanghai"  # the owner team's: the customer gave none
    assert case.last_update_at == NOW
    assert any(e.event == "customer.notify" and ack.text in (e.detail or "") for e in case.timeline)
    assert ("notifications", ("acknowledgement", "sms", "zh")) in [
        (m.metric, m.labels) for m in decision.measures
    ]


def test_the_customers_own_time_zone_wins() -> None:
    _, decision = opened(customer=a_customer(time_zone="America/New_York"), language="en")
    (ack,) = notices(decision)
    assert ack.time_zone == "America/New_York" and ack.language == "en"


def test_a_redelivered_case_routed_says_the_very_same_acknowledgement_again() -> None:
    case, first = opened()
    again = decide_routed(case, routed(), NOW + timedelta(minutes=3), POLICY, OUTREACH)
    assert not again.writes
    said = [e for e in again.replies if e.name == "customer.notify"]
    assert [(e.id, e.data) for e in said] == [
        (e.id, e.data) for e in first.replies if e.name == "customer.notify"
    ]


def test_without_acknowledgements_the_silence_check_still_starts() -> None:
    quiet = POLICY.model_copy(update={"notify": NotifyPolicy(acknowledge=False)})
    case, decision = opened(quiet)
    assert not notices(decision)
    assert [i.kind for i in decision.schedule].count("silence") == 1
    assert case.last_update_at is None


def silence(case: Case, at: datetime, policy: FollowupPolicy = POLICY) -> Decision:
    item = silence_item(case, policy, OUTREACH)
    return decide_silence(case, DueItem(case.id, "silence", item.ref, at), at, policy, OUTREACH)


def test_a_case_left_in_silence_sends_a_progress_message_once() -> None:
    case, decision = opened()
    item = next(i for i in decision.schedule if i.kind == "silence")
    # P2: 8 business hours of the owner's calendar (the logistics hotline, 08:00-20:00 in
    # Shanghai) after the acknowledgement on Monday at 17:00: three on Monday, five on
    # Tuesday.
    assert item.due_at == datetime(2026, 3, 3, 5, 0, tzinfo=UTC)  # Tuesday 13:00 Shanghai
    early = decide_silence(case, item, item.due_at - timedelta(minutes=1), POLICY, OUTREACH)
    assert not early.writes
    progress = decide_silence(case, item, item.due_at, POLICY, OUTREACH)
    (sent,) = notices(progress)
    assert sent.kind == "progress" and sent.resolution_by == case.resolution_due
    after = written(progress)
    assert not decide_silence(after, item, item.due_at, POLICY, OUTREACH).writes
    assert any(i.kind == "silence" and i.ref != item.ref for i in progress.schedule)
    # The check being done is left for the due queue to complete, not cancelled.
    assert not any(c.refs == (item.ref,) for c in progress.cancel)


def test_an_update_to_the_customer_moves_the_silence_check() -> None:
    case, decision = opened()
    first = next(i for i in decision.schedule if i.kind == "silence")
    answered = respond(case, NOW + timedelta(hours=1))
    moved = [i for i in answered.schedule if i.kind == "silence"]
    assert moved and moved[0].ref != first.ref
    assert any(c.kinds == ("silence",) and c.refs == (first.ref,) for c in answered.cancel)
    later = written(answered)
    assert not decide_silence(later, first, first.due_at, POLICY, OUTREACH).writes


def test_asking_the_owner_instead_emits_case_update_requested() -> None:
    ask = POLICY.model_copy(
        update={
            "silence": SilencePolicy(after_hours=POLICY.silence.after_hours, action="ask_owner")
        }
    )
    case, _ = opened(ask)
    decision = silence(case, NOW + timedelta(days=3), ask)
    assert [e.name for e in decision.events] == ["case.update_requested"]
    assert decision.events[0].data.team == case.team
    again = written(decision)
    assert again.update_requested_at == NOW + timedelta(days=3)
    assert [m.labels for m in decision.measures] == [("P2", "ask_owner")]


def test_a_resolved_case_is_not_in_silence() -> None:
    case, _ = opened()
    case = case.model_copy(update={"status": "resolved"})
    assert not silence(case, NOW + timedelta(days=3)).writes


def rerouted(case: Case, reason: str) -> CaseRouted:
    event = routed(
        Priority.P1,
        reroute_count=1,
        reroute_reason=reason,
        routed_at=NOW + timedelta(hours=30),
        first_response_due=NOW + timedelta(hours=31),
        resolution_due=NOW + timedelta(hours=40),
    )
    return event


def test_a_missed_resolution_deadline_apologises_with_the_new_date() -> None:
    case, _ = opened()
    breached = written(fire(case, "sla_breach", "resolution", NOW + timedelta(hours=24)))
    at = NOW + timedelta(hours=30)
    decision = decide_routed(breached, rerouted(breached, "sla_breached"), at, POLICY, OUTREACH)
    (apology,) = notices(decision)
    assert apology.kind == "apology"
    assert apology.resolution_by == NOW + timedelta(hours=40)
    # Said again, the same, if the re-route is delivered again.
    after = written(decision)
    again = decide_routed(after, rerouted(after, "sla_breached"), at, POLICY, OUTREACH)
    assert [e.id for e in again.replies if e.name == "customer.notify"] == [
        e.id for e in decision.replies if e.name == "customer.notify"
    ]


def test_a_reroute_for_another_reason_does_not_apologise() -> None:
    case, _ = opened()
    at = NOW + timedelta(hours=30)
    decision = decide_routed(case, rerouted(case, "escalated"), at, POLICY, OUTREACH)
    assert not notices(decision)
    assert any(i.kind == "silence" and i.generation == 1 for i in decision.schedule)
