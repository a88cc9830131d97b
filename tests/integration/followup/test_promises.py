"""Promises and customer notifications through followup's API, its real database and
broker: the promise is told to the customer, its timers fire on the service's own clock,
outcomes are recorded once, a broken one escalates the case, and case.closed counts them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.followup.handlers import make_handlers
from services.followup.outreach import load_outreach
from services.followup.policy import load_policy
from shared.contracts import Expectation, Priority, Topic
from shared.envelope import Event, new_event
from tests.conftest import Infra
from tests.integration.followup.test_api import Api, api
from tests.support import TopicReader, a_case_routed, a_classification, a_feedback, a_routing

__all__ = ["api"]  # the fixture


@pytest.fixture
async def notify(infra: Infra) -> AsyncIterator[TopicReader]:
    async with TopicReader(infra.bootstrap, Topic.CUSTOMER_NOTIFY) as reader:
        yield reader


async def notice(reader: TopicReader, case_id: str, kind: str) -> Event[Any]:
    return await reader.wait_for(lambda e: e.data.case_id == case_id and e.data.kind == kind)


async def test_a_new_case_keeps_its_acknowledgement_in_the_timeline(api: Api) -> None:
    routed = await api.open_case(language="zh")
    case = (await api.http.get(f"/v1/cases/{routed.case_id}")).json()
    assert case["last_update_at"] is not None
    (said,) = [e for e in case["timeline"] if e["event"] == "customer.notify"]
    assert said["detail"].startswith("acknowledgement via web: ")
    assert routed.case_id[:8] in said["detail"]


async def test_a_promise_is_told_warned_due_and_kept_once(api: Api, notify: TopicReader) -> None:
    routed = await api.open_case()
    url = f"/v1/cases/{routed.case_id}/promises"
    body = {"what": "refund the delivery fee", "due_in": "2 days", "by": "agent-wang-fang"}
    made = await api.http.post(url, json=body)
    assert made.status_code == 201, made.text
    promise = made.json()["promise"]
    assert promise["status"] == "open"
    again = await api.http.post(url, json=body)
    assert again.status_code == 200 and again.json()["promise"] == promise
    event = await api.wait_for(routed.case_id, "promise.made")
    assert event.data.promise_id == promise["promise_id"] and event.data.due_in == "2 days"
    told = await notice(notify, routed.case_id, "promise")
    assert told.data.promise_id == promise["promise_id"]

    api.clock.advance(hours=40)  # 80% of two days
    await api.wait_for(routed.case_id, "promise.warning")
    api.clock.advance(hours=8)
    due = await api.wait_for(routed.case_id, "promise.due")
    assert due.data.team == "logistics"

    outcome = f"{url}/{promise['promise_id']}/outcome"
    kept = await api.http.post(outcome, json={"outcome": "kept", "by": "agent-wang-fang"})
    assert kept.status_code == 200, kept.text
    assert kept.json()["promise"]["status"] == "kept"
    late = await api.wait_for(routed.case_id, "promise.kept")
    assert late.data.late is False
    same = await api.http.post(outcome, json={"outcome": "kept", "by": "agent-wang-fang"})
    assert same.status_code == 200
    other = await api.http.post(outcome, json={"outcome": "broken", "by": "agent-wang-fang"})
    assert other.status_code == 409 and "already recorded kept" in other.text


async def test_bad_promises_get_a_problem_that_says_what_is_wrong(api: Api) -> None:
    routed = await api.open_case()
    url = f"/v1/cases/{routed.case_id}/promises"
    cases = [
        ({"what": "call back", "by": "a"}, 422, "one of them"),
        ({"what": "call back", "by": "a", "due_in": "soonish"}, 422, "not a duration"),
        ({"what": "call back", "by": "a", "due_at": "2020-01-01T00:00:00Z"}, 422, "has passed"),
        ({"what": "call back", "by": "a", "due_at": "2030-01-01T00:00:00"}, 422, "time zone"),
        ({"what": "", "by": "a", "due_in": "2 days"}, 422, "what"),
    ]
    for body, status, words in cases:
        response = await api.http.post(url, json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, (body, response.text)
    missing = await api.http.post(
        "/v1/cases/no-such-case/promises", json={"what": "x", "by": "a", "due_in": "2 days"}
    )
    assert missing.status_code == 404
    unknown = await api.http.post(f"{url}/nope/outcome", json={"outcome": "kept", "by": "a"})
    assert unknown.status_code == 404


async def test_an_overdue_promise_escalates_the_case_and_case_closed_counts_it(api: Api) -> None:
    routed = await api.open_case()
    url = f"/v1/cases/{routed.case_id}/promises"
    body = {"what": "send the courier's report", "due_in": "4 hours", "by": "agent-wang-fang"}
    promise = (await api.http.post(url, json=body)).json()["promise"]
    api.clock.advance(days=4)  # past due and past the grace in any calendar
    overdue = await api.wait_for(routed.case_id, "promise.overdue")
    assert overdue.data.promise_id == promise["promise_id"]
    escalated = await api.wait_for(routed.case_id, "case.escalated")
    assert "promise overdue" in escalated.data.reason
    await api.resolve(routed.case_id)
    answer = {"csat": 4, "expected": 4, "perceived": 4, "solved": True, "expectation_met": True}
    assert (
        await api.http.post(f"/v1/cases/{routed.case_id}/survey", json=answer)
    ).status_code == 200
    closed = await api.wait_for(routed.case_id, "case.closed")
    assert (closed.data.promises_made, closed.data.promises_overdue) == (1, 1)
    assert (closed.data.promises_open, closed.data.promises_kept) == (1, 0)
    assert closed.data.expectation_met is True


async def test_the_survey_page_asks_whether_the_customer_got_what_they_asked_for(
    api: Api,
) -> None:
    now = api.clock.now
    routed = a_case_routed(Priority.P3, at=now)
    expectation = Expectation(outcome="refund", source="inferred", evidence="我要退款")
    routed = routed.model_copy(
        update={
            "feedback": a_feedback("我要退款", at=now, language="zh"),
            "classification": a_classification(expectation=expectation),
            "routing": a_routing(Priority.P3, at=now),
        }
    )
    handler = make_handlers(api.store, load_policy(), load_outreach())["case.routed"]
    await handler(new_event(routed, source="/test", cause=routed.case_id))
    plain = await api.open_case(language="zh")  # nothing says what this customer expects
    async with httpx.AsyncClient() as customer:
        asked = await customer.get(await api.resolve(routed.case_id))
        assert "您当时希望我们退款，做到了吗？" in asked.text
        assert 'name="expectation_met"' in asked.text
        unasked = await customer.get(await api.resolve(plain.case_id))
        assert unasked.status_code == 200 and 'name="expectation_met"' not in unasked.text
        link = str(asked.url)
        answer = {"csat": "3", "expected": "4", "perceived": "4", "solved": "yes", "lang": "zh"}
        posted = await customer.post(link, data={**answer, "expectation_met": "no"})
        assert posted.status_code == 303
    answered = await api.wait_for(routed.case_id, "survey.answered")
    assert answered.data.expectation_met is False
    closed = await api.wait_for(routed.case_id, "case.closed")
    assert (closed.data.expected_outcome, closed.data.expectation_met) == ("refund", False)
