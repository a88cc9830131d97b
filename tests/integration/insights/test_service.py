"""insights against the real broker and database: events of three cases, published as
the router and followup publish them, become the projection and the rollups; the report
figures are those computed by hand below; a redelivery of every event changes nothing;
the cases behind the figures come page by page and as CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient

from services.insights.app import build
from services.insights.settings import InsightsSettings
from services.insights.store import InsightsStore
from services.insights.weekly import last_finished_week, publish_due_report, week_name
from shared.clock import utcnow
from shared.contracts import (
    CaseClosed,
    CaseEscalated,
    CaseEvent,
    CaseFirstResponse,
    CaseResolved,
    CaseRouted,
    ExpectedOutcome,
    SurveyAnswered,
    SurveyRequested,
    Topic,
    WeeklyReport,
)
from shared.envelope import Event, new_event
from shared.tools import devstack
from shared.tools.cli import rebuild_insights
from shared.tools.devstack import free_port
from tests.conftest import Infra
from tests.integration.running import running
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

KEY = "test-insights-dashboard-key-8901"
WRITE_KEY = "test-insights-quality-key-2345"
DAY = datetime(2025, 6, 10, tzinfo=UTC)  # before any other test's cases


def settings_for(infra: Infra) -> InsightsSettings:
    return InsightsSettings(
        api_keys={"dashboard": {"key": KEY, "scopes": ["read"]}, "quality": WRITE_KEY},
        http_port=free_port(),
        kafka_bootstrap=infra.bootstrap,
        kafka_consumer_group=f"insights-{uuid.uuid4().hex[:8]}",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=400,
        kafka_fetch_max_wait_ms=devstack.LOCAL_FETCH_MAX_WAIT_MS,
        mongo_url=infra.mongo_url,
        mongo_database=f"insights_{uuid.uuid4().hex[:12]}",
    )


class MovableClock:
    """The real clock, moved on by hand: what would take minutes to fade or come due does
    at once."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.ahead

    def move_on(self, delta: timedelta) -> None:
        self.ahead += delta


