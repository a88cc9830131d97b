"""The e-mail adapter on realistic raw messages: charsets, MIME, HTML, replies, attachments."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.channels.email import (
    decode_bytes,
    decode_header_value,
    html_to_text,
    latest_reply,
    parse_email,
)
from services.intake.domain import Invalid, Source
from shared.contracts import Channel

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "intake"
NOW = datetime(2026, 3, 12, tzinfo=UTC)
SOURCE = Source(now=NOW)


def mail(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_a_chinese_gbk_multipart_mail_is_decoded_with_subject_sender_and_time() -> None:
    feedback = parse_email(mail("email_gbk_multipart.eml"), SOURCE)
    assert feedback.channel is Channel.EMAIL
    # 喆 exists in GBK but not GB2312, though the mail says gb2312.
    assert feedback.subject == "洗衣机漏水，要求退货（王喆）"
    assert feedback.customer.email == "wang.zhe@example.cn"
    assert feedback.customer.name == "王喆"
    assert feedback.text.startswith("客服您好：\n\n我叫王喆，3月1日在贵店购买的滚筒洗衣机")
    assert feedback.text.endswith("否则我只能向12315投诉。")
    assert feedback.language == "zh"
    assert feedback.received_at == datetime(2026, 3, 11, 1, 30, tzinfo=UTC)
    assert feedback.external_id == "20260311093000.5521@mail.example.cn"
    assert feedback.metadata == {"html_only": False, "mailbox": "support@example.com"}


def test_the_signature_with_a_phone_number_is_not_part_of_the_text() -> None:
    feedback = parse_email(mail("email_gbk_multipart.eml"), SOURCE)
    assert "祝好" not in feedback.text
    assert "138 0013 8000" not in feedback.text


def test_attachments_become_name_type_and_size_only() -> None:
    feedback = parse_email(mail("email_gbk_multipart.eml"), SOURCE)
    assert [(a.name, a.content_type, a.size) for a in feedback.attachments] == [
        ("发票.pdf", "application/pdf", 75),
        ("leak.jpg", "image/jpeg", 3072),
    ]


def test_an_html_only_mail_becomes_text_without_markup_script_or_quoted_message() -> None:
    feedback = parse_email(mail("email_html_only.eml"), SOURCE)
    assert feedback.text == (
        "Hello,\n\n"
        "My order #20260304-1187 was marked as delivered on March 4th, but nothing arrived.\n"
        "The courier's photo shows a door that is not mine.\n\n"
        "I want a refund or a new delivery this week."
    )
    assert feedback.metadata["html_only"] is True
    assert feedback.metadata["in_reply_to"] == "delivery-20260304-1187@shop.example.com"
    assert feedback.received_at == datetime(2026, 3, 5, 13, 15, 42, tzinfo=UTC)
    assert feedback.language == "en"


def test_a_reply_chain_keeps_only_the_latest_reply_and_the_subject() -> None:
    feedback = parse_email(mail("email_reply_chain.eml"), SOURCE)
    assert feedback.text == (
        "I am writing again because nothing has happened since my last mail.\n"
        "The replacement router you sent on 2 March does not connect either, same error as "
        "the first one.\n"
        "This is the third time I ask: please send a technician or refund me."
    )
    assert feedback.subject == "RE: RE: Router does not connect"
    assert feedback.customer.name == "Becker, Tom"


def test_chinese_quote_introductions_and_quoted_lines_are_cut() -> None:
    text = (
        "退款还没到账，请尽快处理。\n\n"
        "在 2026年3月10日 上午9:00，客服 <support@example.com> 写道：\n"
        "> 您的退款已处理。\n"
    )
    assert latest_reply(text) == "退款还没到账，请尽快处理。"


def test_a_mail_that_is_only_a_quote_keeps_its_text_rather_than_nothing() -> None:
    assert latest_reply("> only quoted\n> lines") == "> only quoted\n> lines"


def test_html_blocks_become_paragraphs_and_inline_markup_and_comments_vanish() -> None:
    html = "<div>My <b>order</b>\n   is late.</div><p>Refund&nbsp;please<br>now</p><!-- x -->"
    assert html_to_text(html) == "My order is late.\n\nRefund please\nnow"


@pytest.mark.parametrize(
    ("raw", "charset", "text"),
    [
        ("退款喆".encode("gbk"), "gb2312", "退款喆"),
        ("退款".encode("gb18030"), None, "退款"),
        ("naïve".encode(), "us-ascii", "naïve"),
        ("Grüße".encode("cp1252"), "iso-8859-1", "Grüße"),
        (b"\xff\xfe\xfa", "no-such-charset", "\ufffd\ufffd\ufffd"),
        ("退款".encode(), "\x00bk", "退款"),
    ],
)
def test_bodies_decode_in_the_declared_charset_or_a_superset(
    raw: bytes, charset: str | None, text: str
) -> None:
    assert decode_bytes(raw, charset) == text


def test_raw_8bit_and_encoded_word_headers_both_decode() -> None:
    assert decode_header_value("=?GB2312?B?zcu/7g==?= now") == "退款 now"
    raw_8bit = "退款".encode("gbk").decode("ascii", "surrogateescape")
    assert decode_header_value(raw_8bit) == "退款"
    assert decode_header_value("=?utf-8?B?not base64!?=") != ""


def test_a_mail_with_only_a_subject_uses_the_subject_as_text() -> None:
    raw = b"From: a@example.com\r\nSubject: Refund missing\r\n\r\n\r\n"
    feedback = parse_email(raw, SOURCE)
    assert feedback.text == "Refund missing"


def test_an_unreadable_date_falls_back_to_now() -> None:
    raw = b"From: a@example.com\r\nDate: yesterday-ish\r\n\r\nLate parcel\r\n"
    assert parse_email(raw, SOURCE).received_at == NOW


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "(body)"),
        (b"just some text without headers", "(body)"),
        (b"Subject: hi\r\n\r\nbody", "From"),
        (b"From: nobody\r\n\r\nbody", "From"),
        (b"From: a@example.com\r\n\r\n", "(body)"),
    ],
)
def test_mails_that_cannot_be_feedback_name_what_is_missing(raw: bytes, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_email(raw, SOURCE)
    assert caught.value.field == field


_BASE = mail("email_gbk_multipart.eml")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300)
    | st.builds(
        lambda noise, at: _BASE[:at] + noise + _BASE[at + len(noise) :],
        st.binary(min_size=1, max_size=40),
        st.integers(0, len(_BASE)),
    )
)
def test_any_bytes_either_become_feedback_or_a_named_refusal(raw: bytes) -> None:
    try:
        feedback = parse_email(raw, SOURCE)
    except Invalid as refusal:
        assert refusal.field
    else:
        assert feedback.text


def test_a_mail_with_very_many_attachments_lists_fifty_and_counts_the_rest() -> None:
    parts = "".join(
        f"--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; "
        f'filename="p{index}.png"\r\n\r\nx\r\n'
        for index in range(53)
    )
    raw = (
        "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"--b\r\nContent-Type: text/plain\r\n\r\nPhotos of the damage.\r\n{parts}--b--\r\n"
    ).encode()
    feedback = parse_email(raw, SOURCE)
    assert len(feedback.attachments) == 50
    assert feedback.metadata["attachments_omitted"] == 3
    assert feedback.text == "Photos of the damage."


def test_an_overlong_display_name_is_cut_rather_than_refused() -> None:
    raw = f"From: {'W' * 300} <a@example.com>\r\n\r\nLate parcel\r\n".encode()
    assert parse_email(raw, SOURCE).customer.name == "W" * 200


# --- bounded work: nesting is refused before it costs ----------------------------------


def nested_multipart(levels: int, text: str = "Where is my refund?") -> bytes:
    """A mail whose text sits ``levels`` multipart/mixed sections deep."""
    head = ["From: a@example.com", "Subject: nested"]
    body: list[str] = []
    for level in range(levels):
        body += [f'Content-Type: multipart/mixed; boundary="b{level}"', "", f"--b{level}"]
    body += ["Content-Type: text/plain", "", text]
    body += [f"--b{level}--" for level in reversed(range(levels))]
    return "\r\n".join([*head, "MIME-Version: 1.0", *body, ""]).encode()


def test_a_mail_a_few_multipart_levels_deep_is_read() -> None:
    assert parse_email(nested_multipart(8), SOURCE).text == "Where is my refund?"


def test_a_thousand_nested_multipart_sections_are_refused_before_parsing() -> None:
    with pytest.raises(Invalid) as refused:
        parse_email(nested_multipart(1000), SOURCE)
    assert refused.value.field == "(body)"
    assert "more than 100 multipart sections" in refused.value.message


def test_parts_nested_deeper_than_the_mime_limit_are_refused() -> None:
    with pytest.raises(Invalid) as refused:
        parse_email(nested_multipart(40), SOURCE)
    assert refused.value.message == "MIME parts nest deeper than 16 levels"


def test_html_nested_beyond_the_limit_is_refused_naming_the_limit() -> None:
    with pytest.raises(Invalid) as refused:
        html_to_text("<div>" * 20_000 + "x" + "</div>" * 20_000)
    assert refused.value.message == "the HTML nests deeper than 256 elements"


def test_html_that_html_lets_go_unclosed_does_not_count_as_nesting() -> None:
    html = "<p>refund" * 5_000 + "<ul>" + "<li>item" * 5_000 + "</ul>"
    text = html_to_text(html)
    assert text.startswith("refund\n\nrefund") and text.endswith("item")


def test_quoted_messages_hidden_elements_and_nested_quotes_leave_no_text() -> None:
    html = (
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<p>Still no refund.</p><script>var x = '<p>no</p>';</script>"
        '<div class="gmail_quote extra"><div>On Monday you wrote:<div>old</div></div></div>'
        "<blockquote><blockquote>older</blockquote>old</blockquote>"
        '<div id="divRplyFwdMsg">From: us</div><p>Please call me.</p></body></html>'
    )
    assert html_to_text(html) == "Still no refund.\n\nPlease call me."


@pytest.mark.parametrize(
    "html",
    ["<a" * 40_000, "</" * 40_000, "<?" * 40_000, "<![CDATA[" * 20_000, "<!--" * 20_000],
)
def test_malformed_html_of_every_kind_becomes_text_or_nothing(html: str) -> None:
    """Inputs that take the standard library's HTML parser quadratic time are read in one
    pass: markup without text shows nothing, and text before it is kept."""
    assert html_to_text(html) == ""
    assert html_to_text("<p>Refund please</p>" + html).startswith("Refund please")
