import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.domain import (
    FeedbackIn,
    Invalid,
    Source,
    already_normal,
    assemble,
    build_customer,
    counted_language,
    detect_language,
    feedback_id,
    language_of,
    normalise,
    to_utc,
)
from shared.contracts import Channel, Customer

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def post(**fields: object) -> FeedbackIn:
    body = {"channel": "web", "customer": {"id": "C-1"}, "text": "My order never arrived", **fields}
    return FeedbackIn.model_validate(body)


def test_same_channel_message_id_gives_the_same_feedback_id() -> None:
    first = normalise(post(external_id="m-1"), now=NOW)
    again = normalise(post(external_id="m-1", text="edited"), now=NOW + timedelta(hours=1))
    assert first.feedback_id == again.feedback_id


def test_message_ids_are_scoped_by_channel() -> None:
    web = normalise(post(external_id="m-1"), now=NOW)
    sms = normalise(post(external_id="m-1", channel="sms"), now=NOW)
    assert web.feedback_id != sms.feedback_id


def test_idempotency_key_dedupes_posts_without_a_message_id() -> None:
    first = normalise(post(), now=NOW, idempotency_key="k-9")
    again = normalise(post(), now=NOW + timedelta(seconds=5), idempotency_key="k-9")
    other = normalise(post(), now=NOW, idempotency_key="k-10")
    assert first.feedback_id == again.feedback_id != other.feedback_id


def test_identical_content_with_the_same_received_at_is_one_feedback() -> None:
    at = "2026-03-01T17:00:00+08:00"
    first = normalise(post(received_at=at), now=NOW)
    again = normalise(post(received_at=at), now=NOW + timedelta(minutes=1))
    assert first.feedback_id == again.feedback_id


def test_received_at_is_converted_to_utc() -> None:
    feedback = normalise(post(received_at="2026-03-01T17:00:00+08:00"), now=NOW)
    assert feedback.received_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert feedback.received_at.utcoffset() == timedelta(0)
    assert feedback.ingested_at.tzinfo is not None


def test_missing_received_at_defaults_to_now() -> None:
    assert normalise(post(), now=NOW).received_at == NOW


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("我买的洗衣机漏水了", "zh"),
        ("快递还没到 order 12345", "zh"),
        ("The parcel never arrived", "en"),
        ("Доставка задерживается", "other"),
        ("12345 !!!", "other"),
    ],
)
def test_language_detection(text: str, language: str) -> None:
    assert detect_language(text) == language


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_gets_the_language_that_counting_its_letters_gives(text: str) -> None:
    assert detect_language(text) == counted_language(text)


_HAN_CHARACTER = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]")


def counted_one_by_one(sample: str) -> str:
    """The rule of :func:`counted_language`, counting every character on its own."""
    han = len(_HAN_CHARACTER.findall(sample))
    latin = len(re.findall("[A-Za-z]", sample))
    other = max(0, len(re.findall(r"[^\W\d_]", sample)) - han - latin)
    if han + latin + other == 0:
        return "other"
    if han * 4 >= latin and han >= other:
        return "zh"
    if latin > other:
        return "en"
    return "other"


MIXED_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF),
        st.characters(max_codepoint=127),
        st.characters(min_codepoint=0x400, max_codepoint=0x4FF),  # Cyrillic letters
        st.characters(),
    )
)


@given(MIXED_TEXT)
def test_language_counted_in_runs_is_the_language_counted_character_by_character(
    text: str,
) -> None:
    assert counted_language(text) == counted_one_by_one(text)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=12),
            "email": st.sampled_from(["li.wei@example.com", " li@example.com", "nope", ""]),
            "phone": st.sampled_from(["+8613800138000", "13800138000"]),
            "handle": st.text(max_size=12),
            "name": st.text(max_size=12),
            "tier": st.sampled_from(["standard", "premium", "vip"]),
            "time_zone": st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York", ""]),
        },
    )
)
@example({"id": "C-1", "email": "li.wei@example.com", "tier": "vip"})
@example({"id": "C-1", "time_zone": "Asia/Shanghai"})
@example({"handle": "@li_wei", "name": "Li Wei"})
def test_a_customer_kept_as_given_is_the_customer_normalising_would_build(
    fields: dict[str, str],
) -> None:
    try:
        given_customer = Customer.model_validate(fields)
    except ValidationError:
        return  # not a customer FeedbackIn would accept
    if already_normal(given_customer):
        built = build_customer(
            Source(now=NOW, region="CN"),
            **given_customer.model_dump(exclude={"tier"}),
            tier=given_customer.tier,
        )
        assert built == given_customer


