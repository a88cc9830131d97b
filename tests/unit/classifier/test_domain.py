"""The classifier's decisions on the committed model and taxonomy: pure, no I/O."""

from pathlib import Path

import pytest

from services.classifier.domain import classify, classify_batch, urgency_of
from services.classifier.model import load
from services.classifier.policy import load_taxonomy
from shared.config import ConfigError
from shared.contracts import (
    Channel,
    Customer,
    CustomerTier,
    Feedback,
    RootCause,
    Signal,
    Urgency,
)
from tests.support import a_feedback

TAXONOMY = load_taxonomy()
MODEL = load(TAXONOMY.artifact_path)
ORDER = [Urgency.LOW, Urgency.MEDIUM, Urgency.HIGH, Urgency.CRITICAL]


def feedback(
    text: str,
    *,
    channel: Channel = Channel.WEB,
    tier: CustomerTier = CustomerTier.STANDARD,
    language: str = "en",
    subject: str | None = None,
    **metadata: object,
) -> Feedback:
    return a_feedback(
        text,
        customer=Customer(id="C-1", tier=tier),
        channel=channel,
        language=language,
        subject=subject,
        metadata=metadata,
    )


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("The blender I bought is broken and leaks everywhere", "product_quality"),
        ("我买的洗衣机漏水了，质量太差", "product_quality"),
        ("My parcel never arrived and the tracking has not moved", "delivery"),
        ("快递一周了还没收到，物流信息也不更新", "delivery"),
        ("I was double charged and still have no refund", "billing"),
        ("重复扣款了，退款一直没到账", "billing"),
        ("The cashier was rude and shouted at me", "staff_attitude"),
        ("前台服务员态度很差，爱答不理", "staff_attitude"),
        ("The technician missed the repair appointment twice", "after_sales"),
        ("售后维修师傅上门迟到，修了两次还没修好", "after_sales"),
        ("I emailed support three times and nobody ever replied", "communication"),
        ("客服电话一直打不通，留言也没人回复", "communication"),
        ("Your no-refund policy on sale items is unfair", "policy"),
        ("这个霸王条款太不合理了，规定必须本人到店", "policy"),
        ("The hotel room was dirty and noisy all night", "environment"),
        ("酒店房间很脏，隔音太差，卫生间有异味", "environment"),
        ("Thank you, the staff were wonderful and everything was perfect", "other"),
        ("服务非常周到，谢谢你们，下次还来", "other"),
    ],
)
def test_root_cause_of_clear_feedback_in_both_languages(text: str, cause: RootCause) -> None:
    result = classify(TAXONOMY, MODEL, feedback(text))
    assert result.root_cause == cause
    assert not result.needs_review


def test_safety_is_always_critical_with_the_span_as_evidence() -> None:
    result = classify(TAXONOMY, MODEL, feedback("The charger caught fire in my kitchen"))
    assert result.urgency is Urgency.CRITICAL
    assert any(s.name == "safety" and "caught fire" in s.evidence for s in result.signals)


@pytest.mark.parametrize(
    ("text", "signal", "span"),
    [
        ("退款一直不到，再不处理我就去12315投诉", "legal_threat", "12315"),
        ("乱收费，我已经向消费者协会反映了", "legal_threat", "消费者协会"),
        ("拖了三个月不给维修，我要去消协", "legal_threat", "消协"),
        ("I will contact my lawyer about the missing refund", "legal_threat", "lawyer"),
        ("再不解决我就发微博曝光你们", "media_threat", "曝光"),
        ("I'm going to the press with this story", "media_threat", "the press"),
        ("吃了你们的外卖后全家上吐下泻", "safety", "上吐下泻"),
    ],
)
def test_legal_media_and_safety_threats_are_critical(text: str, signal: str, span: str) -> None:
    result = classify(TAXONOMY, MODEL, feedback(text))
    assert result.urgency is Urgency.CRITICAL
    assert any(s.name == signal and span in s.evidence for s in result.signals)


@pytest.mark.parametrize(
    "text",
    ["房间没有任何安全隐患，住得很放心", "There was no danger at all, the staff handled it well"],
)
def test_a_negated_risk_is_not_a_signal(text: str) -> None:
    result = classify(TAXONOMY, MODEL, feedback(text))
    assert not any(s.name == "safety" for s in result.signals)
    assert result.urgency is not Urgency.CRITICAL


def test_anger_churn_and_repeat_make_a_complaint_high() -> None:
    result = classify(
        TAXONOMY,
        MODEL,
        feedback("第三次送错货了，气死我了，再也不会在你们这里买东西了", language="zh"),
    )
    assert result.urgency is Urgency.HIGH
    assert {"anger", "churn_intent", "repeat"} <= {s.name for s in result.signals}


def test_vip_and_public_reach_raise_urgency_of_complaints() -> None:
    text = "My refund still has not been paid"
    plain = classify(TAXONOMY, MODEL, feedback(text))
    loud = classify(
        TAXONOMY,
        MODEL,
        feedback(text, channel=Channel.SOCIAL, tier=CustomerTier.VIP, followers="250000"),
    )
    assert ORDER.index(loud.urgency) > ORDER.index(plain.urgency)
    evidence = {s.name: s.evidence for s in loud.signals}
    assert evidence["customer_tier"] == "tier=vip"
    assert evidence["public_reach"] == "followers=250000"


