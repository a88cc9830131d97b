from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.classifier.config import load_taxonomy
from services.classifier.domain import classify
from shared.config import ConfigError
from shared.contracts import Channel, Customer, CustomerTier, Feedback, RootCause, Urgency
from tests.support import a_feedback

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TAXONOMY = load_taxonomy()


def feedback(
    text: str,
    *,
    channel: Channel = Channel.WEB,
    tier: CustomerTier = CustomerTier.STANDARD,
    language: str = "en",
    **metadata: object,
) -> Feedback:
    return a_feedback(
        text,
        customer=Customer(id="C-1", tier=tier),
        channel=channel,
        language=language,
        metadata=metadata,
    )


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("The blender I bought is broken and leaks everywhere", RootCause.PRODUCT_QUALITY),
        ("我买的洗衣机漏水了，质量太差", RootCause.PRODUCT_QUALITY),
        ("My parcel never arrived and the tracking has not moved", RootCause.DELIVERY),
        ("快递一周了还没收到，物流信息也不更新", RootCause.DELIVERY),
        ("I was double charged and still have no refund", RootCause.BILLING),
        ("重复扣款了，退款一直没到账", RootCause.BILLING),
        ("The cashier was rude and shouted at me", RootCause.STAFF_ATTITUDE),
        ("店员态度很差，爱答不理", RootCause.STAFF_ATTITUDE),
        ("The technician missed the repair appointment twice", RootCause.AFTER_SALES),
        ("售后维修师傅上门迟到", RootCause.AFTER_SALES),
        ("酒店房间很脏，卫生太差", RootCause.ENVIRONMENT),
        ("这个霸王条款太不合理了", RootCause.POLICY),
    ],
)
def test_root_cause_from_keywords_in_both_languages(text: str, cause: RootCause) -> None:
    assert classify(TAXONOMY, feedback(text)).root_cause is cause


def test_safety_is_always_critical() -> None:
    result = classify(TAXONOMY, feedback("The charger caught fire in my kitchen"))
    assert result.urgency is Urgency.CRITICAL
    assert any(s.name == "safety" and "caught fire" in s.evidence for s in result.signals)


def test_legal_and_media_threats_with_anger_are_critical() -> None:
    text = "太过分了！退款一直不到，我要找律师起诉你们，还要在微博曝光"
    result = classify(TAXONOMY, feedback(text, language="zh"))
    assert result.urgency is Urgency.CRITICAL
    names = {s.name for s in result.signals}
    assert {"legal_threat", "media_threat", "anger"} <= names


def test_vip_and_public_reach_raise_urgency_of_complaints() -> None:
    text = "Refund still not paid, this is unacceptable"
    plain = classify(TAXONOMY, feedback(text))
    loud = classify(
        TAXONOMY, feedback(text, channel=Channel.SOCIAL, tier=CustomerTier.VIP, followers=250_000)
    )
    order = [Urgency.LOW, Urgency.MEDIUM, Urgency.HIGH, Urgency.CRITICAL]
    assert order.index(loud.urgency) > order.index(plain.urgency)
    assert {"customer_tier", "public_reach"} <= {s.name for s in loud.signals}


def test_praise_is_low_urgency_and_positive_even_from_a_vip() -> None:
    result = classify(
        TAXONOMY, feedback("Thanks, great service and a quick delivery!", tier=CustomerTier.VIP)
    )
    assert result.urgency is Urgency.LOW
    assert result.sentiment > 0


def test_unclear_feedback_is_other_and_flagged_for_review() -> None:
    result = classify(TAXONOMY, feedback("hello, about my thing from yesterday"))
    assert result.root_cause is RootCause.OTHER
    assert result.needs_review
    assert result.confidence < TAXONOMY.review_threshold


def test_every_decision_says_why() -> None:
    result = classify(TAXONOMY, feedback("I was overcharged and will never buy again"))
    assert result.model_version == TAXONOMY.version
    assert any("billing" in reason for reason in result.reasons)
    assert any(s.name == "churn_intent" and "never buy" in s.evidence for s in result.signals)


def test_secondary_cause_when_two_are_evidenced() -> None:
    result = classify(TAXONOMY, feedback("The parcel arrived late and the item was broken, faulty"))
    assert {result.root_cause, result.secondary_cause} == {
        RootCause.PRODUCT_QUALITY,
        RootCause.DELIVERY,
    }


def test_a_bad_taxonomy_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "taxonomy.yaml"
    bad.write_text(
        "version: x\nreview_threshold: 2\nroot_causes: {}\nsignals: {}\n"
        "sentiment: {positive: {}, negative: {}}\n"
        "urgency: {critical_at: 1, high_at: 2, medium_at: 1, negative_sentiment_medium: 0,"
        " public_reach_followers: 1}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_taxonomy(bad)
    assert "review_threshold" in str(caught.value)
    assert "critical_at > high_at" in str(caught.value)
