"""The classifier service against the real broker: feedback.received in,
feedback.classified out, with the model version and the customer's expectation (the one
the channel captured, else the one the text asks for); a redelivery yields the same
event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from services.classifier.app import build
from services.classifier.settings import ClassifierSettings
from shared.contracts import Customer, CustomerTier, ExpectedOutcome, FeedbackReceived, Topic
from shared.envelope import new_event
from shared.tools import devstack
from tests.conftest import Infra
from tests.integration.running import running
from tests.support import TopicReader, a_feedback, http_routes, metric_sum, produce


async def test_feedback_received_becomes_feedback_classified_once(infra: Infra) -> None:
    settings = ClassifierSettings(
        http_port=devstack.free_port(),
        kafka_bootstrap=infra.bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=400,
        kafka_fetch_max_wait_ms=devstack.LOCAL_FETCH_MAX_WAIT_MS,
        kafka_consumer_group=f"test-classifier-{uuid.uuid4().hex[:8]}",
    )
    feedback = a_feedback(
        "退款一直没到账，再不处理我就去消协投诉！",
        customer=Customer(id=f"C-{uuid.uuid4().hex[:6]}", tier=CustomerTier.VIP),
        language="zh",
    )
    received = new_event(FeedbackReceived(feedback=feedback), source="/test", cause="m-1")
    by = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    said = a_feedback(
        "The screen cracked after a week, I want my money back",
        expected_outcome=ExpectedOutcome.REPLACEMENT,
        expected_by=by,
    )
    praise = a_feedback("Lovely stay, the staff were wonderful", language="en")
    others = [
        new_event(FeedbackReceived(feedback=f), source="/test", cause=f"m-{n}")
        for n, f in enumerate((said, praise), start=2)
    ]
    service = build(settings)
    async with (
        running(service),
        TopicReader(infra.bootstrap, Topic.FEEDBACK_CLASSIFIED) as reader,
    ):
        await produce(infra.bootstrap, [received, received, *others])  # 2nd: a redelivery
        out = await reader.wait_for(
            lambda e: (
                e.name == "feedback.classified"
                and e.data.feedback.feedback_id == feedback.feedback_id
            )
        )
        classification = out.data.classification
        assert classification.root_cause == "billing"
        assert classification.urgency == "critical"
        assert any(
            s.name == "legal_threat" and "消协" in s.evidence for s in classification.signals
        )
        assert classification.model_version.startswith("ngram-lr-")
        assert out.key == feedback.customer_key
        # Nothing captured by the channel: read from the text, with its words.
        expectation = classification.expectation
        assert expectation is not None
        assert (expectation.outcome, expectation.source) == ("refund", "inferred")
        assert expectation.evidence == "退款一直没到账"
        assert expectation.expected_by is None

        # Captured by the channel: the customer's, whatever the text says.
        said_out = await reader.wait_for(lambda e: e.data.feedback.feedback_id == said.feedback_id)
        assert said_out.data.classification.expectation.model_dump() == {
            "outcome": "replacement",
            "source": "customer",
            "evidence": None,
            "expected_by": by,
        }
        praise_out = await reader.wait_for(
            lambda e: e.data.feedback.feedback_id == praise.feedback_id
        )
        assert praise_out.data.classification.expectation is None

        later = await reader.collect(2.0)
        copies = {e.id for e in later if e.data.feedback.feedback_id == feedback.feedback_id}
        assert copies == {out.id}, "a redelivered message must produce the same event"

        # Its HTTP side is operations only (and the description of no API): nothing
        # there would need a key.
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/openapi.json")).json()["paths"] == {}
            for source, outcome in (("inferred", "refund"), ("customer", "replacement")):
                assert (
                    await metric_sum(
                        http,
                        "closeloop_classifier_expectations_total",
                        source=source,
                        outcome=outcome,
                    )
                    >= 1
                )
            assert (
                await metric_sum(
                    http, "closeloop_classifier_expectations_total", source="none", outcome="none"
                )
                >= 1
            )
    paths = {route.path for route in http_routes(service.app.routes)}
    assert paths - {"/docs", "/docs/oauth2-redirect"} == {"/healthz", "/readyz", "/metrics"}