def test_followers_count_only_on_social_channels() -> None:
    result = classify(
        TAXONOMY, MODEL, feedback("Refund not paid", channel=Channel.EMAIL, followers=250_000)
    )
    assert not any(s.name == "public_reach" for s in result.signals)


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, great service and a quick delivery!!!",
        "太棒了！！！服务很好，下次还来",
        "酒店很干净，服务员很热情，下次还来",
    ],
)
def test_praise_is_low_and_positive_even_from_a_loud_vip(text: str) -> None:
    result = classify(
        TAXONOMY,
        MODEL,
        feedback(text, channel=Channel.SOCIAL, tier=CustomerTier.VIP, followers=90_000),
    )
    assert result.urgency is Urgency.LOW
    assert result.sentiment > 0


def test_sentiment_is_in_range_and_follows_the_text() -> None:
    praise = classify(TAXONOMY, MODEL, feedback("Wonderful stay, lovely staff, thank you"))
    complaint = classify(TAXONOMY, MODEL, feedback("这是我住过最差的酒店，又脏又吵，非常失望"))
    assert -1.0 <= complaint.sentiment < 0 < praise.sentiment <= 1.0


@pytest.mark.parametrize("text", ["not great", "regarding my account", "不太满意"])
def test_a_complaint_that_names_no_cause_is_flagged_for_review(text: str) -> None:
    result = classify(TAXONOMY, MODEL, feedback(text))
    assert result.confidence < TAXONOMY.review_threshold
    assert result.needs_review


def test_a_message_that_reports_no_problem_is_other() -> None:
    result = classify(TAXONOMY, MODEL, feedback("hello, about my thing from yesterday"))
    assert result.root_cause == "other"
    assert result.urgency is Urgency.LOW


def test_every_decision_says_why_and_names_the_model() -> None:
    result = classify(TAXONOMY, MODEL, feedback("I was overcharged and will never buy again"))
    assert result.model_version == f"{MODEL.version}+{TAXONOMY.version}"
    assert result.reasons[0].startswith("root cause billing")
    assert "overcharged" in result.reasons[0]
    assert any(s.name == "churn_intent" and "never buy" in s.evidence for s in result.signals)
    assert result.reasons[-1].startswith(f"urgency {result.urgency.value}")


def test_secondary_cause_when_two_are_evidenced() -> None:
    result = classify(
        TAXONOMY,
        MODEL,
        feedback("快递送了半个月才到，打开一看屏幕有坏点，电池也充不进电", language="zh"),
    )
    assert {result.root_cause, result.secondary_cause} == {
        "product_quality",
        "delivery",
    }


def test_subject_is_read_with_the_text() -> None:
    result = classify(
        TAXONOMY, MODEL, feedback("已经两个星期了，还是没有到账。", subject="退款", language="zh")
    )
    assert result.root_cause == "billing"


def test_a_batch_decides_exactly_as_one_by_one() -> None:
    texts = [
        "The charger caught fire",
        "快递一周了还没收到",
        "Thank you so much!",
        "酒店房间很脏",
        "hello",
    ]
    batch = classify_batch(TAXONOMY, MODEL, [feedback(t) for t in texts])
    single = [classify(TAXONOMY, MODEL, feedback(t)) for t in texts]
    assert [b.model_dump() for b in batch] == [s.model_dump() for s in single]
    assert classify_batch(TAXONOMY, MODEL, []) == []


def test_urgency_levels_follow_the_configured_thresholds() -> None:
    anger = Signal(name="anger", evidence="气死", weight=1.0)
    tier = Signal(name="customer_tier", evidence="tier=vip", weight=1.0)
    legal = Signal(name="legal_threat", evidence="律师", weight=3.0)
    assert urgency_of(TAXONOMY, [legal], 0.0) is Urgency.CRITICAL
    assert urgency_of(TAXONOMY, [anger], -0.9) is Urgency.HIGH
    assert urgency_of(TAXONOMY, [], -0.9) is Urgency.MEDIUM
    assert urgency_of(TAXONOMY, [], 0.1) is Urgency.LOW
    # A tier alone does not make a neutral question urgent; it does lift a complaint.
    assert urgency_of(TAXONOMY, [tier], 0.1) is Urgency.LOW
    assert urgency_of(TAXONOMY, [tier], -0.9) is Urgency.HIGH


def write_taxonomy(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_a_bad_taxonomy_file_names_the_field(tmp_path: Path) -> None:
    bad = write_taxonomy(
        tmp_path / "taxonomy.yaml",
        "version: x\nreview_threshold: 2\nroot_causes: {}\nsignals: {}\n"
        "urgency: {critical_at: 1, high_at: 2, medium_at: 1, negative_sentiment_medium: 0,"
        " public_reach_followers: 1}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_taxonomy(bad)
    assert "review_threshold" in str(caught.value)
    assert "critical_at > high_at" in str(caught.value)


def test_an_invalid_signal_regex_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = write_taxonomy(
        tmp_path / "taxonomy.yaml",
        "version: x\nreview_threshold: 0.5\nroot_causes: {}\n"
        "signals: {anger: {weight: 1, patterns: {regex: ['([']}}}\n"
        "urgency: {critical_at: 4, high_at: 2, medium_at: 1, negative_sentiment_medium: 0,"
        " public_reach_followers: 1}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_taxonomy(bad)
    assert "signals.anger.patterns.regex" in str(caught.value)
    assert "not a valid regular expression" in str(caught.value)


def test_the_artifact_path_is_relative_to_the_taxonomy_file(tmp_path: Path) -> None:
    copy = write_taxonomy(
        tmp_path / "taxonomy.yaml",
        TAXONOMY.source.read_text(encoding="utf-8"),  # type: ignore[union-attr]
    )
    assert load_taxonomy(copy).artifact_path == tmp_path / "model" / "cause-model.npz"
