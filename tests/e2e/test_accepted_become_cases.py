"""202 means a case: generated posts for the generic endpoint, the batch and every channel
adapter, ordinary and nasty (integers beyond 64 bits, NUL, ``$`` and ``.`` in keys,
zero-width text, odd unicode, far-future dates, deep nesting), go through the four
services on the real broker and database.

Every 202 must end as exactly one case, at the router and at followup; everything else
must be a 4xx problem+json, never a 5xx; nothing accepted may end in a dead-letter topic.
Posting is checked example by example (so a 5xx shrinks to its smallest body); the cases
are awaited once for everything accepted, which keeps the run to seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from shared.contracts import Channel, Classification, FeedbackClassified, Topic, dlq_topic
from shared.db import Document
from shared.envelope import new_event, to_record
from shared.tools import devstack
from shared.tools.loadgen import SITUATIONS
from tests.conftest import Infra
from tests.support import TopicReader, a_classification, a_feedback, eventually, produce_raw

INTAKE_AUTH = {"X-API-Key": devstack.INTAKE_DEV_API_KEY}
DLQ_TOPICS = [dlq_topic(topic.value) for topic in Topic]
# Feedback ids and message ids of this run only: the broker is shared by the session.
RUN = uuid.uuid4().hex[:8]
# The examples per endpoint: about 120 posts (some batches hold several items) in all.
EXAMPLES = {
    "generic": 24,
    "batch": 10,
    "web-json": 10,
    "web-form": 8,
    "web-multipart": 5,
    "email": 10,
    "phone": 8,
    "chat": 8,
    "social": 8,
    "sms": 8,
    "app-review": 8,
}


@dataclass
class Pipeline:
    infra: Infra
    database: str
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@pytest.fixture(scope="module")
def pipeline(infra: Infra) -> Iterator[Pipeline]:
    database = f"e2e_cases_{uuid.uuid4().hex[:8]}"
    ports = {name: devstack.free_port() for name in devstack.SERVICES}
    processes: list[devstack.Process] = []
    try:
        for name in devstack.SERVICES:
            env = devstack.service_env(
                name,
                http_port=ports[name],
                kafka_port=infra.kafka_port,
                mongo_port=infra.mongo_port,
                database=database,
                extra={f"CLOSELOOP_{name.upper()}_KAFKA_CONSUMER_GROUP": f"cases-{name}-{RUN}"},
            )
            log = infra.log_dir / f"cases-{name}.log"
            processes.append(devstack.start_service(name, env, ports[name], log))
        yield Pipeline(infra, database, ports)
    finally:
        devstack.stop_together(processes)


async def wait_ready(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(timeout=5) as http:

        async def all_ready() -> bool:
            for service in devstack.SERVICES:
                if (await http.get(f"{pipeline.url(service)}/readyz")).status_code != 200:
                    return False
            return True

        await eventually(all_ready, timeout=30)


# --- values ------------------------------------------------------------------------------

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u180e", "\u00ad", "\u034f"]
COMPLAINTS = [line for cause in SITUATIONS.values() for lines in cause.values() for line in lines]
# Odd but acceptable: kept as sent.
ODD_TEXT = [
    "refund\x00please",
    "\x00 NUL first",
    "\u202eevig\u202c my money back",
    "e\u0301\u0301\u0301",
    "\U0001f525\U0001f4a9",
    "\ufffe\uffff!",
    "\U0010fffd\ue000",
    "$where",
    "a.b.c",
    "𠀀𪚥 退款",
    "\u200b退款",
]
# Shows nothing: refused as a text, dropped as a subject.
INVISIBLE_TEXT = ["".join(ZERO_WIDTH), "\u200b \u200c\n\u2060", "\x00", "\x00\x00 \x00", " \t\r\n "]
# Not valid JSON once escaped (\ud800): the body is refused.
SURROGATES = ["\ud800", "\udfff tail"]
ODD_KEYS = ["a.b", ".", "", "\u200b", "订单号", "us$", "k" * 200, "\U0001f525"]
REFUSED_KEYS = ["\x00", "a\x00b", "$where", "$ref", "$id", "$", "k" * 201]
BIG_INTS = [
    4200001234202603111234567890,
    2**63,
    2**63 - 1,
    -(2**63),
    -(2**63) - 1,
    10**40,
    -(10**25),
]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


complaints = st.sampled_from(COMPLAINTS)
# Any Unicode but lone surrogates, which only the text of a post may carry.
unicode = st.characters(codec="utf-8")
texts = st.one_of(
    complaints,
    st.builds(lambda a, b: a + b, complaints, st.sampled_from(ODD_TEXT + INVISIBLE_TEXT)),
    st.sampled_from(ODD_TEXT + INVISIBLE_TEXT + SURROGATES),
    st.text(unicode, max_size=40),
)
short_texts = st.one_of(st.text(unicode, max_size=12), st.sampled_from(ODD_TEXT + INVISIBLE_TEXT))
keys = st.one_of(
    st.text(unicode, max_size=8),
    st.text(unicode, max_size=8),
    st.sampled_from(ODD_KEYS),
    st.sampled_from(REFUSED_KEYS),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from(BIG_INTS),
    st.integers(min_value=2**63, max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    short_texts,
    short_texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
metadata = st.one_of(
    st.dictionaries(keys, json_values, max_size=4),
    st.dictionaries(keys, json_values, max_size=4),
    st.sampled_from(
        [
            {"wechat_transaction_id": 4200001234202603111234567890},
            {"a\x00b": "x"},
            {"order": {"$ref": "orders", "$id": 1187}},
            {"price.usd": 1.5, "note": "a\x00b", "us$": [2**64, -(2**64)]},
            {"deep": nested(30)},
            {"deep": nested(40)},
            {"deep": nested(120)},
            {"ratio": float("nan"), "reach": float("inf")},
            {"k" * 5000: 1},
        ]
    ),
)


def timestamps(now: datetime) -> st.SearchStrategy[str]:
    """Mostly plausible times; now and then far in the future, just ahead, or naive."""
    recent = st.integers(min_value=0, max_value=30 * 86_400).map(
        lambda seconds: (now - timedelta(seconds=seconds)).isoformat()
    )
    return st.one_of(
        recent,
        recent,
        recent,
        st.sampled_from(
            [
                "2999-03-11T09:30:00+08:00",
                "9999-12-31T23:59:59-10:00",
                (now + timedelta(hours=2)).isoformat(),
                (now + timedelta(days=3)).isoformat(),
                "0001-01-01T00:00:00Z",
                "2026-03-11T09:30:00",
            ]
        ),
    )


NOW = datetime.now(UTC)
PHONES = ["+8613800138000", "13800138000", "+1 415 555 2671", "021 6123 4567"] * 2 + ["12", "abc"]
TIERS = ["standard", "premium", "vip"]


def ids(prefix: str) -> st.SearchStrategy[str]:
    """A message id of this run: the generated part may be as odd as any other value."""
    return short_texts.map(lambda tail: f"{prefix}-{RUN}-{tail}")


customers = st.fixed_dictionaries(
    {"id": short_texts.map(lambda tail: f"C-{tail}")},
    optional={
        "email": st.sampled_from(["li.wei@example.com", "a\x00@b.c", "not-an-email"]),
        "phone": st.sampled_from(PHONES),
        "handle": short_texts,
        "name": short_texts,
        "tier": st.sampled_from(TIERS),
    },
)
attachments = st.lists(
    st.fixed_dictionaries(
        {
            "name": short_texts,
            "size": st.one_of(st.integers(min_value=0, max_value=10**7), st.sampled_from(BIG_INTS)),
        },
        optional={"content_type": st.sampled_from(["application/pdf", "image/jpeg", "\x00"])},
    ),
    max_size=2,
)
generic = st.fixed_dictionaries(
    {
        "channel": st.sampled_from([channel.value for channel in Channel]),
        "customer": customers,
        "text": texts,
    },
    optional={
        "external_id": ids("generic"),
        "subject": short_texts,
        "received_at": timestamps(NOW),
        "language": st.sampled_from(["zh", "en", "fr"]),
        "attachments": attachments,
        "metadata": metadata,
    },
)
batches = st.fixed_dictionaries({"items": st.lists(generic, min_size=1, max_size=4)})
web_forms = st.fixed_dictionaries(
    {"message": texts, "customer_id": short_texts.map(lambda tail: f"W-{tail}")},
    optional={
        "submission_id": ids("web"),
        "email": st.just("li.wei@example.com"),
        "phone": st.sampled_from(PHONES),
        "subject": short_texts,
        "submitted_at": timestamps(NOW),
        "form": short_texts,
        "fields": st.dictionaries(keys, short_texts, max_size=4),
    },
)


uploads = st.lists(short_texts, min_size=1, max_size=2)


def sendable(text: str) -> str:
    """Form fields and mail are bytes on the wire: lone surrogates cannot be sent."""
    return text.encode("utf-8", "replace").decode("utf-8")


def form_pairs(form: dict[str, Any]) -> list[tuple[str, str]]:
    """A web form as form fields: the documented names, and every other field by its own
    (possibly odd) name."""
    pairs = [(name, str(value)) for name, value in form.items() if name != "fields"]
    pairs += list(form.get("fields", {}).items())
    return [(sendable(name), sendable(value)) for name, value in pairs]


def chat_body(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    message = st.fixed_dictionaries(
        {
            "sender": st.sampled_from(["customer", "customer", "agent", "bot"]),
            "text": texts,
            "sent_at": timestamps(now),
        }
    )
    return st.fixed_dictionaries(
        {
            "conversation_id": ids("chat"),
            "customer": st.fixed_dictionaries({"handle": short_texts.map(lambda t: f"h-{t}")}),
            "messages": st.lists(message, min_size=1, max_size=4),
        },
        optional={"platform": short_texts, "language": st.sampled_from(["zh-CN", "en", "x"])},
    )


def phone_body(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    turn = st.fixed_dictionaries(
        {"speaker": st.sampled_from(["customer", "agent", "ivr"]), "text": texts},
        optional={"start_s": st.floats(min_value=0, max_value=1e6)},
    )
    return st.fixed_dictionaries(
        {
            "call_id": ids("call"),
            "caller_number": st.sampled_from([*PHONES, ""]),
            "started_at": timestamps(now),
            "duration_s": st.floats(min_value=0, max_value=86_400),
            "transcript": st.lists(turn, min_size=1, max_size=4),
        },
        optional={
            "customer": st.fixed_dictionaries(
                {}, optional={"id": short_texts, "name": short_texts}
            ),
            "agent": short_texts,
            "queue": short_texts,
        },
    )


def social_body(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "platform": st.sampled_from(["weibo", "douyin", "x"]),
            "post_id": ids("post"),
            "author": st.fixed_dictionaries(
                {"handle": short_texts.map(lambda t: f"@{t}")},
                optional={
                    "followers": st.one_of(
                        st.integers(min_value=0, max_value=10**7), st.sampled_from(BIG_INTS)
                    ),
                    "name": short_texts,
                },
            ),
            "text": texts,
            "created_at": timestamps(now),
        },
        optional={
            "kind": st.sampled_from(["post", "mention", "direct_message"]),
            "url": short_texts,
            "reply_to": st.fixed_dictionaries({"post_id": short_texts.map(lambda t: f"p{t}")}),
        },
    )


def sms_body(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    segment = st.fixed_dictionaries(
        {"part": st.integers(1, 3), "total": st.integers(1, 3), "text": texts}
    )
    whole = st.fixed_dictionaries({"text": texts})
    parts = st.fixed_dictionaries({"segments": st.lists(segment, min_size=1, max_size=3)})
    return st.builds(
        lambda common, content: {**common, **content},
        st.fixed_dictionaries(
            {"message_id": ids("sms"), "sender": st.sampled_from(PHONES)},
            optional={"received_at": timestamps(now), "recipient": short_texts},
        ),
        st.one_of(whole, parts),
    )


def app_review_body(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "store": st.sampled_from(["app_store", "google_play"]),
            "review_id": ids("review"),
            "rating": st.integers(1, 5),
            "author": short_texts.map(lambda t: f"r-{t}"),
            "created_at": timestamps(now),
            "body": texts,
        },
        optional={
            "title": short_texts,
            "app_version": short_texts,
            "country": st.sampled_from(["US", "CN", "\x00"]),
        },
    )


# Header fields cannot hold line breaks or other controls.
CONTROLS = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
header_text = st.text(
    st.characters(codec="utf-8", exclude_characters=CONTROLS) | st.sampled_from(ZERO_WIDTH),
    max_size=20,
)


@st.composite
def raw_mails(draw: st.DrawFn) -> bytes:
    mail = EmailMessage()
    mail["From"] = f'"{draw(header_text).replace(chr(34), "")}" <li.wei@example.com>'
    mail["To"] = "support@example.com"
    mail["Subject"] = draw(header_text)
    mail["Message-ID"] = f"<mail-{RUN}-{uuid.UUID(int=draw(st.integers(0, 2**64)))}@example.com>"
    sent = draw(st.one_of(st.just(NOW), st.sampled_from([datetime(2999, 1, 1, tzinfo=UTC)])))
    mail["Date"] = format_datetime(sent - timedelta(seconds=draw(st.integers(0, 86_400))))
    mail.set_content(sendable(draw(texts)).replace("\r", ""))
    for name in draw(st.lists(header_text, max_size=2)):
        mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=name)
    if mail.is_multipart():
        mail.set_boundary(f"closeloop-{RUN}")  # the package's own boundary is random
    return mail.as_bytes()


# --- posting ---------------------------------------------------------------------------


@dataclass
class Posted:
    """What every example posted: accepted feedback ids with the body that gave each."""

    accepted: dict[str, str] = field(default_factory=dict)
    refused: int = 0
    posts: int = 0


def check_answer(response: httpx.Response, sent: str) -> None:
    assert response.status_code < 500, f"{response.status_code} for {sent}: {response.text}"
    if response.status_code != 202:
        assert 400 <= response.status_code < 500, f"{response.status_code} for {sent}"
        assert response.headers["content-type"] == "application/problem+json", sent
        problem = response.json()
        assert problem["status"] == response.status_code and problem["errors"], sent


def record(posted: Posted, response: httpx.Response, sent: str) -> None:
    posted.posts += 1
    check_answer(response, sent)
    if response.status_code != 202:
        posted.refused += 1
        return
    answer = response.json()
    if "items" in answer:
        for item in answer["items"]:
            if item["status"] == "accepted":
                posted.accepted[item["feedback_id"]] = f"{sent} (item {item['index']})"
    else:
        posted.accepted[answer["feedback_id"]] = sent


def as_json(body: Any) -> bytes:
    # ASCII escapes let lone surrogates travel as JSON does them (\ud800), NaN as NaN.
    return json.dumps(body, ensure_ascii=True).encode()


POLICY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def post_everything(intake: str, posted: Posted) -> None:
    """Every generated post, one endpoint after the other; each answer checked at once."""
    http = httpx.Client(base_url=intake, headers=INTAKE_AUTH, timeout=15)

    def post_json(path: str, body: Any) -> None:
        data = as_json(body)
        headers = {"content-type": "application/json"}
        response = http.post(path, content=data, headers=headers)
        record(posted, response, f"POST {path} {data!r}")

    def run(name: str, strategy: st.SearchStrategy[Any], post: Callable[[Any], None]) -> Any:
        return settings(POLICY, max_examples=EXAMPLES[name])(given(strategy)(post))

    @example({"channel": "web", "customer": {"id": "C-1"}, "text": "退款还没到账"})
    @example(
        {
            "channel": "web",
            "customer": {"id": "C-tester"},
            "text": "Refund please",
            "metadata": {"wechat_transaction_id": 4200001234202603111234567890},
        }
    )
    @example({"channel": "sms", "customer": {"id": "C-2"}, "text": "x", "metadata": {"\x00": 1}})
    @example({"channel": "web", "customer": {"id": "C-3"}, "text": "\u200b\u200c\u200d\ufeff"})
    @example(
        {
            "channel": "web",
            "customer": {"id": "C-4"},
            "text": "from the future",
            "received_at": "2999-01-01T00:00:00Z",
        }
    )
    def generic_post(body: dict[str, Any]) -> None:
        post_json("/v1/feedback", body)

    def web_form_post(form: dict[str, Any]) -> None:
        pairs = form_pairs(form)
        response = http.post("/v1/channels/web", data=dict(pairs))
        record(posted, response, f"POST /v1/channels/web form {pairs!r}")

    def web_multipart_post(upload: tuple[dict[str, Any], list[str]]) -> None:
        form, names = upload
        files = [("photo", (sendable(name), b"\xff\xd8\xff", "image/jpeg")) for name in names]
        pairs = form_pairs(form)
        response = http.post("/v1/channels/web", data=dict(pairs), files=files)
        record(posted, response, f"POST /v1/channels/web multipart {pairs!r}")

    def email_post(mail: bytes) -> None:
        response = http.post(
            "/v1/channels/email", content=mail, headers={"content-type": "message/rfc822"}
        )
        record(posted, response, f"POST /v1/channels/email {mail!r}")

    def channel(path: str) -> Callable[[dict[str, Any]], None]:
        return lambda body: post_json(f"/v1/channels/{path}", body)

    web_with_odd_names = example(
        {"message": "Dryer burns clothes", "email": "li.wei@example.com", "fields": {"a\x00b": "1"}}
    )
    try:
        run("generic", generic, generic_post)()
        run("batch", batches, lambda body: post_json("/v1/feedback/batch", body))()
        run("web-json", web_forms, web_with_odd_names(channel("web")))()
        run("web-form", web_forms, web_with_odd_names(web_form_post))()
        run("web-multipart", st.tuples(web_forms, uploads), web_multipart_post)()
        run("email", raw_mails(), email_post)()
        run("phone", phone_body(NOW), channel("phone"))()
        run("chat", chat_body(NOW), channel("chat"))()
        run("social", social_body(NOW), channel("social"))()
        run("sms", sms_body(NOW), channel("sms"))()
        run("app-review", app_review_body(NOW), channel("app-review"))()
    finally:
        http.close()


# --- waiting for the cases -------------------------------------------------------------


async def cases_by_feedback(
    db: Any, collection: str, feedback_ids: list[str], linked_field: str
) -> dict[str, set[str]]:
    """The cases each feedback opened or was linked to."""
    found: dict[str, set[str]] = {}
    query = {"$or": [{"feedback_id": {"$in": feedback_ids}}, {linked_field: {"$in": feedback_ids}}]}
    async for case in db[collection].find(query, {"feedback_id": 1, "linked_feedback": 1}):
        linked = [
            entry["feedback_id"] if isinstance(entry, dict) else entry
            for entry in case.get("linked_feedback", [])
        ]
        for feedback_id in {case["feedback_id"], *linked}:
            found.setdefault(feedback_id, set()).add(case["_id"])
    return found


def dead_letters_of(reader: TopicReader, marks: set[str]) -> list[str]:
    """Dead letters that carry one of these ids, with their reason."""
    out = []
    for record in reader.records:
        value = record.value or b""
        if any(mark.encode() in value for mark in marks):
            reason = dict(record.headers or ()).get("dlq_reason", b"?").decode(errors="replace")
            out.append(f"{record.topic}: {reason}: {value[:300]!r}")
    return out


async def wait_for_cases(
    db: Any, reader: TopicReader, accepted: dict[str, str], timeout: float
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The router's and followup's cases of every accepted feedback, as soon as all are
    there; fails early, with the bodies, once one of them is dead-lettered."""
    feedback_ids = list(accepted)
    deadline = time.monotonic() + timeout
    while True:
        routed = await cases_by_feedback(db, "router_routings", feedback_ids, "linked_feedback")
        followed = await cases_by_feedback(
            db, "followup_cases", feedback_ids, "linked_feedback.feedback_id"
        )
        missing = [fid for fid in feedback_ids if fid not in routed or fid not in followed]
        if not missing:
            return routed, followed
        await reader.collect(0.3)
        dead = dead_letters_of(reader, set(missing))
        assert not dead, "accepted feedback was dead-lettered:\n" + "\n".join(dead)
        assert time.monotonic() < deadline, f"{len(missing)} accepted posts have no case: " + (
            "\n".join(accepted[fid] for fid in missing[:10])
        )