def test_explicit_language_wins() -> None:
    assert normalise(post(language="en", text="你好 hello"), now=NOW).language == "en"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"customer": {}}, "customer"),
        ({"text": "   "}, "text"),
        ({"received_at": "2026-03-01T09:00:00"}, "received_at"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        post(**fields)
    assert field in {str(err["loc"][0]) for err in caught.value.errors()}


def test_text_is_trimmed_and_customer_key_set() -> None:
    feedback = normalise(post(text="  late delivery \n"), now=NOW)
    assert feedback.text == "late delivery"
    assert feedback.customer_key.startswith("c-")
    assert feedback.channel is Channel.WEB


def test_a_phone_number_is_stored_in_e164_using_the_integration_region() -> None:
    local = normalise(post(customer={"phone": "138 0013 8000"}), now=NOW, region="CN")
    international = normalise(post(customer={"phone": "+86 (138) 0013-8000"}), now=NOW)
    assert local.customer.phone == international.customer.phone == "+8613800138000"
    assert local.customer_key == international.customer_key


def test_a_national_number_without_a_region_is_refused_naming_the_field() -> None:
    with pytest.raises(Invalid) as caught:
        normalise(post(customer={"phone": "138 0013 8000"}), now=NOW)
    assert caught.value.field == "customer.phone"


def test_a_timestamp_without_offset_is_read_in_the_integration_time_zone() -> None:
    later = datetime(2026, 7, 2, tzinfo=UTC)  # both timestamps are in its past
    source = Source(now=later, timezone=ZoneInfo("Asia/Shanghai"))
    assert to_utc(datetime(2026, 3, 11, 8, 0), source, "at") == datetime(
        2026, 3, 11, 0, 0, tzinfo=UTC
    )
    summer = Source(now=later, timezone=ZoneInfo("Europe/Berlin"))
    assert to_utc(datetime(2026, 7, 1, 12, 0), summer, "at").hour == 10


def test_a_timestamp_without_offset_and_no_configured_zone_is_refused() -> None:
    with pytest.raises(Invalid) as caught:
        to_utc(datetime(2026, 3, 11, 8, 0), Source(now=NOW), "sent_at")
    assert caught.value.field == "sent_at"


def test_a_timestamp_that_overflows_utc_is_refused_not_a_crash() -> None:
    with pytest.raises(Invalid):
        normalise(post(received_at="0001-01-01T00:00:00+14:00"), now=NOW)


@pytest.mark.parametrize(
    ("hint", "text", "language"),
    [
        ("zh-CN", "hello", "zh"),
        ("en_US", "你好", "en"),
        ("??", "退款还没到账", "zh"),
        (None, "late", "en"),
    ],
)
def test_a_channel_language_tag_is_reduced_to_its_code_or_detected(
    hint: str | None, text: str, language: str
) -> None:
    assert language_of(hint, text) == language


def test_text_over_the_limit_is_cut_and_flagged_not_refused() -> None:
    source = Source(now=NOW, max_text_chars=10)
    feedback = assemble(
        source, channel=Channel.PHONE, customer=Customer(id="C-1"), text="0123456789 and more"
    )
    assert feedback.text == "0123456789"
    assert feedback.metadata["text_truncated"] is True


def test_without_any_message_id_the_content_decides_the_id() -> None:
    source = Source(now=NOW)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    one = assemble(
        source, channel=Channel.WEB, customer=Customer(id="C-1"), text="x", received_at=at
    )
    same = assemble(
        source, channel=Channel.WEB, customer=Customer(id="C-1"), text="x", received_at=at
    )
    other = assemble(
        source, channel=Channel.WEB, customer=Customer(id="C-2"), text="x", received_at=at
    )
    assert one.feedback_id == same.feedback_id != other.feedback_id


def test_the_content_fingerprint_is_computed_only_when_no_id_decides() -> None:
    def fingerprint() -> str:
        raise AssertionError("a message id or an Idempotency-Key decides the id")

    by_message = feedback_id(Channel.WEB, "m-1", "k-1", fingerprint)
    by_key = feedback_id(Channel.WEB, None, "k-1", fingerprint)
    by_content = feedback_id(Channel.WEB, None, None, lambda: "abc")
    assert len({by_message, by_key, by_content}) == 3
