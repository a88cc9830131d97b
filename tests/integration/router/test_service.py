"""The router as a running service: events in and out over the real broker, its HTTP
API for agents and team queues, its metrics, and customer.signals that change where an
at-risk customer's next case goes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from services.router.app import build, signals_group
from services.router.domain import case_id_for
from services.router.policy import RoutingPolicy
from services.router.settings import RouterSettings
from shared.calendars import CalendarPolicy
from shared.contracts import (
    CaseReopened,
    CaseResolved,
    CaseRouted,
    Customer,
    FeedbackClassified,
    Priority,
    RootCause,
    Topic,
    Urgency,
)
from shared.envelope import Event, new_event
from shared.http import PROBLEM_JSON
from shared.runtime import Service
from shared.tools import devstack
from shared.tools.devstack import free_port
from tests.conftest import Infra
from tests.integration.router.test_flows import NOW, small_policy
from tests.integration.router.test_signals import a_signal, with_retention
from tests.integration.running import running
from tests.support import (
    TopicReader,
    a_classification,
    a_customer,
    a_feedback,
    eventually,
    http_routes,
    metric_sum,
    produce,
)

ROUTER_TOPICS = (Topic.FEEDBACK_CLASSIFIED.value, Topic.CASE_LIFECYCLE.value)


async def start_group_at_end(bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
    """Commit the group's offsets at the end of the topics, so a new router group skips
    what other tests produced before and handles only this test's events."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata partitions_for_topic reads
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        assert partitions, "the topics have no partitions yet"
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        # The local broker may report the end before the last batch: read past it.
        while await consumer.getmany(timeout_ms=300):
            pass
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


async def start_router_at_end(bootstrap: str, group: str) -> None:
    """Both of the router's groups: its own and that of its customer.signals consumer."""
    await start_group_at_end(bootstrap, group, ROUTER_TOPICS)
    signals = RouterSettings(kafka_consumer_group=group)
    await start_group_at_end(bootstrap, signals_group(signals), (Topic.CUSTOMER_SIGNALS.value,))


HOLIDAY = date(2026, 10, 1)


def write_policy(tmp_path: Path, policy: RoutingPolicy) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(policy.model_dump(mode="json")), encoding="utf-8")
    return path


READ_KEY = "test-router-dashboard-key-0123"
WRITE_KEY = "test-router-workforce-key-4567"
KEYS = {"dashboard": {"key": READ_KEY, "scopes": ["read"]}, "workforce": WRITE_KEY}
# Served without a key: operations (bound or protected per deployment) and the API's
# own description.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


def router_settings(
    infra: Infra, database: str, policy_file: Path, group: str, **overrides: Any
) -> RouterSettings:
    return RouterSettings(
        api_keys=KEYS,
        trusted_proxies=["127.0.0.1/32", "::1/128"],
        http_port=free_port(),
        kafka_bootstrap=infra.bootstrap,
        kafka_consumer_group=group,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=400,
        kafka_fetch_max_wait_ms=devstack.LOCAL_FETCH_MAX_WAIT_MS,
        mongo_url=infra.mongo_url,
        mongo_database=database,
        policy_file=policy_file,
        queue_sweep_s=3600,
        **overrides,
    )


@pytest.fixture
async def router(infra: Infra, database_name: str, tmp_path: Path) -> AsyncIterator[Service]:
    group = f"router-test-{uuid.uuid4().hex[:8]}"
    await start_router_at_end(infra.bootstrap, group)
    policy = small_policy(desk=2, capacity=1)
    # A calendar no team uses, listing a 2026 holiday: its end shows in the metrics.
    office = CalendarPolicy(time_zone="UTC", hours={"mon": ["09:00-18:00"]}, holidays=[HOLIDAY])
    policy = policy.model_copy(update={"calendars": {**policy.calendars, "office": office}})
    policy_file = write_policy(tmp_path, policy)
    settings = router_settings(
        infra, database_name, policy_file, group, auth_failure_limit="5/minute"
    )
    async with running(build(settings)) as svc:
        yield svc