async def test_every_accepted_post_becomes_exactly_one_case(
    pipeline: Pipeline, mongo_client: AsyncMongoClient[Document]
) -> None:
    await wait_ready(pipeline)
    posted = Posted()
    started = time.monotonic()
    await asyncio.to_thread(post_everything, pipeline.url("intake"), posted)
    assert posted.accepted and posted.refused, "the generators cover both outcomes"
    # Read from the start of the dead-letter topics, so nothing is missed by opening it
    # only now (while examples are generated, nothing else may draw on `random`).
    async with TopicReader(pipeline.infra.bootstrap, *DLQ_TOPICS) as reader:
        db = mongo_client[pipeline.database]
        routed, followed = await wait_for_cases(db, reader, posted.accepted, timeout=120)
        for feedback_id, body in posted.accepted.items():
            assert len(routed[feedback_id]) == 1, f"{routed[feedback_id]} for {body}"
            assert followed[feedback_id] == routed[feedback_id], body
        case_ids = {case for cases in routed.values() for case in cases}
        await reader.collect(1.0)
        dead = dead_letters_of(reader, set(posted.accepted) | case_ids)
        assert not dead, "\n".join(dead)
    print(
        f"{posted.posts} posts, {len(posted.accepted)} feedback accepted, {posted.refused} "
        f"refused, {len(case_ids)} cases, in {time.monotonic() - started:.1f} s"
    )


