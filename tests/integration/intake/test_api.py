"""Intake over real HTTP and the real broker: every channel endpoint, the batch,
authentication and signatures, limits, and answers that never lie about the broker."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.intake.app import build
from services.intake.policy import sign
from services.intake.schemas import BatchResult
from services.intake.settings import IntakeSettings
from shared.contracts import NAIVE_TIMESTAMP, Channel, Topic
from shared.envelope import Event, derive_id
from shared.tools import devstack
from shared.tools.devstack import free_port
from tests.conftest import Infra
from tests.integration.running import running
from tests.support import TopicReader

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "intake"
ENVIRON = {
    "TEST_OPEN_KEY": "open-key",
    "TEST_SIGNED_KEY": "signed-key",
    "TEST_SIGNED_SECRET_OLD": "old-secret",
    "TEST_SIGNED_SECRET": "new-secret",
    "TEST_THROTTLED_KEY": "throttled-key",
    "TEST_SMS_KEY": "sms-key",
    "TEST_SIGNED_THROTTLED_KEY": "signed-throttled-key",
    "TEST_SIGNED_THROTTLED_SECRET": "signed-throttled-secret",
}
OPEN = {"X-API-Key": "open-key"}
MAX_BODY = 64 * 1024

COMPLAINT = {
    "channel": "email",
    "customer": {"email": "li.wei@example.com", "tier": "vip"},
    "subject": "退款",
    "text": "重复扣款两次，退款到现在还没到账！",
    "received_at": "2026-03-01T17:00:00+08:00",
}


def intake_settings(infra: Infra, bootstrap: str | None = None, **overrides: Any) -> IntakeSettings:
    """Rate limits and seen signatures in the test database, as in production (the
    service's MongoDB). The tests of this module fail on purpose, many times, from one
    address: the limit on failed attempts is generous unless a test sets its own."""
    values: dict[str, Any] = {
        "http_port": free_port(),
        "kafka_bootstrap": bootstrap or infra.bootstrap,
        "kafka_request_timeout_ms": 2000,
        "retry_after_s": 7,
        "integrations_file": FIXTURES / "integrations.yaml",
        "max_body_bytes": MAX_BODY,
        "mongo_url": infra.mongo_url,
        "mongo_database": f"intake_{uuid.uuid4().hex[:12]}",
        "auth_failure_limit": "1000/minute",
        **overrides,
    }
    return IntakeSettings.model_validate(values)


@pytest.fixture(scope="module")
async def intake(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    settings = intake_settings(infra)
    async with (
        running(build(settings, environ=ENVIRON)),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
    ):
        yield client


@pytest.fixture(scope="module")
async def received(infra: Infra) -> AsyncIterator[TopicReader]:
    async with TopicReader(infra.bootstrap, Topic.FEEDBACK_RECEIVED) as reader:
        yield reader


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def published(reader: TopicReader, feedback_id: str) -> Event[Any]:
    return await reader.wait_for(lambda event: event.subject == feedback_id, timeout=10)


async def assert_not_published(
    intake: httpx.AsyncClient, reader: TopicReader, feedback_id: str, customer: dict[str, str]
) -> None:
    """Nothing with ``feedback_id`` is on the topic: a later message of the same customer
    (same partition, so read after anything published before it) arrives without it."""
    sentinel = await intake.post(
        "/v1/feedback",
        json={"channel": "web", "customer": customer, "text": "sentinel"},
        headers=OPEN,
    )
    assert sentinel.status_code == 202, sentinel.text
    await published(reader, sentinel.json()["feedback_id"])
    assert not [r for r in reader.records if feedback_id.encode() in (r.value or b"")]


# --- every channel ----------------------------------------------------------------------

CHANNEL_POSTS = [
    ("email", "message/rfc822", "email_gbk_multipart.eml", "滚筒洗衣机"),
    ("email", "message/rfc822", "email_html_only.eml", "marked as delivered"),
    ("email", "message/rfc822", "email_reply_chain.eml", "third time I ask"),
    ("sms", "application/json", "sms_three_segments.json", "我就去12315投诉"),
    ("phone", "application/json", "phone_call.json", "冷藏室一直不制冷"),
    ("chat", "application/json", "chat_conversation.json", "never got it"),
    ("social", "application/json", "social_mention.json", "千万别买"),
    ("app-review", "application/json", "app_review.json", "charged twice"),
    ("web", "application/json", "web_form.json", "洗衣机漏水"),
]


@pytest.mark.parametrize(
    ("path", "content_type", "fixture", "says"),
    CHANNEL_POSTS,
    ids=[post[2] for post in CHANNEL_POSTS],
)
async def test_every_channel_endpoint_publishes_its_normalised_feedback(
    intake: httpx.AsyncClient,
    received: TopicReader,
    path: str,
    content_type: str,
    fixture: str,
    says: str,
) -> None:
    response = await intake.post(
        f"/v1/channels/{path}",
        content=fixture_bytes(fixture),
        headers={**OPEN, "content-type": content_type},
    )
    assert response.status_code == 202, response.text
    feedback = (await published(received, response.json()["feedback_id"])).data.feedback
    assert feedback.channel == Channel(path.replace("-", "_"))
    assert says in feedback.text
    assert feedback.received_at.utcoffset().total_seconds() == 0
    assert feedback.external_id


async def test_email_attachments_are_metadata_and_never_in_the_event(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    mail = fixture_bytes("email_gbk_multipart.eml")
    response = await intake.post(
        "/v1/channels/email", content=mail, headers={**OPEN, "content-type": "message/rfc822"}
    )
    feedback_id = response.json()["feedback_id"]
    await published(received, feedback_id)
    record = next(r for r in received.records if feedback_id.encode() in (r.value or b""))
    data = json.loads(record.value or b"{}")
    assert [a["name"] for a in data["feedback"]["attachments"]] == ["发票.pdf", "leak.jpg"]
    assert b"JVBERi0" not in (record.value or b"")  # the PDF's base64
    assert len(record.value or b"") < len(mail)


async def test_web_form_fields_and_uploaded_files_become_the_feedback(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    response = await intake.post(
        "/v1/channels/web",
        data={
            "submission_id": f"form-{uuid.uuid4().hex}",
            "email": "li.wei@example.com",
            "phone": "13800138000",
            "message": "The dryer burns my clothes.",
            "order_number": "20260304-1187",
        },
        files={"photo": ("burnt.jpg", b"\xff\xd8\xff" + b"0" * 2048, "image/jpeg")},
        headers=OPEN,
    )
    assert response.status_code == 202, response.text
    feedback = (await published(received, response.json()["feedback_id"])).data.feedback
    assert feedback.customer.phone == "+8613800138000"
    assert feedback.metadata["fields"] == {"order_number": "20260304-1187"}
    assert [(a.name, a.content_type, a.size) for a in feedback.attachments] == [
        ("burnt.jpg", "image/jpeg", 2051)
    ]


# --- never twice ------------------------------------------------------------------------


async def test_reposting_the_same_message_answers_the_same_id(intake: httpx.AsyncClient) -> None:
    body = {**COMPLAINT, "external_id": "mail-2"}
    first = (await intake.post("/v1/feedback", json=body, headers=OPEN)).json()["feedback_id"]
    second = (await intake.post("/v1/feedback", json=body, headers=OPEN)).json()["feedback_id"]
    keyed = await intake.post(
        "/v1/feedback", json=COMPLAINT, headers={**OPEN, "Idempotency-Key": "abc"}
    )
    keyed_again = await intake.post(
        "/v1/feedback", json=COMPLAINT, headers={**OPEN, "Idempotency-Key": "abc"}
    )
    assert first == second == derive_id("feedback", "email", "external", "mail-2")
    assert keyed.json()["feedback_id"] == keyed_again.json()["feedback_id"] != first


async def test_the_same_mail_posted_twice_is_one_feedback(intake: httpx.AsyncClient) -> None:
    headers = {**OPEN, "content-type": "message/rfc822"}
    mail = fixture_bytes("email_reply_chain.eml")
    ids = {
        (await intake.post("/v1/channels/email", content=mail, headers=headers)).json()[
            "feedback_id"
        ]
        for _ in range(2)
    }
    assert ids == {
        derive_id("feedback", "email", "external", "AM6PR03MB-reply-chain-0310@example.de")
    }


# --- bad input --------------------------------------------------------------------------


async def test_bad_input_gets_a_problem_naming_each_field(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/v1/feedback",
        json={"channel": "fax", "customer": {"tier": "gold"}, "text": ""},
        headers=OPEN,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    fields = {error["field"] for error in problem["errors"]}
    assert {"channel", "customer.tier", "text"} <= fields
    assert "channel" in problem["detail"]


async def test_channel_specific_errors_name_the_channel_field(intake: httpx.AsyncClient) -> None:
    sms = json.loads(fixture_bytes("sms_three_segments.json"))
    response = await intake.post("/v1/channels/sms", json={**sms, "sender": "ALIPAY"}, headers=OPEN)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "sender"
    no_sender = await intake.post(
        "/v1/channels/email",
        content=b"Subject: hello\r\n\r\nbody\r\n",
        headers={**OPEN, "content-type": "message/rfc822"},
    )
    assert no_sender.status_code == 422
    assert no_sender.json()["errors"] == [{"field": "From", "message": "the mail has no sender"}]


async def test_a_timestamp_without_offset_is_a_422_that_asks_for_one(
    intake: httpx.AsyncClient,
) -> None:
    naive = {**COMPLAINT, "received_at": "2026-03-01T17:00:00"}
    for path, body in (("/v1/feedback", naive), ("/v1/feedback/batch", {"items": [naive]})):
        response = await intake.post(path, json=body, headers=OPEN)
        assert response.status_code == 422, path
        (error,) = response.json()["errors"]
        assert error["field"].endswith("received_at"), path
        assert error["message"] == NAIVE_TIMESTAMP, path


async def test_malformed_json_is_a_422_not_a_500(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/v1/feedback",
        content=b"{not json",
        headers={**OPEN, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["title"] == "Invalid request"


# --- what the customer asked for, and their time zone -----------------------------------

# Every channel's input carries them; the times are sent in Shanghai time (+08:00, or
# without an offset where the channel reads such times in the integration's zone, which
# is Asia/Shanghai for the test-open integration) and published in UTC.
OUTCOMES = "refund, replacement, repair, apology, explanation, compensation, other"
EXPECTED_BY_UTC = (datetime.now(UTC) + timedelta(days=30)).replace(second=0, microsecond=0)
EXPECTED_BY_LOCAL = EXPECTED_BY_UTC.astimezone(ZoneInfo("Asia/Shanghai"))
EXPECTED_BY = EXPECTED_BY_LOCAL.isoformat()
EXPECTED_BY_NAIVE = EXPECTED_BY_LOCAL.replace(tzinfo=None).isoformat()
ZONE = "Asia/Shanghai"


def json_post(path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return path, {"json": body}


def mail_post(run: str, *headers: str) -> tuple[str, dict[str, Any]]:
    mail = "\r\n".join(
        [
            "From: Li Wei <li.wei@example.com>",
            "To: support@example.com",
            "Subject: refund",
            f"Message-ID: <{run}@mail.example.com>",
            *headers,
            "",
            "Where is my refund? I was charged twice.",
        ]
    )
    return "/v1/channels/email", {
        "content": mail.encode(),
        "headers": {"content-type": "message/rfc822"},
    }


def asking_post(channel: str, run: str) -> tuple[str, dict[str, Any]]:
    """A post of ``channel`` (web-form for form fields) asking for a refund by EXPECTED_BY,
    from a customer in Asia/Shanghai, each value in the channel's own place."""
    asked = {"expected_outcome": " Refund ", "expected_by": EXPECTED_BY}
    if channel == "generic":
        customer = {"email": f"{run}@example.com", "time_zone": ZONE}
        return json_post(
            "/v1/feedback", {**COMPLAINT, "external_id": run, "customer": customer, **asked}
        )
    if channel == "web-form":
        form = {
            "submission_id": run,
            "email": "li.wei@example.com",
            "message": "The dryer burns my clothes.",
            "time_zone": ZONE,
            "expected_outcome": "REFUND",
            "expected_by": EXPECTED_BY_NAIVE,
        }
        return "/v1/channels/web", {"data": form}
    if channel == "email":
        return mail_post(
            run,
            "X-Closeloop-Expected-Outcome: Refund",
            f"X-Closeloop-Expected-By: {EXPECTED_BY}",
            f"X-Closeloop-Customer-Time-Zone: {ZONE}",
        )
    fixture, message_id = CHANNEL_FIXTURES[channel]
    body = {**json.loads(fixture_bytes(fixture)), message_id: run, **asked}
    if "customer" in body:  # phone, chat
        body["customer"] = {**body["customer"], "time_zone": ZONE}
    elif "author" in body and isinstance(body["author"], dict):  # social
        body["author"] = {**body["author"], "time_zone": ZONE}
    else:  # web, sms, app-review: the customer's fields are the message's own
        body["time_zone"] = ZONE
    return json_post(f"/v1/channels/{channel}", body)


# The JSON channels: their fixture and the field of the channel's message id.
CHANNEL_FIXTURES = {
    "web": ("web_form.json", "submission_id"),
    "phone": ("phone_call.json", "call_id"),
    "chat": ("chat_conversation.json", "conversation_id"),
    "social": ("social_mention.json", "post_id"),
    "sms": ("sms_three_segments.json", "message_id"),
    "app-review": ("app_review.json", "review_id"),
}
ASKING = ["generic", "web", "web-form", "email", "phone", "chat", "social", "sms", "app-review"]


@pytest.mark.parametrize("channel", ASKING)
async def test_every_channel_carries_what_the_customer_asked_for_into_the_event(
    intake: httpx.AsyncClient, received: TopicReader, channel: str
) -> None:
    path, request = asking_post(channel, f"ask-{uuid.uuid4().hex}")
    headers = {**OPEN, **request.pop("headers", {})}
    response = await intake.post(path, headers=headers, **request)
    assert response.status_code == 202, response.text
    feedback_id = response.json()["feedback_id"]
    feedback = (await published(received, feedback_id)).data.feedback
    assert feedback.expected_outcome == "refund"
    assert feedback.expected_by == EXPECTED_BY_UTC
    assert feedback.customer.time_zone == ZONE
    # On the wire: the outcome's value and the time in UTC.
    record = next(r for r in received.records if feedback_id.encode() in (r.value or b""))
    wire = json.loads(record.value or b"{}")["feedback"]
    assert wire["expected_outcome"] == "refund"
    assert datetime.fromisoformat(wire["expected_by"]).utcoffset() == timedelta(0)
    assert wire["customer"]["time_zone"] == ZONE


async def test_a_batch_item_carries_them_and_a_bad_one_is_refused_naming_its_field(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    run = uuid.uuid4().hex[:8]
    sms = {
        "channel": "sms",
        "customer": {"phone": "13800138000", "time_zone": ZONE},
        "text": "退款还没到账",
        "expected_outcome": "REFUND",
        "expected_by": EXPECTED_BY,
    }
    items = [
        {**sms, "external_id": f"ask-{run}-0"},
        {**sms, "external_id": f"ask-{run}-1", "expected_outcome": "cash"},
        {
            **sms,
            "external_id": f"ask-{run}-2",
            "received_at": "2026-03-01T17:00:00+08:00",
            "expected_by": "2026-03-01T16:59:00+08:00",
        },
        {**sms, "external_id": f"ask-{run}-3", "customer": {"id": "C-1", "time_zone": "UTC+8"}},
    ]
    response = await intake.post("/v1/feedback/batch", json={"items": items}, headers=OPEN)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert [item["status"] for item in answer["items"]] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    errors = [item["errors"] for item in answer["items"][1:]]
    assert errors[0] == [
        {
            "field": "items.1.expected_outcome",
            "message": f"unknown expected outcome 'cash': one of {OUTCOMES}",
        }
    ]
    assert [error["field"] for error in errors[1]] == ["items.2.expected_by"]
    assert errors[1][0]["message"].startswith("is before the feedback was received")
    assert [error["field"] for error in errors[2]] == ["items.3.customer.time_zone"]
    assert "unknown time zone 'UTC+8'" in errors[2][0]["message"]
    feedback = (await published(received, answer["items"][0]["feedback_id"])).data.feedback
    assert (feedback.expected_outcome, feedback.expected_by) == ("refund", EXPECTED_BY_UTC)
    assert (feedback.customer.phone, feedback.customer.time_zone) == ("+8613800138000", ZONE)


def refused_post(case: str, run: str) -> tuple[str, dict[str, Any]]:
    """Posts whose expectation or time zone is wrong, in each channel's own place."""
    if case == "generic outcome":
        return json_post(
            "/v1/feedback", {**COMPLAINT, "external_id": run, "expected_outcome": "money back"}
        )
    if case == "generic time zone":
        customer = {"email": "li.wei@example.com", "time_zone": "Mars/Olympus"}
        return json_post("/v1/feedback", {**COMPLAINT, "external_id": run, "customer": customer})
    if case == "generic before received":
        early = {"external_id": run, "expected_by": "2026-03-01T16:59:59+08:00"}
        return json_post("/v1/feedback", {**COMPLAINT, **early})
    if case == "generic naive":
        return json_post(
            "/v1/feedback", {**COMPLAINT, "external_id": run, "expected_by": EXPECTED_BY_NAIVE}
        )
    if case == "web form time zone":
        form = {"submission_id": run, "email": "a@example.com", "message": "x", "time_zone": "CST"}
        return "/v1/channels/web", {"data": form}
    if case == "chat time zone":
        body = json.loads(fixture_bytes("chat_conversation.json"))
        body["conversation_id"] = run
        body["customer"] = {**body["customer"], "time_zone": "Mars/Olympus"}
        return json_post("/v1/channels/chat", body)
    if case == "sms before received":
        body = {**json.loads(fixture_bytes("sms_three_segments.json")), "message_id": run}
        return json_post("/v1/channels/sms", {**body, "expected_by": "2026-03-11T08:12:39"})
    if case == "app-review outcome":
        body = {**json.loads(fixture_bytes("app_review.json")), "review_id": run}
        return json_post("/v1/channels/app-review", {**body, "expected_outcome": "5 stars"})
    assert case == "email outcome"
    return mail_post(run, "X-Closeloop-Expected-Outcome: money back")


REFUSALS = [
    (
        "generic outcome",
        "expected_outcome",
        f"unknown expected outcome 'money back': one of {OUTCOMES}",
    ),
    ("generic time zone", "customer.time_zone", "unknown time zone 'Mars/Olympus'"),
    (
        "generic before received",
        "expected_by",
        "is before the feedback was received (2026-03-01T09:00:00Z)",
    ),
    ("generic naive", "expected_by", NAIVE_TIMESTAMP),
    ("web form time zone", "time_zone", "unknown time zone 'CST'"),
    ("chat time zone", "customer.time_zone", "unknown time zone 'Mars/Olympus'"),
    (
        "sms before received",
        "expected_by",
        "is before the feedback was received (2026-03-11T00:12:40Z)",
    ),
    (
        "app-review outcome",
        "expected_outcome",
        f"unknown expected outcome '5 stars': one of {OUTCOMES}",
    ),
    (
        "email outcome",
        "X-Closeloop-Expected-Outcome",
        f"unknown expected outcome 'money back': one of {OUTCOMES}",
    ),
]


@pytest.mark.parametrize(("case", "field", "says"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_a_wrong_expectation_or_time_zone_is_a_422_saying_what_is_wrong(
    intake: httpx.AsyncClient, case: str, field: str, says: str
) -> None:
    path, request = refused_post(case, f"refused-{uuid.uuid4().hex}")
    headers = {**OPEN, **request.pop("headers", {})}
    response = await intake.post(path, headers=headers, **request)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == field
    assert says in error["message"]
    assert f"{field}: " in response.json()["detail"]


async def test_a_refused_expectation_publishes_nothing(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    external_id = uuid.uuid4().hex
    customer = {"id": f"C-{external_id[:8]}"}
    body = {**COMPLAINT, "customer": customer, "external_id": external_id}
    response = await intake.post(
        "/v1/feedback", json={**body, "expected_outcome": "refunds"}, headers=OPEN
    )
    assert response.status_code == 422
    rejected_id = derive_id("feedback", "email", "external", external_id)
    await assert_not_published(intake, received, rejected_id, customer)


# --- authentication and signatures ------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "guessed"}], ids=["missing", "unknown"])
async def test_missing_or_unknown_api_key_is_401_and_nothing_is_published(
    intake: httpx.AsyncClient, received: TopicReader, headers: dict[str, str]
) -> None:
    external_id = uuid.uuid4().hex
    customer = {"id": f"C-{external_id[:8]}"}
    body = {"channel": "web", "external_id": external_id, "customer": customer, "text": "hi"}
    response = await intake.post("/v1/feedback", json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "X-API-Key"
    rejected_id = derive_id("feedback", "web", "external", external_id)
    await assert_not_published(intake, received, rejected_id, customer)


def signed_headers(body: bytes, secret: bytes, at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {
        "X-API-Key": "signed-key",
        "X-Closeloop-Timestamp": str(timestamp),
        "X-Closeloop-Signature": sign(secret, timestamp, body),
        "content-type": "message/rfc822",
    }


async def test_signed_requests_are_accepted_with_the_current_or_the_previous_secret(
    intake: httpx.AsyncClient,
) -> None:
    mail = fixture_bytes("email_html_only.eml")
    for secret in (b"new-secret", b"old-secret"):
        response = await intake.post(
            "/v1/channels/email", content=mail, headers=signed_headers(mail, secret)
        )
        assert response.status_code == 202, response.text


async def test_bad_stale_or_replayed_signatures_are_401_and_nothing_is_published(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    message_id = f"{uuid.uuid4().hex}@mail.example.org"
    mail = (
        f"From: Signed Sender <signed.{message_id[:8]}@example.org>\r\n"
        f"Message-ID: <{message_id}>\r\nSubject: refund\r\n\r\nWhere is my refund?\r\n"
    ).encode()
    now = int(time.time())
    cases = {
        "unsigned": {"X-API-Key": "signed-key", "content-type": "message/rfc822"},
        "wrong secret": signed_headers(mail, b"guessed-secret"),
        "stale": signed_headers(mail, b"new-secret", at=now - 3600),
        "other body": signed_headers(mail + b"tampered", b"new-secret"),
    }
    for name, headers in cases.items():
        response = await intake.post("/v1/channels/email", content=mail, headers=headers)
        assert response.status_code == 401, name
        assert response.json()["errors"][0]["field"].startswith("X-Closeloop-"), name

    good = signed_headers(mail, b"new-secret")
    replayed_mail = mail.replace(b"Where is", b"Still no")
    replay_headers = signed_headers(replayed_mail, b"new-secret")
    assert (await intake.post("/v1/channels/email", content=mail, headers=good)).status_code == 202
    first = await intake.post("/v1/channels/email", content=replayed_mail, headers=replay_headers)
    replay = await intake.post("/v1/channels/email", content=replayed_mail, headers=replay_headers)
    assert first.status_code == 202
    assert replay.status_code == 401
    assert "already received" in replay.json()["detail"]

    rejected = await intake.post(
        "/v1/channels/email",
        content=mail.replace(message_id.encode(), b"never-" + message_id.encode()),
        headers=cases["wrong secret"],
    )
    assert rejected.status_code == 401
    await assert_not_published(
        intake,
        received,
        derive_id("feedback", "email", "external", f"never-{message_id}"),
        {"email": f"signed.{message_id[:8]}@example.org"},
    )


async def test_a_channel_the_integration_may_not_post_is_403(intake: httpx.AsyncClient) -> None:
    response = await intake.post(
        "/v1/channels/chat",
        content=fixture_bytes("chat_conversation.json"),
        headers={"X-API-Key": "sms-key", "content-type": "application/json"},
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "channel"
    generic = await intake.post(
        "/v1/feedback", json={**COMPLAINT, "channel": "web"}, headers={"X-API-Key": "sms-key"}
    )
    assert generic.status_code == 403


# --- limits -----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_declared_or_streamed(
    intake: httpx.AsyncClient,
) -> None:
    big = {**COMPLAINT, "metadata": {"padding": "x" * MAX_BODY}}
    declared = await intake.post("/v1/feedback", json=big, headers=OPEN)
    assert declared.status_code == 413
    assert declared.json()["errors"][0]["field"] == "(body)"

    async def chunks() -> AsyncIterator[bytes]:
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    streamed = await intake.post(
        "/v1/feedback", content=chunks(), headers={**OPEN, "content-type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_a_content_type_the_endpoint_does_not_read_is_415(
    intake: httpx.AsyncClient,
) -> None:
    response = await intake.post(
        "/v1/channels/email",
        content=json.dumps(COMPLAINT),
        headers={**OPEN, "content-type": "application/json"},
    )
    assert response.status_code == 415
    assert response.json()["errors"] == [
        {"field": "Content-Type", "message": "must be message/rfc822"}
    ]


async def test_over_the_rate_limit_is_429_with_retry_after(intake: httpx.AsyncClient) -> None:
    headers = {"X-API-Key": "throttled-key"}
    statuses = [
        (await intake.post("/v1/feedback", json=COMPLAINT, headers=headers)).status_code
        for _ in range(2)
    ]
    limited = await intake.post("/v1/feedback", json=COMPLAINT, headers=headers)
    assert statuses == [202, 202]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["title"] == "Too many requests"


async def test_unsigned_junk_with_a_signing_integrations_key_does_not_spend_its_quota(
    intake: httpx.AsyncClient,
) -> None:
    """Someone holding only the key (not the signing secret) of an integration allowed 3
    posts a minute: their junk is refused as unauthenticated, not charged to the
    integration, so its next signed mails get through, until its own quota is spent."""
    junk = {"X-API-Key": "signed-throttled-key", "content-type": "message/rfc822"}
    for _ in range(5):
        refused = await intake.post("/v1/channels/email", content=b"junk", headers=junk)
        assert refused.status_code == 401, refused.text
    statuses = []
    for _ in range(4):
        mail = (
            f"From: someone@example.org\r\nMessage-ID: <{uuid.uuid4().hex}@example.org>\r\n"
            "Subject: refund\r\n\r\nWhere is my refund?\r\n"
        ).encode()
        headers = {
            **signed_headers(mail, b"signed-throttled-secret"),
            "X-API-Key": "signed-throttled-key",
        }
        statuses.append(
            (await intake.post("/v1/channels/email", content=mail, headers=headers)).status_code
        )
    assert statuses == [202, 202, 202, 429]


async def test_failed_keys_and_signatures_from_one_address_get_429_then_that_address_only(
    infra: Infra,
) -> None:
    """After 4 failed attempts in a minute an address is refused, even with a good key;
    behind a trusted proxy the address is the one the proxy saw."""
    settings = intake_settings(
        infra, auth_failure_limit="4/minute", trusted_proxies=["127.0.0.1/32", "::1/128"]
    )
    stranger = {"X-Forwarded-For": "198.51.100.7"}
    mail = fixture_bytes("email_html_only.eml")
    async with (
        running(build(settings, environ=ENVIRON)),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
    ):
        attempts = [
            await client.post("/v1/feedback", json=COMPLAINT, headers=stranger),
            await client.post(
                "/v1/feedback", json=COMPLAINT, headers={**stranger, **OPEN, "X-API-Key": "guess"}
            ),
            await client.post(
                "/v1/channels/email",
                content=mail,
                headers={**stranger, **signed_headers(mail, b"guessed-secret")},
            ),
            await client.post(
                "/v1/channels/email",
                content=mail,
                headers={**stranger, "X-API-Key": "signed-key", "content-type": "message/rfc822"},
            ),
        ]
        assert [a.status_code for a in attempts] == [401, 401, 401, 401]
        blocked = await client.post("/v1/feedback", json=COMPLAINT, headers={**stranger, **OPEN})
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        assert blocked.headers["content-type"] == "application/problem+json"
        assert "failed" in blocked.json()["detail"]
        neighbour = {"X-Forwarded-For": "198.51.100.8", **OPEN}
        assert (
            await client.post("/v1/feedback", json=COMPLAINT, headers=neighbour)
        ).status_code == 202


async def test_a_signed_request_replayed_after_a_restart_is_refused(infra: Infra) -> None:
    """Seen signatures are kept in the service's MongoDB: a new intake (after a restart,
    or another copy) on the same database still knows them."""
    settings = intake_settings(infra)
    mail = (
        f"From: someone@example.org\r\nMessage-ID: <{uuid.uuid4().hex}@example.org>\r\n"
        "Subject: refund\r\n\r\nWhere is my refund?\r\n"
    ).encode()
    headers = signed_headers(mail, b"new-secret")
    url = f"http://127.0.0.1:{settings.http_port}/v1/channels/email"
    async with running(build(settings, environ=ENVIRON)), httpx.AsyncClient() as client:
        first = await client.post(url, content=mail, headers=headers)
        assert first.status_code == 202, first.text
    async with running(build(settings, environ=ENVIRON)), httpx.AsyncClient() as client:
        replay = await client.post(url, content=mail, headers=headers)
    assert replay.status_code == 401, replay.text
    assert "already received" in replay.json()["detail"]


# --- batch ------------------------------------------------------------------------------


async def test_a_batch_answers_per_item_and_publishes_only_the_accepted_ones(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    run = uuid.uuid4().hex[:8]
    items: list[Any] = [
        {**COMPLAINT, "external_id": f"b-{run}-0"},
        {**COMPLAINT, "external_id": f"b-{run}-1", "channel": "fax"},
        {
            "channel": "sms",
            "customer": {"phone": "13800138000"},
            "text": "退款",
            "external_id": f"b-{run}-2",
        },
        "not an object",
        {
            "channel": "sms",
            "customer": {"phone": "not a number"},
            "text": "x",
            "external_id": f"b-{run}-4",
        },
    ]
    response = await intake.post("/v1/feedback/batch", json={"items": items}, headers=OPEN)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 3)
    statuses = [(item["index"], item["status"]) for item in answer["items"]]
    assert statuses == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "accepted"),
        (3, "rejected"),
        (4, "rejected"),
    ]
    assert answer["items"][1]["errors"][0]["field"] == "items.1.channel"
    assert answer["items"][3]["errors"][0]["field"] == "items.3"
    assert answer["items"][4]["errors"][0]["field"] == "items.4.customer.phone"

    sms = (await published(received, answer["items"][2]["feedback_id"])).data.feedback
    assert sms.customer.phone == "+8613800138000"
    await published(received, answer["items"][0]["feedback_id"])
    for index in (1, 4):
        rejected = derive_id("feedback", items[index]["channel"], "external", f"b-{run}-{index}")
        assert not [r for r in received.records if rejected.encode() in (r.value or b"")]


def accepted_by_channel(metrics: str) -> dict[str, float]:
    return {
        sample.labels["channel"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "closeloop_intake_feedback_accepted"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def test_a_batch_is_logged_once_with_its_ids_and_counted_per_channel(
    intake: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    before = accepted_by_channel((await intake.get("/metrics")).text)
    run = uuid.uuid4().hex[:8]
    sms = {"channel": "sms", "customer": {"phone": "+8613912345678"}, "text": "退款还没到账"}
    items = [
        {**sms, "external_id": f"log-{run}-0"},
        {**sms, "external_id": f"log-{run}-1"},
        {**COMPLAINT, "channel": "web", "external_id": f"log-{run}-2"},
    ]
    response = await intake.post("/v1/feedback/batch", json={"items": items}, headers=OPEN)
    assert response.status_code == 202, response.text
    answer = BatchResult.model_validate(response.json())  # the documented shape

    lines = [r for r in caplog.records if r.getMessage() == "feedback batch accepted"]
    assert len(lines) == 1
    line = vars(lines[0])
    assert line["feedback_ids"] == [item.feedback_id for item in answer.items]
    assert line["channels"] == {"sms": 2, "web": 1}
    logged = json.dumps(line, default=str, ensure_ascii=False)
    for personal in ("+8613912345678", "13912345678", "li.wei@example.com", "退款还没到账"):
        assert personal not in logged
    assert not [r for r in caplog.records if r.getMessage() == "feedback accepted"]

    after = accepted_by_channel((await intake.get("/metrics")).text)
    assert after["sms"] - before.get("sms", 0) == 2
    assert after["web"] - before.get("web", 0) == 1


async def test_the_same_message_twice_in_a_batch_is_one_feedback_published_once(
    intake: httpx.AsyncClient, received: TopicReader
) -> None:
    customer = {"id": f"C-{uuid.uuid4().hex[:8]}"}
    item = {**COMPLAINT, "customer": customer, "external_id": f"twice-{uuid.uuid4().hex[:8]}"}
    response = await intake.post("/v1/feedback/batch", json={"items": [item, item]}, headers=OPEN)
    assert response.status_code == 202, response.text
    first, second = (entry["feedback_id"] for entry in response.json()["items"])
    assert first == second
    # A later post of the same customer (same partition) arrives after anything before it.
    later = await intake.post(
        "/v1/feedback", json={"channel": "web", "customer": customer, "text": "later"}, headers=OPEN
    )
    await published(received, later.json()["feedback_id"])
    subject = ("ce_subject", first.encode())
    assert len([r for r in received.records if subject in (r.headers or ())]) == 1


async def test_a_batch_without_any_acceptable_item_is_422_naming_each(
    intake: httpx.AsyncClient,
) -> None:
    response = await intake.post(
        "/v1/feedback/batch", json={"items": [{"text": ""}, 42]}, headers=OPEN
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"items.0.channel", "items.0.text", "items.1"} <= fields


async def test_a_batch_over_500_items_is_413(intake: httpx.AsyncClient) -> None:
    items = [{**COMPLAINT, "text": "x"}] * 501
    response = await intake.post("/v1/feedback/batch", json={"items": items}, headers=OPEN)
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "items"


async def test_a_batch_of_many_thousand_items_is_413_without_reading_past_item_501(
    intake: httpx.AsyncClient,
) -> None:
    """180,000 items, 9 MB: refused once item 501 is read; what follows it is never
    parsed (here it is not JSON at all, which a full parse would answer with 422)."""
    head = json.dumps({"items": [{**COMPLAINT, "text": "x"}] * 501})[:-2]
    tail = ", {" + "x" * 9_000_000
    response = await intake.post(
        "/v1/feedback/batch",
        content=(head + tail).encode(),
        headers={**OPEN, "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["errors"] == [
        {"field": "items", "message": "a batch holds at most 500 items"}
    ]


# --- documentation, operations, logs ---------------------------------------------------


async def test_openapi_documents_every_channel_with_an_example(intake: httpx.AsyncClient) -> None:
    document = (await intake.get("/openapi.json")).json()
    for path in ("web", "email", "phone", "chat", "social", "sms", "app-review"):
        operation = document["paths"][f"/v1/channels/{path}"]["post"]
        content = operation["requestBody"]["content"]
        assert any("example" in media or "examples" in media for media in content.values()), path
        assert {"401", "413", "415", "422", "429", "503"} <= set(operation["responses"])
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


async def test_health_readiness_and_metrics(intake: httpx.AsyncClient) -> None:
    assert (await intake.get("/healthz")).json()["status"] == "ok"
    ready = await intake.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["kafka"] is True
    await intake.post("/v1/feedback", json=COMPLAINT, headers=OPEN)
    await intake.post("/v1/channels/sms", json={}, headers=OPEN)
    metrics = (await intake.get("/metrics")).text
    assert 'closeloop_intake_feedback_accepted_total{channel="email"}' in metrics
    assert 'closeloop_intake_rejected_total{channel="sms",reason="invalid"}' in metrics
    assert 'closeloop_intake_publish_duration_seconds_count{endpoint="single"}' in metrics
    assert (
        'closeloop_http_requests_total{method="POST",route="/v1/feedback",status="202"}' in metrics
    )


async def test_logs_carry_ids_but_no_personal_data(
    intake: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    phone_call = fixture_bytes("phone_call.json")
    accepted = await intake.post(
        "/v1/channels/phone",
        content=phone_call,
        headers={**OPEN, "content-type": "application/json"},
    )
    refused = await intake.post(
        "/v1/feedback",
        json={**COMPLAINT, "customer": {"email": "li.wei@example.com", "phone": "12"}},
        headers=OPEN,
    )
    assert (accepted.status_code, refused.status_code) == (202, 422)
    logged = "\n".join(
        f"{record.getMessage()} {json.dumps(vars(record), default=str, ensure_ascii=False)}"
        for record in caplog.records
        if record.name.startswith("services.intake")
    )
    assert accepted.json()["feedback_id"] in logged
    assert "customer.phone" in logged  # the field at fault, not its value
    for personal in ("li.wei@example.com", "13910987654", "139-1098-7654", "冷藏室", "C-2087"):
        assert personal not in logged


# --- the broker -------------------------------------------------------------------------


async def test_broker_down_answers_503_with_retry_after_and_is_not_ready(infra: Infra) -> None:
    dead_port = free_port()
    settings = intake_settings(infra, f"127.0.0.1:{dead_port}")
    async with (
        running(build(settings, environ=ENVIRON), wait_ready=False),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
    ):
        response = await client.post("/v1/feedback", json=COMPLAINT, headers=OPEN)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert "nothing was accepted" in response.json()["detail"]
        batch = await client.post("/v1/feedback/batch", json={"items": [COMPLAINT]}, headers=OPEN)
        assert batch.status_code == 503
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"] is False


async def test_broker_lost_after_start_answers_503_not_202(infra: Infra) -> None:
    broker = devstack.start_broker(free_port())
    assert broker.port is not None
    bootstrap = f"127.0.0.1:{broker.port}"
    try:
        await devstack.create_topics(bootstrap, 1)
        settings = intake_settings(infra, bootstrap)
        async with (
            running(build(settings, environ=ENVIRON)),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client,
        ):
            ok = await client.post("/v1/feedback", json=COMPLAINT, headers=OPEN)
            assert ok.status_code == 202
            broker.kill()
            response = await client.post("/v1/feedback", json=COMPLAINT, headers=OPEN, timeout=30)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "7"
    finally:
        broker.stop()
