"""Promises against the real broker and database: promise.broken and promise.overdue
events of a customer's case take points from their health score through the same path
as every other part (folded, scored, the standing and its outbox), until the customer is
told at risk on customer.signals; a promise overdue and then broken counts once. The
promise counts of case.closed, and the promise events of a case still open, are the
promise figures of the summary and of the week's report by team and by root cause."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pymongo import AsyncMongoClient

from services.insights.policy import DEFAULT_POLICY
from services.insights.settings import InsightsSettings
from services.insights.store import InsightsStore
from services.insights.weekly import publish_due_report
from shared.contracts import (
    CaseClosed,
    CaseEvent,
    CaseRouted,
    CustomerAtRisk,
    ExpectedOutcome,
    PromiseBroken,
    PromiseKept,
    PromiseMade,
    PromiseOverdue,
    RootCause,
    SurveyAnswered,
    Topic,
    WeeklyReport,
)
from shared.envelope import Event, new_event
from tests.conftest import Infra
from tests.integration.insights import test_service as service_tests
from tests.support import (
    TopicReader,
    a_classification,
    a_customer,
    a_feedback,
    a_routing,
    eventually,
    produce,
)

# test_service's client of the service these settings start, with its key.
insights = service_tests.insights
clock = service_tests.clock

# The thresholds and points this test's arithmetic is written for: a fresh complaint
# still open leaves 75 - 8 - 3 = 64; each broken promise takes 10, an overdue one 5.
POLICY = {"base": 75, "at_risk_below": 50, "recovered_above": 60}
POINTS = {"complaints": -8, "open_cases": -3, "promises_broken": -10, "promises_overdue": -5}


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy.update(POLICY)
    for name, points in POINTS.items():
        policy["parts"][name]["points"] = points
    path = tmp_path_factory.mktemp("loyalty") / "loyalty.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def settings(infra: Infra, policy_file: Path) -> InsightsSettings:
    return service_tests.settings_for(infra).model_copy(update={"loyalty_policy_file": policy_file})


def opened(
    at: datetime, *, team: str = "logistics", cause: RootCause = "delivery", email: str = ""
) -> CaseRouted:
    customer = a_customer(email=email) if email else a_customer()
    return CaseRouted(
        case_id=f"case-{uuid.uuid4().hex[:10]}",
        feedback=a_feedback("The parcel never came", at=at, customer=customer),
        classification=a_classification(cause),
        routing=a_routing(at=at, team=team),
    )


def routed_event(case: CaseRouted) -> Event[Any]:
    return new_event(case, source="/closeloop/router", cause=case.feedback.feedback_id)


def lifecycle(kind: type[CaseEvent], case: CaseRouted, at: datetime, **fields: Any) -> Event[Any]:
    data = kind(
        case_id=case.case_id, customer_key=case.feedback.customer_key, occurred_at=at, **fields
    )
    return new_event(data, source="/closeloop/followup", cause=f"{case.case_id}/{uuid.uuid4()}")


def promise(
    kind: type[CaseEvent], case: CaseRouted, at: datetime, promise_id: str, **fields: Any
) -> Event[Any]:
    details = {
        "promise_id": promise_id,
        "what": "call back with the courier's answer",
        "due_at": case.routing.routed_at + timedelta(hours=4),
        "made_by": "agent-wang-fang",
        "team": case.routing.team,
    }
    return lifecycle(kind, case, at, **details, **fields)


async def profile(http: httpx.AsyncClient, key: str) -> dict[str, Any]:
    found = await http.get(f"/v1/customers/{key}")
    return found.json() if found.status_code == 200 else {}


def parts(found: dict[str, Any]) -> dict[str, str]:
    return {reason["part"]: reason["reason"] for reason in found.get("reasons", [])}


async def test_broken_promises_lower_the_score_until_the_customer_is_told_at_risk(
    infra: Infra, insights: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    case = opened(now - timedelta(hours=6), email=f"promised-{uuid.uuid4().hex[:6]}@example.com")
    key = case.feedback.customer_key
    made = now - timedelta(hours=5)
    await produce(
        infra.bootstrap,
        [
            routed_event(case),
            promise(PromiseMade, case, made, "p-1", due_in="4 hours"),
            promise(PromiseMade, case, made, "p-2", due_in="4 hours"),
        ],
    )

    async def scored_without_promises() -> dict[str, Any]:
        found = await profile(insights, key)
        return found if found.get("standing") else {}

    before = await eventually(scored_without_promises, timeout=60)
    assert 63 <= before["score"] <= 64  # 75 - 8 (a complaint hours old) - 3 (open)
    assert before["standing"]["at_risk"] is False
    assert not {"promises_broken", "promises_overdue"} & set(parts(before))

    async with TopicReader(infra.bootstrap, Topic.CUSTOMER_SIGNALS.value) as signals:
        # One promise broken: ten points less, above the threshold still.
        await produce(
            infra.bootstrap, [promise(PromiseBroken, case, now, "p-1", recorded_by="lead-li")]
        )

        async def one_broken() -> dict[str, Any]:
            found = await profile(insights, key)
            return found if "promises_broken" in parts(found) else {}

        after_one = await eventually(one_broken, timeout=60)
        assert before["score"] - 10.1 <= after_one["score"] <= before["score"] - 9.9
        assert parts(after_one)["promises_broken"] == "-10.0: 1 broken promise in the last 1 day"
        assert after_one["summary"]["promises_broken"] == 1
        assert after_one["standing"]["at_risk"] is False

        # The other goes overdue: five points less, below 50: told at risk, once.
        await produce(infra.bootstrap, [promise(PromiseOverdue, case, now, "p-2")])
        told = await signals.wait_for(
            lambda e: e.name == "customer.at_risk" and e.data.customer_key == key, timeout=60
        )
        assert isinstance(told.data, CustomerAtRisk)
        assert told.data.score < 50 and told.data.crossing == 1
        assert {"promises_broken", "promises_overdue"} <= {r.part for r in told.data.reasons}

        # Then it is broken too: it counts once, as broken, not as overdue as well.
        await produce(
            infra.bootstrap, [promise(PromiseBroken, case, now, "p-2", recorded_by="lead-li")]
        )

        async def two_broken() -> dict[str, Any]:
            found = await profile(insights, key)
            return found if found.get("summary", {}).get("promises_broken") == 2 else {}

        last = await eventually(two_broken, timeout=60)
        assert parts(last)["promises_broken"] == "-20.0: 2 broken promises in the last 1 day"
        assert "promises_overdue" not in parts(last)
        assert before["score"] - 20.1 <= last["score"] <= before["score"] - 19.9
        assert last["standing"]["at_risk"] is True
        told_now = [e for e in await signals.collect(1.0) if e.key == key]
        assert [e.name for e in told_now] == ["customer.at_risk"]


# A week no other test of this module has cases in.
MONDAY = date(2025, 5, 5)


def at(day: int, hours: float) -> datetime:
    return datetime.combine(MONDAY, time(), UTC) + timedelta(days=day, hours=hours)


def closed(case: CaseRouted, when: datetime, **fields: Any) -> Event[Any]:
    routing, feedback = case.routing, case.feedback
    data = CaseClosed(
        case_id=case.case_id,
        customer_key=feedback.customer_key,
        occurred_at=when,
        outcome="satisfied",
        feedback_id=feedback.feedback_id,
        channel=feedback.channel,
        customer_tier=feedback.customer.tier,
        root_cause=case.classification.root_cause,
        urgency=case.classification.urgency,
        priority=routing.priority,
        team=routing.team,
        agent=routing.agent,
        opened_at=feedback.received_at,
        first_response_at=None,
        resolved_at=None,
        closed_at=when,
        time_to_first_response_s=None,
        time_to_resolve_s=None,
        first_response_sla_met=None,
        resolution_sla_met=None,
        callbacks_made=0,
        reopen_count=0,
        csat=4,
        expected=4,
        perceived=4,
        ratio=1.0,
        **fields,
    )
    return new_event(data, source="/closeloop/followup", cause=f"{case.case_id}/closed")


def answered(case: CaseRouted, when: datetime, met: bool) -> Event[Any]:
    return lifecycle(
        SurveyAnswered, case, when, survey_id=f"{case.case_id}-s1", csat=4, expected=4,
        perceived=4, ratio=1.0, solved=True, verdict="satisfied", expectation_met=met,
    )  # fmt: skip


def a_week_of_promises(suffix: str) -> tuple[dict[str, str], list[Event[Any]]]:
    """A (team one, delivery): closed; three promises, two kept, one overdue and still
    without an outcome at the close; its promise events agree. B (team two, billing):
    closed; three promises, two kept, one broken after going overdue; case.closed alone
    says so. C (team one, billing): open; one promise, broken (its events count)."""
    one, two = f"counter-{suffix}", f"callcentre-{suffix}"
    a = opened(at(0, 9), team=one, cause="delivery")
    b = opened(at(1, 9), team=two, cause="billing")
    c = opened(at(2, 9), team=one, cause="billing")
    events = [routed_event(case) for case in (a, b, c)]
    for promise_id in ("a-1", "a-2", "a-3"):
        events.append(promise(PromiseMade, a, at(0, 10), promise_id))
    events += [
        promise(PromiseKept, a, at(0, 12), "a-1", recorded_by="agent-1", late=False),
        promise(PromiseKept, a, at(0, 13), "a-2", recorded_by="agent-1", late=False),
        promise(PromiseOverdue, a, at(0, 20), "a-3"),
        answered(a, at(1, 8), met=True),
        closed(
            a, at(1, 9), expected_outcome=ExpectedOutcome.REFUND, expectation_met=True,
            promises_made=3, promises_kept=2, promises_overdue=1, promises_open=1,
        ),
        closed(
            b, at(2, 9), expected_outcome=ExpectedOutcome.REPLACEMENT, expectation_met=False,
            promises_made=3, promises_kept=2, promises_broken=1, promises_overdue=1,
        ),
        promise(PromiseMade, c, at(2, 10), "c-1"),
        promise(PromiseBroken, c, at(2, 16), "c-1", recorded_by="lead-li"),
    ]  # fmt: skip
    ids = {"one": one, "two": two, "a": a.case_id, "b": b.case_id, "c": c.case_id}
    return ids, events


def promise_row(made: int, kept: int, broken: int, overdue: int, rate: float) -> dict[str, Any]:
    return {
        "promises_made": made,
        "promises_kept": kept,
        "promises_broken": broken,
        "promises_overdue": overdue,
        "promise_kept_rate": rate,
    }


def promises_of(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in promise_row(0, 0, 0, 0, 0)}


async def test_promise_counts_of_closed_and_open_cases_are_in_the_week_s_report(
    infra: Infra, insights: httpx.AsyncClient, settings: InsightsSettings
) -> None:
    ids, events = a_week_of_promises(uuid.uuid4().hex[:6])
    await produce(infra.bootstrap, events)
    period = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()}

    async def summary() -> dict[str, Any]:
        found = await insights.get("/v1/reports/summary", params={**period, "by": "team"})
        return found.json() if found.status_code == 200 else {}

    async def folded() -> dict[str, Any]:
        # Every event in: the counts of A's promise events alone, or its answer before
        # its close (which says what the customer asked for), are not the figures yet.
        found = await summary()
        total = found.get("total", {})
        asked = total.get("expectation_met_by_outcome", {}).get("refund", {}).get("asked")
        done = total.get("promises_made") == 7 and total.get("expectations_asked") == 2
        return found if done and asked == 1 and total.get("promises_broken") == 2 else {}

    # A's promise events and close, B's close and C's events, in any order.
    report = await eventually(folded, timeout=60)
    # Kept 4 of 4 kept + 2 broken + 1 overdue still without an outcome (A's third).
    assert promises_of(report["total"]) == promise_row(7, 4, 2, 2, round(4 / 7, 4))
    assert report["total"]["expectation_met_rate"] == 0.5
    by_team = {row["team"]: promises_of(row) for row in report["groups"]}
    assert by_team[ids["one"]] == promise_row(4, 2, 1, 1, 0.5)  # A and C
    assert by_team[ids["two"]] == promise_row(3, 2, 1, 1, round(2 / 3, 4))  # B
    review = (await insights.get(f"/v1/reviews/{ids['a']}")).json()
    assert review["promise_kept"] is False  # an overdue promise never kept
    assert review["promises"]["made"] == 3 and review["expectation_met"] is True

    # The week's report, as insights publishes it on report.weekly.
    published: list[Event[Any]] = []

    async def publish(batch: Sequence[Event[Any]]) -> None:
        published.extend(batch)

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url, tz_aware=True)
    try:
        store = InsightsStore(client[settings.mongo_database])
        ended = datetime.combine(MONDAY + timedelta(days=7), time(), UTC)
        week = await publish_due_report(
            store, publish, ended + timedelta(hours=7), timedelta(hours=6)
        )
    finally:
        await client.close()
    assert week == "2025-W19"
    (event,) = published
    weekly = event.data
    assert isinstance(weekly, WeeklyReport)
    teams = {row["team"]: promises_of(row) for row in weekly.by_team}
    assert teams == {
        ids["one"]: promise_row(4, 2, 1, 1, 0.5),
        ids["two"]: promise_row(3, 2, 1, 1, round(2 / 3, 4)),
    }
    causes = {row["root_cause"]: promises_of(row) for row in weekly.by_root_cause}
    assert causes == {
        "delivery": promise_row(3, 2, 0, 1, round(2 / 3, 4)),  # A
        "billing": promise_row(4, 2, 2, 1, 0.5),  # B and C
    }
    assert promises_of(weekly.total) == promise_row(7, 4, 2, 2, round(4 / 7, 4))
    outcomes = weekly.total["expectation_met_by_outcome"]
    assert outcomes["refund"] == {"asked": 1, "rate": 1.0}
    assert outcomes["replacement"] == {"asked": 1, "rate": 0.0}