async def test_a_replayed_event_with_unstorable_metadata_opens_its_case(
    pipeline: Pipeline, mongo_client: AsyncMongoClient[Document]
) -> None:
    """Events written before intake refused or normalised such values (and dead-lettered
    since) are stored when replayed: the contracts make any feedback storable."""
    await wait_ready(pipeline)
    feedback = a_feedback("My parcel never arrived, refund me", at=NOW)
    classification: Classification = a_classification()
    record_ = to_record(
        new_event(
            FeedbackClassified(feedback=feedback, classification=classification),
            source="/closeloop/classifier",
            cause=feedback.feedback_id,
        )
    )
    data = json.loads(record_.value)
    data["feedback"]["metadata"] = {
        "wechat_transaction_id": 4200001234202603111234567890,
        "a\x00b": "NUL in a key",
        "order": {"$ref": "orders", "$id": 1187},
        "deep": nested(120),
    }
    async with TopicReader(pipeline.infra.bootstrap, *DLQ_TOPICS) as reader:
        await produce_raw(
            pipeline.infra.bootstrap,
            Topic.FEEDBACK_CLASSIFIED,
            json.dumps(data).encode(),
            key=record_.key,
            headers=record_.headers,
        )
        db = mongo_client[pipeline.database]
        routed, _ = await wait_for_cases(
            db, reader, {feedback.feedback_id: "the replayed event"}, timeout=30
        )
    assert len(routed[feedback.feedback_id]) == 1
    case = await db["followup_cases"].find_one({"feedback_id": feedback.feedback_id})
    assert case is not None
    stored = case["feedback"]["metadata"]
    assert stored["wechat_transaction_id"] == "4200001234202603111234567890"