@pytest.fixture
async def http(router: Service) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://127.0.0.1:{router.settings.http_port}"
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": WRITE_KEY}, timeout=10
    ) as client:
        yield client


@pytest.fixture
async def routed(infra: Infra) -> AsyncIterator[TopicReader]:
    async with TopicReader(infra.bootstrap, Topic.CASE_ROUTED) as reader:
        yield reader


def classified(
    urgency: Urgency,
    customer: Customer | None = None,
    cause: RootCause = "delivery",
) -> Event[FeedbackClassified]:
    data = FeedbackClassified(
        feedback=a_feedback(customer=customer),
        classification=a_classification(cause, urgency=urgency),
    )
    return new_event(data, source="/test", cause=uuid.uuid4().hex)


def case_of(event: Event[FeedbackClassified]) -> str:
    return case_id_for(event.data.feedback.feedback_id)


async def routed_case(reader: TopicReader, case_id: str, **match: Any) -> CaseRouted:
    """The first case.routed for the case whose routing matches."""
    event = await reader.wait_for(
        lambda e: (
            e.name == "case.routed"
            and e.data.case_id == case_id
            and all(getattr(e.data.routing, k) == v for k, v in match.items())
        )
    )
    routed: CaseRouted = event.data
    return routed


async def metrics(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_queued_case_is_assigned_when_an_agent_comes_online(
    infra: Infra, http: httpx.AsyncClient, routed: TopicReader
) -> None:
    for agent in ("desk-00", "desk-01"):
        response = await http.put(f"/v1/agents/{agent}/availability", json={"available": False})
        assert response.status_code == 200 and response.json()["available"] is False
    low, high = classified(Urgency.LOW), classified(Urgency.HIGH)
    await produce(infra.bootstrap, [low, high])
    queued = [await routed_case(routed, case_of(event), queued=True) for event in (low, high)]
    assert [q.routing.priority for q in queued] == [Priority.P4, Priority.P2]

    queue = (await http.get("/v1/teams/desk/queue")).json()
    assert (queue["depth"], queue["free_places"]) == (2, 0)
    assert [item["case_id"] for item in queue["items"]] == [queued[1].case_id, queued[0].case_id]
    assert [item["priority"] for item in queue["items"]] == ["P2", "P4"]
    assert all(item["first_response_business_s_left"] > 0 for item in queue["items"])

    agent = (await http.put("/v1/agents/desk-00/availability", json={"available": True})).json()
    assert (agent["available"], agent["load"], agent["open_cases"]) == (
        True,
        1,
        [queued[1].case_id],  # the higher priority first; capacity is 1
    )
    assigned = await routed_case(routed, queued[1].case_id, queued=False)
    assert assigned.routing.agent == "desk-00" and assigned.routing.reroute_count == 0

    agents = {a["id"]: a for a in (await http.get("/v1/agents", params={"team": "desk"})).json()}
    assert (agents["desk-00"]["load"], agents["desk-01"]["available"]) == (1, False)
    seen = await metrics(http)
    assert seen[("closeloop_team_queue_depth", (("team", "desk"),))] == 1
    assert seen[("closeloop_agent_load", (("agent", "desk-00"), ("team", "desk")))] == 1
    assert seen[("closeloop_cases_routed_total", (("priority", "P4"), ("team", "desk")))] >= 1
    assert seen[("closeloop_assignment_latency_seconds_count", ())] >= 1
    new_year = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert (
        seen[("closeloop_calendar_holidays_until_timestamp_seconds", (("calendar", "office"),))]
        == new_year
    )


async def test_lifecycle_events_free_agents_and_route_reopened_cases_again(
    infra: Infra, http: httpx.AsyncClient, routed: TopicReader
) -> None:
    events = [classified(Urgency.MEDIUM) for _ in range(2)]
    await produce(infra.bootstrap, events)
    first, second = [await routed_case(routed, case_of(event)) for event in events]
    assert {first.routing.agent, second.routing.agent} == {"desk-00", "desk-01"}
    late = classified(Urgency.MEDIUM)
    await produce(infra.bootstrap, [late])
    waiting = await routed_case(routed, case_of(late))
    assert waiting.routing.queued

    resolution = CaseResolved(
        case_id=first.case_id,
        customer_key=first.feedback.customer_key,
        occurred_at=NOW,
        resolved_by=str(first.routing.agent),
        solution="replaced the item",
        within_sla=True,
    )
    await produce(infra.bootstrap, [new_event(resolution, source="/test", cause="r1")])
    assigned = await routed_case(routed, waiting.case_id, queued=False)
    assert assigned.routing.agent == first.routing.agent

    reopen = CaseReopened(
        case_id=first.case_id,
        customer_key=first.feedback.customer_key,
        occurred_at=NOW,
        reason="not solved",
        reopen_count=1,
    )
    await produce(infra.bootstrap, [new_event(reopen, source="/test", cause="o1")])
    again = await routed_case(routed, first.case_id, reroute_count=1)
    assert (again.routing.team, again.routing.agent, again.routing.priority) == (
        "experts",
        "expert-lead",
        Priority.P2,
    )
    assert again.routing.reroute_reason == "reopened"
    seen = await metrics(http)
    assert seen[("closeloop_reroutes_total", (("reason", "reopened"),))] >= 1


async def test_the_api_answers_problems_for_unknown_agents_teams_and_bad_bodies(
    http: httpx.AsyncClient,
) -> None:
    missing = await http.put("/v1/agents/nobody/availability", json={"available": True})
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith(PROBLEM_JSON)
    assert (await http.get("/v1/teams/nowhere/queue")).status_code == 404
    assert (await http.get("/v1/agents", params={"team": "nowhere"})).status_code == 404
    for word in ("maybe", "yes"):
        bad = await http.put("/v1/agents/desk-00/availability", json={"available": word})
        assert bad.status_code == 422 and "available" in bad.json()["detail"]
    teams = {t["id"]: t for t in (await http.get("/v1/teams")).json()}
    assert teams["desk"]["escalation_team"] == "experts"
    assert teams["experts"]["escalation_lead"] == "expert-lead"


async def test_the_api_needs_a_key_and_a_read_key_cannot_take_agents_offline(
    router: Service,
) -> None:
    base = f"http://127.0.0.1:{router.settings.http_port}"
    offline = {"available": False}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        anonymous = await http.put("/v1/agents/desk-00/availability", json=offline)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == PROBLEM_JSON
        assert anonymous.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/v1/agents", headers={"X-API-Key": "not-a-router-key-at-all"})
        assert wrong.status_code == 401

        reader = {"X-API-Key": READ_KEY}
        assert (await http.get("/v1/agents", headers=reader)).status_code == 200
        bearer = {"Authorization": f"Bearer {READ_KEY}"}
        assert (await http.get("/v1/teams/desk/queue", headers=bearer)).status_code == 200
        refused = await http.put("/v1/agents/desk-00/availability", json=offline, headers=reader)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == PROBLEM_JSON
        assert "dashboard" in refused.json()["detail"] and "write" in refused.json()["detail"]
        agent = (await http.get("/v1/agents/desk-00", headers=reader)).json()
        assert agent["available"] is True

        writer = {"X-API-Key": WRITE_KEY}
        changed = await http.put("/v1/agents/desk-00/availability", json=offline, headers=writer)
        assert changed.status_code == 200 and changed.json()["available"] is False


async def test_every_route_but_operations_and_docs_needs_a_key(router: Service) -> None:
    routes = http_routes(router.app.routes)
    guarded = [r for r in routes if r.path not in PUBLIC]
    assert len(guarded) >= 5
    base = f"http://127.0.0.1:{router.settings.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        for number, route in enumerate(guarded):
            path = route.path.replace("{agent_id}", "desk-00").replace("{team_id}", "desk")
            # From addresses of their own, so that the limit on failures stays out of it.
            address = {"X-Forwarded-For": f"198.51.100.{number + 1}"}
            for method in sorted(route.methods or ()):
                response = await anonymous.request(
                    method, path, json={"available": True}, headers=address
                )
                assert response.status_code == 401, (method, route.path)


async def test_wrong_keys_from_one_address_get_429_with_retry_after_for_that_address_only(
    router: Service,
) -> None:
    base = f"http://127.0.0.1:{router.settings.http_port}"
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for attempt in range(5):
            wrong = await http.get(
                "/v1/agents", headers={**guesser, "X-API-Key": f"guess-{attempt}"}
            )
            assert wrong.status_code == 401
        blocked = await http.get("/v1/agents", headers={**guesser, "X-API-Key": WRITE_KEY})
        assert blocked.status_code == 429
        assert blocked.headers["content-type"] == PROBLEM_JSON
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        other = {"X-Forwarded-For": "198.51.100.8", "X-API-Key": WRITE_KEY}
        assert (await http.get("/v1/agents", headers=other)).status_code == 200


@pytest.fixture
async def retention_router(
    infra: Infra, database_name: str, tmp_path: Path
) -> AsyncIterator[Service]:
    group = f"router-test-{uuid.uuid4().hex[:8]}"
    await start_router_at_end(infra.bootstrap, group)
    policy_file = write_policy(tmp_path, with_retention(small_policy(desk=2, capacity=3)))
    async with running(build(router_settings(infra, database_name, policy_file, group))) as svc:
        yield svc


async def test_an_at_risk_customer_goes_to_retention_until_a_later_crossing_says_recovered(
    infra: Infra, retention_router: Service, routed: TopicReader
) -> None:
    base = f"http://127.0.0.1:{retention_router.settings.http_port}"
    store = retention_router.app.state.router.store
    kept, other = a_customer(), a_customer()
    into = a_signal(kept.key, 1)
    await produce(infra.bootstrap, [into])
    await eventually(lambda: store.customer_at_risk(kept.key), timeout=30)

    first, usual = classified(Urgency.MEDIUM, kept), classified(Urgency.MEDIUM, other)
    await produce(infra.bootstrap, [first, usual])
    risky = (await routed_case(routed, case_of(first))).routing
    normal = (await routed_case(routed, case_of(usual))).routing
    assert (normal.team, normal.priority) == ("desk", Priority.P3)
    assert (risky.team, risky.rule, risky.priority) == (
        "retention",
        "at-risk-to-retention",
        Priority.P2,
    )
    assert "customer at risk (insights' health score)" in risky.reason

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        stale_before = await metric_sum(
            http,
            "closeloop_router_customer_signals_total",
            event="customer.at_risk",
            outcome="stale",
        )
        # Recovered (the second crossing), then the first crossing delivered again late.
        await produce(infra.bootstrap, [a_signal(kept.key, 2), into])

        async def both_taken() -> bool:
            stale = await metric_sum(
                http,
                "closeloop_router_customer_signals_total",
                event="customer.at_risk",
                outcome="stale",
            )
            return stale > stale_before

        await eventually(both_taken, timeout=30)
    standing = await store.standing_of(kept.key)
    assert standing is not None and (standing.at_risk, standing.crossing) == (False, 2)

    # Another cause, so that it opens a case instead of joining the one in retention.
    later = classified(Urgency.MEDIUM, kept, "billing")
    await produce(infra.bootstrap, [later])
    again = (await routed_case(routed, case_of(later))).routing
    assert (again.team, again.rule, again.priority) == ("desk", "everything-to-desk", Priority.P3)
    assert "at risk" not in again.reason
