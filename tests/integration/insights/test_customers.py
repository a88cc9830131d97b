"""Customers' health scores against the real broker and database: a customer whose cases
go badly is told at risk on customer.signals once, whatever is redelivered; their profile,
the worklist and its CSV show why; as their history fades (half-lives of seconds in this
test's policy, and the service's clock moved on minutes) the sweep scores them again and
tells them recovered."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from services.insights.policy import DEFAULT_POLICY
from services.insights.settings import InsightsSettings
from shared.contracts import (
    CaseClosed,
    CaseEvent,
    CaseFirstResponse,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    CustomerAtRisk,
    CustomerRecovered,
    CustomerTier,
    Signal,
    SlaBreached,
    SurveyAnswered,
    Topic,
)
from shared.envelope import Event, new_event, to_record
from tests.conftest import Infra
from tests.integration.insights import test_service as service_tests
from tests.support import (
    TopicReader,
    a_classification,
    a_customer,
    a_feedback,
    a_routing,
    eventually,
    metric_sum,
    produce,
)

HALF_LIFE_S = 30


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped policy with half-lives of seconds: recovery by time alone, in a test."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    for part in policy["parts"].values():
        if "half_life_days" in part:
            part["half_life_days"] = HALF_LIFE_S / 86_400
    path = tmp_path_factory.mktemp("loyalty") / "loyalty.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


# test_service's client of the service these settings start, with its key, and the
# service's clock.
insights = service_tests.insights
clock = service_tests.clock


@pytest.fixture(scope="module")
def settings(infra: Infra, policy_file: Path) -> InsightsSettings:
    return service_tests.settings_for(infra).model_copy(
        update={
            "loyalty_policy_file": policy_file,
            "pending_sweep_s": 1.0,
            "rescore_every_h": 1 / 3600,
        }
    )


async def caught_up(infra: Infra, settings: InsightsSettings) -> None:
    """Wait until insights reads every partition of case.routed and case.lifecycle (it
    starts at their end): a marker on each, folded. The scores below fade in seconds, so
    their events must not wait for the consumer group to form."""
    markers: list[str] = []
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, acks="all")
    await producer.start()
    try:
        for topic in (Topic.CASE_ROUTED.value, Topic.CASE_LIFECYCLE.value):
            for partition in sorted(await producer.partitions_for(topic)):
                case_id = f"marker-{uuid.uuid4().hex[:10]}"
                record = to_record(_marker(topic, case_id))
                await producer.send_and_wait(
                    topic, record.value, key=record.key, headers=record.headers,
                    partition=partition,
                )  # fmt: skip
                markers.append(case_id)
    finally:
        await producer.stop()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url)
    try:
        cases = client[settings.mongo_database]["insights_cases"]

        async def all_folded() -> bool:
            return await cases.count_documents({"_id": {"$in": markers}}) == len(markers)

        await eventually(all_folded, timeout=240, interval=1.0)
    finally:
        await client.close()


def _marker(topic: str, case_id: str) -> Event[Any]:
    if topic == Topic.CASE_ROUTED.value:
        routed = CaseRouted(
            case_id=case_id,
            feedback=a_feedback("marker"),
            classification=a_classification(),
            routing=a_routing(),
        )
        return new_event(routed, source="/test", cause=case_id)
    responded = CaseFirstResponse(
        case_id=case_id,
        customer_key="c-marker",
        occurred_at=datetime.now(UTC),
        responded_by="test",
        within_sla=True,
    )
    return new_event(responded, source="/test", cause=case_id)


def history(now: datetime) -> tuple[str, list[Event[Any]]]:
    """Two cases of one VIP customer, seconds ago: the first late, reopened and answered
    dissatisfied; the second, still open, says they will leave."""
    customer = a_customer(email=f"retain-{uuid.uuid4().hex[:6]}@example.com", tier="vip")
    key = customer.key

    def routed(seconds_ago: float, text: str, churn: bool) -> CaseRouted:
        at = now - timedelta(seconds=seconds_ago)
        signals = [Signal(name="churn_intent", evidence="I'm done with you")] if churn else []
        return CaseRouted(
            case_id=f"case-{uuid.uuid4().hex[:10]}",
            feedback=a_feedback(text, at=at, customer=customer),
            classification=a_classification(signals=signals),
            routing=a_routing(
                at=at, first_response_due=at + timedelta(seconds=1), resolution_due=at
            ),
        )

    def event(kind: type[CaseEvent], case: CaseRouted, seconds_ago: float, **f: Any) -> Event[Any]:
        data = kind(
            case_id=case.case_id,
            customer_key=key,
            occurred_at=now - timedelta(seconds=seconds_ago),
            **f,
        )
        return new_event(data, source="/closeloop/followup", cause=f"{case.case_id}/{seconds_ago}")

    late = routed(9, "Second parcel lost this month", churn=False)
    leaving = routed(2, "Lost again. I'm done with you.", churn=True)
    closed = CaseClosed(
        case_id=late.case_id,
        customer_key=key,
        occurred_at=now - timedelta(seconds=3),
        outcome="dissatisfied",
        feedback_id=late.feedback.feedback_id,
        channel=late.feedback.channel,
        customer_tier=CustomerTier.VIP,
        root_cause=late.classification.root_cause,
        urgency=late.classification.urgency,
        priority=late.routing.priority,
        team=late.routing.team,
        agent=late.routing.agent,
        opened_at=now - timedelta(seconds=9),
        first_response_at=now - timedelta(seconds=7),
        resolved_at=now - timedelta(seconds=5),
        closed_at=now - timedelta(seconds=3),
        time_to_first_response_s=2,
        time_to_resolve_s=4,
        first_response_sla_met=False,
        resolution_sla_met=False,
        callbacks_made=0,
        reopen_count=1,
        csat=1,
        expected=4,
        perceived=1,
        ratio=0.25,
    )
    events = [
        new_event(late, source="/closeloop/router", cause=late.feedback.feedback_id),
        event(CaseFirstResponse, late, 7, responded_by="agent-a", within_sla=False),
        event(SlaBreached, late, 8, sla="resolution", due_at=now - timedelta(seconds=9)),
        event(CaseResolved, late, 6, resolved_by="agent-a", solution="resent", within_sla=False),
        event(CaseReopened, late, 5.5, reason="still not here", reopen_count=1),
        event(
            SurveyAnswered, late, 4, survey_id=f"{late.case_id}-s1", csat=1, expected=4,
            perceived=1, ratio=0.25, solved=False, verdict="dissatisfied",
        ),
        new_event(closed, source="/closeloop/followup", cause=f"{late.case_id}/closed"),
        new_event(leaving, source="/closeloop/router", cause=leaving.feedback.feedback_id),
    ]  # fmt: skip
    return key, events


async def test_a_customer_at_risk_is_told_once_shown_why_and_recovers_as_it_fades(
    infra: Infra,
    settings: InsightsSettings,
    insights: httpx.AsyncClient,
    clock: service_tests.MovableClock,
) -> None:
    await caught_up(infra, settings)
    key, events = history(datetime.now(UTC))
    async with TopicReader(infra.bootstrap, Topic.CUSTOMER_SIGNALS.value) as signals:
        await produce(infra.bootstrap, events)
        at_risk = await signals.wait_for(
            lambda e: e.name == "customer.at_risk" and e.data.customer_key == key, timeout=60
        )
        assert isinstance(at_risk.data, CustomerAtRisk)
        assert at_risk.key == key
        assert at_risk.data.crossing == 1
        assert at_risk.data.customer_tier is CustomerTier.VIP
        assert at_risk.data.score < 50
        # Which event tipped the score depends on the order they are folded in (two
        # topics); the complaints are in every score.
        assert "complaints" in {reason.part for reason in at_risk.data.reasons}

        # The profile while they are at risk, once every event is in: the standing, the
        # reasons, the history. The profile scores as it answers, the worklist shows the
        # standing's score: that one is in too once it leaves the close's case out (the
        # close comes after every other event of its case).
        async def everything_folded() -> dict[str, Any] | None:
            found = (await insights.get(f"/v1/customers/{key}")).json()
            summary = found.get("summary", {})
            done = summary.get("cases") == 2 and summary.get("surveys_answered") == 1
            done = done and summary.get("reopens") == 1
            return found if done and await standing_scored_after_the_close() else None

        async def standing_scored_after_the_close() -> bool:
            listed = (await insights.get("/v1/customers", params={"at_risk": "true"})).json()
            rows = [row for row in listed["customers"] if row["customer_key"] == key]
            return bool(rows) and rows[0]["open_case_ids"] == [events[-1].data.case_id]

        profile = await eventually(everything_folded, timeout=30)
        assert profile["standing"]["at_risk"] is True
        assert profile["customer"]["email"].startswith("retain-")
        assert profile["summary"]["deadlines_missed"] == 2
        assert profile["summary"]["churn_intent_cases"] == 1
        assert {"dissatisfied", "churn_intent", "reopened"} <= {
            reason["part"] for reason in profile["reasons"]
        }
        assert [s["event_id"] for s in profile["signals"]] == [at_risk.id]
        assert {row["case_id"] for row in profile["cases"]} == {
            e.data.case_id for e in events if isinstance(e.data, CaseRouted)
        }

        listed = (await insights.get("/v1/customers", params={"at_risk": "true"})).json()
        assert key in [row["customer_key"] for row in listed["customers"]]
        exported = (await insights.get("/v1/customers.csv", params={"at_risk": "true"})).text
        rows = list(csv.DictReader(io.StringIO(exported.lstrip("\ufeff"))))
        (row,) = [row for row in rows if row["customer_key"] == key]
        assert row["at_risk"] == "true" and row["email"] == profile["customer"]["email"]
        assert "dissatisfied" in row["reasons"]

        # Every event again: folded as duplicates, no second crossing.
        duplicates_before = await metric_sum(
            insights, "closeloop_insights_events_folded_total", outcome="duplicate"
        )
        await produce(infra.bootstrap, events)
        await eventually(lambda: _at_least(insights, duplicates_before + len(events)), timeout=60)

        # Half-lives of seconds, and ten of them gone by on the service's clock: the sweep
        # scores them again and tells them recovered.
        clock.move_on(timedelta(seconds=10 * HALF_LIFE_S))
        recovered = await signals.wait_for(
            lambda e: e.name == "customer.recovered" and e.data.customer_key == key, timeout=90
        )
        assert isinstance(recovered.data, CustomerRecovered)
        assert recovered.data.crossing == 2
        assert recovered.data.score > 60
        assert recovered.data.open_case_ids == [events[-1].data.case_id]
        told = [e for e in await signals.collect(1.0) if e.key == key]
        assert [e.name for e in told] == ["customer.at_risk", "customer.recovered"]

    standing = (await insights.get(f"/v1/customers/{key}")).json()["standing"]
    assert standing["at_risk"] is False and standing["crossings"] == 2
    assert await metric_sum(insights, "closeloop_insights_customers_scored_total", why="decay") > 0


async def _at_least(http: httpx.AsyncClient, count: float) -> bool:
    folded = await metric_sum(http, "closeloop_insights_events_folded_total", outcome="duplicate")
    return folded >= count


async def test_the_worklist_pages_by_score_and_refuses_a_foreign_cursor(
    insights: httpx.AsyncClient,
) -> None:
    await eventually(lambda: _listed(insights), timeout=60)  # the first test's customer at least
    first = (await insights.get("/v1/customers", params={"limit": 1})).json()
    assert len(first["customers"]) == 1
    seen = [first["customers"][0]["customer_key"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (await insights.get("/v1/customers", params={"limit": 1, "cursor": cursor})).json()
        seen += [row["customer_key"] for row in page["customers"]]
        cursor = page["next_cursor"]
    whole = (await insights.get("/v1/customers", params={"limit": 500})).json()
    assert seen == [row["customer_key"] for row in whole["customers"]]
    scores = [row["score"] for row in whole["customers"]]
    assert scores == sorted(scores)
    bad = await insights.get("/v1/customers", params={"cursor": "no-bar-here"})
    assert bad.status_code == 422
    assert "cursor" in bad.json()["detail"]
    missing = await insights.get("/v1/customers/c-000000000000000000000000")
    assert missing.status_code == 404
    assert (await insights.get("/v1/customers", headers={"X-API-Key": ""})).status_code == 401


async def _listed(http: httpx.AsyncClient) -> bool:
    return bool((await http.get("/v1/customers")).json()["customers"])