async def start_at_the_end(settings: InsightsSettings) -> None:
    """Commit the service's new consumer group at the end of the topics it reads: it folds
    what its tests publish, not the whole history earlier tests left on the broker the
    session shares."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.kafka_consumer_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer.topics()  # the metadata of every topic, for their partitions
        partitions = [
            TopicPartition(topic, partition)
            for topic in (Topic.CASE_ROUTED.value, Topic.CASE_LIFECYCLE.value)
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        assert partitions
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(ends)
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def settings(infra: Infra) -> InsightsSettings:
    return settings_for(infra)


@pytest.fixture(scope="module")
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture(scope="module")
async def insights(
    settings: InsightsSettings, clock: MovableClock
) -> AsyncIterator[httpx.AsyncClient]:
    await start_at_the_end(settings)
    async with (
        running(build(settings, clock=clock)),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.http_port}",
            headers={"X-API-Key": KEY},
            timeout=30,
        ) as http,
    ):
        yield http


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def lifecycle(kind: type[CaseEvent], routed: CaseRouted, hours: float, **fields: Any) -> Event[Any]:
    data = kind(
        case_id=routed.case_id,
        customer_key=routed.feedback.customer_key,
        occurred_at=at(hours),
        **fields,
    )
    return new_event(data, source="/closeloop/followup", cause=f"{routed.case_id}/{hours}")


def opened(team: str, hours: float, text: str) -> CaseRouted:
    feedback = a_feedback(text, at=at(hours), customer=a_customer())
    routing = a_routing(
        at=at(hours),
        team=team,
        first_response_due=at(hours + 8),
        resolution_due=at(hours + 72),
    )
    return CaseRouted(
        case_id=f"case-{uuid.uuid4().hex[:10]}",
        feedback=feedback,
        classification=a_classification(),
        routing=routing,
    )


def three_cases(team: str) -> tuple[list[CaseRouted], list[Event[Any]]]:
    """A: answered within its deadlines, resolved, surveyed (delighted), closed.
    B: first answered after its deadline, escalated, surveyed without an answer.
    C: opened, nothing else yet."""
    a = opened(team, 9, "The parcel never came. 包裹一直没到，请退款")
    b = opened(team, 10, "=Second time the courier left it outside")
    c = opened(team, 11, "Where is my refund?")
    events: list[Event[Any]] = [
        new_event(routed, source="/closeloop/router", cause=routed.feedback.feedback_id)
        for routed in (a, b, c)
    ]
    events += [
        lifecycle(CaseFirstResponse, a, 9.5, responded_by="agent-a", within_sla=True),
        lifecycle(
            CaseResolved, a, 10, resolved_by="agent-a", solution="refunded", within_sla=True
        ),
        lifecycle(
            SurveyRequested, a, 10.1, survey_id=f"{a.case_id}-s1", channel="email",
            expires_at=at(82),
        ),
        lifecycle(
            SurveyAnswered, a, 12, survey_id=f"{a.case_id}-s1", csat=5, expected=4,
            perceived=5, ratio=1.25, solved=True, verdict="delighted",
        ),
        lifecycle(CaseFirstResponse, b, 20, responded_by="agent-b", within_sla=False),
        lifecycle(CaseEscalated, b, 21, reason="customer asked for a supervisor"),
        lifecycle(
            SurveyRequested, b, 22, survey_id=f"{b.case_id}-s1", channel="sms",
            expires_at=at(94),
        ),
    ]  # fmt: skip
    closed_a = CaseClosed(
        case_id=a.case_id,
        customer_key=a.feedback.customer_key,
        occurred_at=at(12.5),
        outcome="delighted",
        feedback_id=a.feedback.feedback_id,
        channel=a.feedback.channel,
        customer_tier=a.feedback.customer.tier,
        root_cause=a.classification.root_cause,
        urgency=a.classification.urgency,
        priority=a.routing.priority,
        team=team,
        agent=a.routing.agent,
        opened_at=at(9),
        first_response_at=at(9.5),
        resolved_at=at(10),
        closed_at=at(12.5),
        time_to_first_response_s=1800,
        time_to_resolve_s=3600,
        first_response_sla_met=True,
        resolution_sla_met=True,
        callbacks_made=0,
        reopen_count=0,
        csat=5,
        expected=4,
        perceived=5,
        ratio=1.25,
    )
    events.append(new_event(closed_a, source="/closeloop/followup", cause=f"{a.case_id}/closed"))
    return [a, b, c], events


# Computed by hand from the three cases above.
EXPECTED = {
    "cases": 3,
    # A 30 min (bucket 15 to 30 min), B 10 h (bucket 8 h to 1 day): the median is A's
    # bucket's upper edge; the 90th percentile 80% into B's bucket.
    "first_response_p50_s": 1800.0,
    "first_response_p90_s": 28_800 + 0.8 * (86_400 - 28_800),
    # A alone, 1 h, in the bucket 30 min to 1 h: interpolated inside it.
    "resolve_p50_s": 1800 + 0.5 * 1800,
    "resolve_p90_s": 1800 + 0.9 * 1800,
    "first_response_deadline_met": 0.5,  # A met, B missed, C not known yet
    "resolution_deadline_met": 1.0,  # A met; B and C not known yet
    "reopen_rate": 0.0,
    "escalation_rate": round(1 / 3, 4),
    "survey_response_rate": 0.5,
    "csat_mean": 5.0,
    "csat_distribution": {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 1.0},
    "satisfaction_index": 125.0,  # perceived 5 against expected 4
    "delighted": 0.5,
    "satisfied": 0.0,
    "dissatisfied": 0.0,
    "no_response": 0.5,
    # No promise was made, no survey asked whether they got what they asked for.
    "promises_made": 0,
    "promises_kept": 0,
    "promises_broken": 0,
    "promises_overdue": 0,
    "promise_kept_rate": None,
    "expectations_asked": 0,
    "expectation_met_rate": None,
    "expectation_met_by_outcome": {
        outcome.value: {"asked": 0, "rate": None} for outcome in ExpectedOutcome
    },
}


async def folded(http: httpx.AsyncClient, outcome: str) -> float:
    return await metric_sum(http, "closeloop_insights_events_folded_total", outcome=outcome)


async def summary(http: httpx.AsyncClient, team: str, **params: Any) -> dict[str, Any]:
    response = await http.get(
        "/v1/reports/summary",
        params={"from": "2025-06-10", "to": "2025-06-10", "team": team, **params},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def three_cases_folded(
    infra: Infra, insights: httpx.AsyncClient
) -> tuple[str, list[CaseRouted], list[Event[Any]]]:
    """The three cases of a new team, published and folded: (team, cases, events) once
    the team's summary is the one computed by hand and A's close is in."""
    team = f"team-{uuid.uuid4().hex[:8]}"
    cases, events = three_cases(team)
    await produce(infra.bootstrap, events)

    async def settled() -> bool:
        # The figures do not count closes: A's review says whether case.closed is in.
        review = await insights.get(f"/v1/reviews/{cases[0].case_id}")
        return bool(
            (await summary(insights, team))["total"] == EXPECTED
            and review.status_code == 200
            and review.json()["closed"]
        )

    # insights starts at the end of the topics (start_at_the_end) and folds these at
    # once: an upper bound for a loaded machine, asserting nothing about speed.
    with contextlib.suppress(TimeoutError):
        await eventually(settled, timeout=120)
    assert (await summary(insights, team))["total"] == EXPECTED
    return team, cases, events


async def test_three_cases_give_the_figures_computed_by_hand_and_a_redelivery_changes_nothing(
    infra: Infra, insights: httpx.AsyncClient
) -> None:
    team, _, events = await three_cases_folded(infra, insights)

    duplicates = await folded(insights, "duplicate")
    await produce(infra.bootstrap, events)
    await eventually(lambda: _more(insights, duplicates + len(events)))
    again = await summary(insights, team, by="priority")
    assert again["total"] == EXPECTED
    assert again["groups"] == [{"priority": "P3", **EXPECTED}]
    # Two dimensions read the pair slices, three the combinations: the same figures.
    combined = await summary(insights, team, by="priority", channel="web")
    assert combined["groups"] == again["groups"] and combined["total"] == EXPECTED

    period = {"from": "2025-06-09", "to": "2025-06-10", "team": team}
    trend = (await insights.get("/v1/reports/trend", params=period)).json()
    assert [row["start"] for row in trend["rows"]] == ["2025-06-09", "2025-06-10"]
    assert trend["rows"][1] == {
        "start": "2025-06-10",
        **EXPECTED,
        "cases_change": None,
        "rising": [],
    }
    weekly = await insights.get("/v1/reports/trend", params={**period, "interval": "week"})
    assert [(row["start"], row["cases"]) for row in weekly.json()["rows"]] == [("2025-06-09", 3)]


async def _more(http: httpx.AsyncClient, count: float) -> bool:
    return await folded(http, "duplicate") >= count


async def test_the_cases_behind_a_figure_come_page_by_page_and_as_csv(
    infra: Infra, insights: httpx.AsyncClient
) -> None:
    team, cases, _ = await three_cases_folded(infra, insights)
    params = {"from": "2025-06-10", "to": "2025-06-10", "team": team}
    first = (await insights.get("/v1/reports/cases", params={**params, "limit": 2})).json()
    assert first["next_cursor"]
    second = (
        await insights.get(
            "/v1/reports/cases", params={**params, "limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert second["next_cursor"] is None
    ids = [case["case_id"] for case in first["cases"] + second["cases"]]
    assert ids == [case.case_id for case in cases]  # by opening time

    top = (await insights.get("/v1/reports/top-issues", params=params)).json()
    assert [(c["root_cause"], c["complaints"]) for c in top["causes"]] == [("delivery", 3)]
    for issue in top["causes"][0]["issues"]:
        assert set(issue["case_ids"]) <= set(ids) and issue["count"] >= 2

    response = await insights.get("/v1/reports/cases.csv", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [row["case_id"] for row in rows] == ids
    assert rows[0]["text"] == "The parcel never came. 包裹一直没到，请退款"
    assert rows[0]["csat"] == "5" and rows[0]["verdict"] == "delighted"
    assert rows[1]["text"].startswith("'=")  # not run as a formula by a spreadsheet
    assert rows[1]["first_response_sla_met"] == "false"
    assert rows[2]["first_response_at"] == ""


async def test_reports_need_a_key_and_refuse_a_bad_period(insights: httpx.AsyncClient) -> None:
    anonymous = await insights.get("/v1/reports/summary", headers={"X-API-Key": ""})
    assert anonymous.status_code == 401
    backwards = await insights.get(
        "/v1/reports/summary", params={"from": "2025-06-11", "to": "2025-06-10"}
    )
    assert backwards.status_code == 422
    bad_cursor = await insights.get("/v1/reports/cases", params={"cursor": "nonsense"})
    assert bad_cursor.status_code == 422


async def test_a_rebuild_from_the_topics_gives_the_same_rollups(
    infra: Infra, insights: httpx.AsyncClient, settings: InsightsSettings
) -> None:
    team, _, events = await three_cases_folded(infra, insights)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url, tz_aware=True)
    try:
        live = InsightsStore(client[settings.mongo_database])
        rebuilt = InsightsStore(client[f"rebuilt_{uuid.uuid4().hex[:12]}"])
        await rebuilt.ensure_indexes()
        progress: list[tuple[int, int]] = []
        result = await rebuild_insights(
            infra.bootstrap, rebuilt, lambda done, total: progress.append((done, total))
        )
        day, next_day = DAY.date(), DAY.date() + timedelta(days=1)
        filters = {"team": [team]}
        for by in ("priority", None):  # the combinations; the team's own rollups
            assert await rebuilt.rollups(day, next_day, filters, by) == await live.rollups(
                day, next_day, filters, by
            )
        assert result.folded >= len(events)
        assert progress[-1] == (result.read, result.read)
        case_id = events[0].data.case_id
        assert await rebuilt.facts(case_id) == await live.facts(case_id)
        # Every delta was added and taken off its case: nothing is left pending.
        for store in (live, rebuilt):
            assert await store.cases.count_documents({"pending.0": {"$exists": True}}) == 0
            assert await store.cases.count_documents({"pending_since": {"$ne": None}}) == 0
    finally:
        await client.close()


async def test_a_closed_case_s_review_answers_the_handbook_s_questions_and_keeps_a_lesson(
    infra: Infra, insights: httpx.AsyncClient
) -> None:
    team, (a, b, _), _ = await three_cases_folded(infra, insights)
    review = (await insights.get(f"/v1/reviews/{a.case_id}")).json()
    assert review["closed"] is True
    assert review["answered_in_time"] == {"answer": True, "took_s": 1800.0, "allowed_s": 28800.0}
    assert review["resolved_in_time"] == {"answer": True, "took_s": 3600.0, "allowed_s": 259200.0}
    assert (review["solution_accepted"], review["customer_satisfied"], review["csat"]) == (
        True, True, 5,
    )  # fmt: skip
    assert (review["reopened"], review["escalated"], review["promise_kept"]) == (False, False, None)
    assert review["lesson"] is None
    other = (await insights.get(f"/v1/reviews/{b.case_id}")).json()
    assert other["answered_in_time"]["answer"] is False and other["escalated"] is True
    assert other["customer_satisfied"] is None  # surveyed, not answered
    assert (await insights.get("/v1/reviews/no-such-case")).status_code == 404

    lesson = {"lesson": "Ask the courier for a photo at the door", "by": "lead-li"}
    refused = await insights.put(f"/v1/reviews/{a.case_id}/lesson", json=lesson)
    assert refused.status_code == 403  # the dashboard's key only reads
    recorded = await insights.put(
        f"/v1/reviews/{a.case_id}/lesson", json=lesson, headers={"X-API-Key": WRITE_KEY}
    )
    assert recorded.status_code == 200, recorded.text
    assert (await insights.get(f"/v1/reviews/{a.case_id}")).json()["lesson"]["by"] == "lead-li"
    today = datetime.now(UTC).date().isoformat()
    listed = (
        await insights.get("/v1/reports/lessons", params={"from": today, "to": today, "team": team})
    ).json()
    assert [(c["root_cause"], [x["case_id"] for x in c["lessons"]]) for c in listed["causes"]] == [
        ("delivery", [a.case_id])
    ]


async def test_a_finished_week_is_published_once_on_report_weekly_with_its_figures(
    infra: Infra, insights: httpx.AsyncClient, settings: InsightsSettings
) -> None:
    team, _, events = await three_cases_folded(infra, insights)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url, tz_aware=True)
    published: list[Event[Any]] = []

    async def publish(batch: Sequence[Event[Any]]) -> None:
        published.extend(batch)

    try:
        # The same facts in a store of its own: the events folded as insights folds them
        # (a rebuild from the topics gives the same, test_a_rebuild_... shows).
        store = InsightsStore(client[f"weekly_{uuid.uuid4().hex[:12]}"])
        await store.ensure_indexes()
        for folding in events:
            assert await store.apply(folding, folding.data.case_id, utcnow())
        # Monday 2025-06-16, 7 h: the week of 9 to 15 June ended 7 hours ago.
        now = datetime(2025, 6, 16, 7, tzinfo=UTC)
        week = await publish_due_report(store, publish, now, timedelta(hours=6))
        again = await publish_due_report(store, publish, now, timedelta(hours=6))
        early = await publish_due_report(
            store, publish, datetime(2025, 6, 23, 5, tzinfo=UTC), timedelta(hours=6)
        )
    finally:
        await client.close()
    assert (week, again, early) == ("2025-W24", None, None)
    (event,) = published
    report = event.data
    assert isinstance(report, WeeklyReport)
    assert (report.start.isoformat(), report.end.isoformat()) == ("2025-06-09", "2025-06-15")
    assert event.time == datetime(2025, 6, 16, tzinfo=UTC)
    rows = [row for row in report.by_team if row["team"] == team]
    assert rows == [{"team": team, **EXPECTED}]
    assert report.total["cases"] >= 3


async def test_the_service_publishes_the_last_finished_week_on_the_topic(
    infra: Infra, insights: httpx.AsyncClient
) -> None:
    week = week_name(last_finished_week(datetime.now(UTC), timedelta(hours=6)))
    async with TopicReader(infra.bootstrap, Topic.REPORT_WEEKLY) as reader:
        event = await reader.wait_for(lambda e: e.subject == week, timeout=30)
    assert isinstance(event.data, WeeklyReport) and event.data.week == week
