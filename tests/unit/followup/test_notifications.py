"""The customer notifications: every kind of message, in every language and on every
channel of the templates file, says the case reference, stays within its channel's
length (an SMS one message) however long the facts, shows times in the customer's
time zone, and a bad templates file fails to load, naming the entry."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.followup.notifications import (
    DEFAULT_TEMPLATES,
    GSM_ELLIPSIS,
    NoticeFacts,
    Rendered,
    Templates,
    load_templates,
    sms_units,
)
from shared.config import ConfigError
from shared.contracts import Channel, ExpectedOutcome, NotificationKind

TEMPLATES = load_templates()
KINDS: tuple[NotificationKind, ...] = get_args(NotificationKind)
COMBINATIONS = [
    (kind, language, channel)
    for kind in KINDS
    for language in TEMPLATES.languages()
    for channel in Channel
]
# The longest a message may be on each channel (an SMS: one message, see sms_units).
LONGEST = {
    Channel.WEB: 2000,
    Channel.EMAIL: 4000,
    Channel.PHONE: 1000,
    Channel.CHAT: 500,
    Channel.SOCIAL: 280,
    Channel.APP_REVIEW: 280,
}
PUBLIC = (Channel.SOCIAL, Channel.APP_REVIEW)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LONG_NAME_EN = "Maximiliana Alexandra Konstantinopoulou-Fitzgerald " * 4
LONG_NAME_ZH = "欧阳" * 100
PROMISE_EN = ("send you a replacement charger and refund the delivery costs " * 40)[:2000]
PROMISE_ZH = ("为您补发一个全新的原装充电器并退还运费" * 120)[:2000]
assert len(PROMISE_EN) == len(PROMISE_ZH) == 2000


def facts(**changes: Any) -> NoticeFacts:
    """Every fact set (times in December, Shanghai), with ``changes``."""
    values: dict[str, Any] = {
        "reference": "3f9a1c2e",
        "time_zone": SHANGHAI,
        "customer_name": "Alex Morgan",
        "first_response_by": datetime(2026, 12, 4, 6, 0, tzinfo=UTC),
        "resolution_by": datetime(2026, 12, 8, 9, 30, tzinfo=UTC),
        "promise_what": "send you a replacement charger",
        "promise_due": datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        "expected_outcome": ExpectedOutcome.REFUND,
    }
    return NoticeFacts(**{**values, **changes})


MINIMAL = NoticeFacts(reference="3f9a1c2e", time_zone=SHANGHAI)
LONGEST_FACTS = {
    "english": facts(customer_name=LONG_NAME_EN, promise_what=PROMISE_EN),
    "chinese": facts(customer_name=LONG_NAME_ZH, promise_what=PROMISE_ZH),
    "mixed": facts(customer_name=LONG_NAME_ZH, promise_what=PROMISE_EN),
    "long zone": facts(
        customer_name=LONG_NAME_EN,
        promise_what=PROMISE_ZH,
        time_zone=ZoneInfo("America/Argentina/ComodRivadavia"),
        expected_outcome=ExpectedOutcome.COMPENSATION,
    ),
}


def assert_within_limits(rendered: Rendered, channel: Channel) -> None:
    if channel == Channel.SMS:
        units = sms_units(rendered.text)
        assert units.fits, f"{rendered.template}: {units}: {rendered.text}"
    else:
        assert len(rendered.text) <= LONGEST[channel], rendered.template
    if channel == Channel.EMAIL:
        assert rendered.email_subject
        assert len(rendered.email_subject) <= 150
        assert "\n" not in rendered.email_subject
    else:
        assert rendered.email_subject is None


def says_the_reference(rendered: Rendered, channel: Channel) -> bool:
    read_out = channel == Channel.PHONE  # a character at a time
    return ("3 f 9 a 1 c 2 e" if read_out else "3f9a1c2e") in rendered.text


def assert_tidy(text: str) -> None:
    """No trace of left-out sentences or unrendered template text."""
    assert text == text.strip()
    assert "\n\n\n" not in text
    assert not re.search(r"\S  +\S", text), text
    assert not re.search(r" +\n", text), text
    for trace in ("None", "{{", "}}", "{%", "%}"):
        assert trace not in text, text


# --- every kind, language and channel ------------------------------------------------


def test_the_file_has_chinese_and_english_and_falls_back_to_english() -> None:
    assert set(TEMPLATES.languages()) >= {"zh", "en"}
    assert TEMPLATES.default_language == "en"


@pytest.mark.parametrize(("kind", "language", "channel"), COMBINATIONS)
def test_every_message_fits_its_channel_with_the_longest_facts(
    kind: NotificationKind, language: str, channel: Channel
) -> None:
    for name, longest in LONGEST_FACTS.items():
        rendered = TEMPLATES.render(kind, language=language, channel=channel, facts=longest)
        assert rendered.template == f"{kind}/{language}/{channel.value}", name
        assert rendered.language == language
        assert says_the_reference(rendered, channel)
        assert_within_limits(rendered, channel)
        assert_tidy(rendered.text)
        if kind == "promise" and channel not in PUBLIC:
            assert longest.promise_what is not None
            whole = longest.promise_what.strip()
            if whole not in rendered.text:
                assert whole[:10] in rendered.text, name
                assert "…" in rendered.text or GSM_ELLIPSIS in rendered.text, name


@pytest.mark.parametrize(("kind", "language", "channel"), COMBINATIONS)
def test_every_message_renders_with_only_the_reference(
    kind: NotificationKind, language: str, channel: Channel
) -> None:
    rendered = TEMPLATES.render(kind, language=language, channel=channel, facts=MINIMAL)
    assert says_the_reference(rendered, channel)
    assert_within_limits(rendered, channel)
    assert_tidy(rendered.text)


@pytest.mark.parametrize(("kind", "language", "channel"), COMBINATIONS)
def test_a_message_with_short_facts_keeps_them_whole(
    kind: NotificationKind, language: str, channel: Channel
) -> None:
    rendered = TEMPLATES.render(kind, language=language, channel=channel, facts=facts())
    assert "…" not in rendered.text
    assert GSM_ELLIPSIS not in rendered.text
    if kind == "promise" and channel not in PUBLIC:
        assert "send you a replacement charger" in rendered.text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("channel", PUBLIC)
def test_a_public_reply_shows_no_details_and_invites_to_a_private_channel(
    kind: NotificationKind, language: str, channel: Channel
) -> None:
    text = TEMPLATES.render(kind, language=language, channel=channel, facts=facts()).text
    for detail in ("Alex", "charger", "refund", "退款", "Asia/Shanghai", "14:00"):
        assert detail not in text
    invitation = {
        (Channel.SOCIAL, "en"): "private message",
        (Channel.SOCIAL, "zh"): "私信",
        (Channel.APP_REVIEW, "en"): "Customer Care",
        (Channel.APP_REVIEW, "zh"): "客服",
    }
    assert invitation[channel, language] in text


@pytest.mark.parametrize("language", ["other", "fr", "", "pt-BR"])
def test_an_unknown_language_falls_back_to_english(language: str) -> None:
    rendered = TEMPLATES.render("progress", language=language, channel=Channel.SMS, facts=facts())
    assert rendered.language == "en"
    assert rendered.template == "progress/en/sms"
    assert rendered.text.startswith("Case 3f9a1c2e: we are still working on it.")


@pytest.mark.parametrize("language", ["zh", "zh-CN", "ZH_cn"])
def test_a_regional_language_tag_uses_its_language(language: str) -> None:
    rendered = TEMPLATES.render("apology", language=language, channel=Channel.WEB, facts=facts())
    assert (rendered.language, rendered.template) == ("zh", "apology/zh/web")


# --- what the messages say ---------------------------------------------------------


def test_the_acknowledgement_restates_the_request_apologises_and_gives_both_dates() -> None:
    text = TEMPLATES.render(
        "acknowledgement", language="en", channel=Channel.WEB, facts=facts()
    ).text
    assert text == (
        "Thank you for getting in touch about your request for a refund. We are sorry for "
        "the trouble this has caused you.\n\n"
        "Your case reference is 3f9a1c2e.\n"
        "We will contact you by Fri 4 Dec, 14:00 (Asia/Shanghai).\n"
        "We aim to resolve it by Tue 8 Dec, 17:30 (Asia/Shanghai), and we will keep you "
        "updated until it is done."
    )
    zh = TEMPLATES.render("acknowledgement", language="zh", channel=Channel.WEB, facts=facts()).text
    assert "了解到您希望办理退款" in zh
    assert "抱歉" in zh
    assert "我们会在12月4日（周五）14:00（北京时间）前与您联系" in zh
    assert "我们争取在12月8日（周二）17:30（北京时间）前为您解决" in zh


def test_a_time_that_is_not_known_leaves_its_sentence_out() -> None:
    def web(**changes: Any) -> str:
        return TEMPLATES.render(
            "acknowledgement", language="en", channel=Channel.WEB, facts=facts(**changes)
        ).text

    assert "contact you by" not in web(first_response_by=None)
    assert "We aim to resolve it by Tue 8 Dec" in web(first_response_by=None)
    no_resolution = web(resolution_by=None)
    assert "resolve" not in no_resolution
    assert "We will contact you by Fri 4 Dec" in no_resolution
    nothing = web(first_response_by=None, resolution_by=None)
    assert " by " not in nothing
    assert "We will keep you updated" in nothing
    sms = TEMPLATES.render("progress", language="zh", channel=Channel.SMS, facts=MINIMAL).text
    assert "预计" not in sms


def test_an_outcome_not_known_or_other_is_not_restated() -> None:
    plain = {
        TEMPLATES.render(
            "acknowledgement", language="en", channel=Channel.CHAT, facts=facts(expected_outcome=o)
        ).text
        for o in (None, ExpectedOutcome.OTHER)
    }
    assert plain == {
        "Hi Alex Morgan, thank you for getting in touch, and sorry for the trouble. Your "
        "case reference is 3f9a1c2e. We will contact you by Fri 4 Dec, 14:00. We aim to "
        "resolve it by Tue 8 Dec, 17:30."
    }


@pytest.mark.parametrize("outcome", list(ExpectedOutcome))
def test_every_outcome_reads_in_both_languages(outcome: ExpectedOutcome) -> None:
    for language in ("en", "zh"):
        text = TEMPLATES.render(
            "acknowledgement",
            language=language,
            channel=Channel.EMAIL,
            facts=facts(expected_outcome=outcome),
        ).text
        assert_tidy(text)


def test_an_email_greets_the_customer_and_signs_off() -> None:
    named = TEMPLATES.render("progress", language="en", channel=Channel.EMAIL, facts=facts())
    assert named.email_subject == "An update on your case 3f9a1c2e"
    assert named.text.startswith("Dear Alex Morgan,\n\nWe wanted to let you know")
    assert named.text.endswith("\n\nKind regards,\nCustomer Care")
    anonymous = TEMPLATES.render("progress", language="zh", channel=Channel.EMAIL, facts=MINIMAL)
    assert anonymous.email_subject == "您的问题（编号 3f9a1c2e）处理进展"
    assert anonymous.text.startswith("您好：\n\n跟您说一声")
    assert anonymous.text.endswith("\n\n客户服务团队")


def test_the_apology_says_sorry_and_gives_the_new_date() -> None:
    sms = TEMPLATES.render("apology", language="en", channel=Channel.SMS, facts=facts()).text
    assert sms == (
        "Case 3f9a1c2e: we are sorry, we have not resolved it by the date we gave you. "
        "We now expect to resolve it by Tue 8 Dec, 17:30."
    )
    zh = TEMPLATES.render("apology", language="zh", channel=Channel.SMS, facts=facts()).text
    assert zh == (
        "非常抱歉，您的问题（编号3f9a1c2e）没能按之前说好的时间解决。现预计12月8日 17:30前解决。"
    )


def test_the_promise_says_what_we_will_do_and_by_when() -> None:
    en = TEMPLATES.render("promise", language="en", channel=Channel.WEB, facts=facts()).text
    assert en.startswith(
        "About your case 3f9a1c2e: we will send you a replacement charger by "
        "Sun 6 Dec, 17:00 (Asia/Shanghai)."
    )
    zh = TEMPLATES.render(
        "promise", language="zh", channel=Channel.CHAT, facts=facts(promise_what="为您补发充电器。")
    ).text
    assert "我们会在12月6日 17:00前为您补发充电器。" in zh  # the agent's full stop is not doubled


def test_the_phone_text_reads_out_the_reference_and_the_time() -> None:
    text = TEMPLATES.render(
        "acknowledgement", language="en", channel=Channel.PHONE, facts=facts()
    ).text
    assert "3 f 9 a 1 c 2 e" in text
    assert "We will contact you by Friday 4 December at 2:00 pm." in text


# --- times in the customer's time zone ---------------------------------------------


def test_times_are_shown_in_the_customers_time_zone_across_a_dst_change() -> None:
    # New York moves to daylight time on Sunday 8 March 2026: noon is 17:00 UTC before,
    # 16:00 UTC after.
    new_york = facts(
        time_zone=NEW_YORK,
        first_response_by=datetime(2026, 3, 7, 17, 0, tzinfo=UTC),
        resolution_by=datetime(2026, 3, 9, 16, 0, tzinfo=UTC),
    )
    web = TEMPLATES.render(
        "acknowledgement", language="en", channel=Channel.WEB, facts=new_york
    ).text
    assert "We will contact you by Sat 7 Mar, 12:00 (America/New_York)." in web
    assert "We aim to resolve it by Mon 9 Mar, 12:00 (America/New_York)" in web
    zh = TEMPLATES.render(
        "acknowledgement", language="zh", channel=Channel.EMAIL, facts=new_york
    ).text
    assert "3月7日（周六）12:00（纽约时间）" in zh
    assert "3月9日（周一）12:00（纽约时间）" in zh
    sms = TEMPLATES.render(
        "acknowledgement", language="en", channel=Channel.SMS, facts=new_york
    ).text
    assert "by Sat 7 Mar, 12:00." in sms  # the zone is named for e-mail and web only
    assert "New_York" not in sms


def test_a_time_zone_without_a_name_of_its_own_is_shown_by_its_iana_name() -> None:
    chicago = facts(time_zone=ZoneInfo("America/Chicago"))
    zh = TEMPLATES.render("progress", language="zh", channel=Channel.WEB, facts=chicago).text
    assert "预计在12月8日（周二）03:30（America/Chicago）前解决。" in zh


def test_the_same_deadline_is_told_in_each_customers_own_local_time() -> None:
    deadline = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # New York leaves DST at 06:00 UTC

    def told(zone: ZoneInfo, language: str) -> str:
        f = facts(time_zone=zone, resolution_by=deadline)
        return TEMPLATES.render("progress", language=language, channel=Channel.SMS, facts=f).text

    assert told(SHANGHAI, "zh").endswith("预计11月1日 12:30前解决。")
    assert told(SHANGHAI, "en").endswith("We expect to resolve it by Sun 1 Nov, 12:30.")
    assert told(NEW_YORK, "en").endswith("We expect to resolve it by Sun 1 Nov, 00:30.")
    later = facts(time_zone=NEW_YORK, resolution_by=datetime(2026, 11, 1, 14, 0, tzinfo=UTC))
    text = TEMPLATES.render("progress", language="en", channel=Channel.SMS, facts=later).text
    assert text.endswith("by Sun 1 Nov, 09:00.")  # EST after the change: UTC-5


def test_a_facts_time_must_carry_its_time_zone() -> None:
    with pytest.raises(ValueError, match="resolution_by must carry a time zone"):
        NoticeFacts(reference="3f9a1c2e", time_zone=SHANGHAI, resolution_by=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="not a case reference"):
        NoticeFacts(reference="3f9a1c2e0", time_zone=SHANGHAI)


# --- SMS: one message ----------------------------------------------------------------


def test_gsm_text_fits_160_septets() -> None:
    assert sms_units("a" * 160) == ("gsm7", 160, 160)
    assert sms_units("a" * 160).fits
    assert not sms_units("a" * 161).fits
    assert sms_units("Café @ £5, Straße? ¿Sì! Ñandù\n").encoding == "gsm7"


def test_an_extension_character_counts_two_septets() -> None:
    assert sms_units("€" + "a" * 158) == ("gsm7", 160, 160)
    assert not sms_units("€" + "a" * 159).fits
    assert sms_units("[]{}^~|\\€") == ("gsm7", 18, 160)


def test_any_other_character_makes_it_ucs2_with_70_units() -> None:
    assert sms_units("a" * 69 + "中") == ("ucs2", 70, 70)
    assert not sms_units("a" * 70 + "中").fits
    assert sms_units("您好" * 35).fits
    assert sms_units("…").encoding == "ucs2"
    assert sms_units("ê").encoding == "ucs2"
    assert sms_units("😀" * 35) == ("ucs2", 70, 70)  # two UTF-16 units each
    assert not sms_units("😀" * 35 + "a").fits


def test_an_english_sms_with_english_facts_stays_gsm() -> None:
    for kind in KINDS:
        text = TEMPLATES.render(kind, language="en", channel=Channel.SMS, facts=facts()).text
        assert sms_units(text).encoding == "gsm7", text


def test_a_long_english_promise_is_cut_at_a_word_to_fill_one_gsm_sms() -> None:
    f = facts(promise_what=PROMISE_EN)
    text = TEMPLATES.render("promise", language="en", channel=Channel.SMS, facts=f).text
    units = sms_units(text)
    assert units.encoding == "gsm7"  # the ellipsis is three dots, not U+2026
    assert 140 <= units.units <= 160
    cut = text.removeprefix("Case 3f9a1c2e: we will ").split(GSM_ELLIPSIS)[0]
    assert PROMISE_EN.startswith(cut + " ")
    assert text.endswith("... by Sun 6 Dec, 17:00.")


def test_a_long_chinese_promise_is_cut_to_exactly_one_message() -> None:
    for language in ("zh", "en"):
        f = facts(promise_what=PROMISE_ZH)
        text = TEMPLATES.render("promise", language=language, channel=Channel.SMS, facts=f).text
        assert sms_units(text) == ("ucs2", 70, 70), text
        assert "…" in text


def test_a_long_name_is_cut_on_chat_and_the_message_still_fits() -> None:
    f = facts(customer_name="Alexandra " * 100, promise_what=PROMISE_EN)
    text = TEMPLATES.render("promise", language="en", channel=Channel.CHAT, facts=f).text
    assert len(text) <= 500
    name, rest = text.split(", about case 3f9a1c2e: we will ")
    assert name.startswith("Hi Alexandra Alexandra") and name.endswith("…")
    assert "send you a replacement charger" in rest


# --- a bad file ----------------------------------------------------------------------

Change = Callable[[dict[str, Any]], None]


def write(tmp_path: Path, change: Change) -> Path:
    document = copy.deepcopy(yaml.safe_load(DEFAULT_TEMPLATES.read_text(encoding="utf-8")))
    change(document)
    path = tmp_path / "notifications.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def texts(document: dict[str, Any], kind: str, language: str) -> dict[str, Any]:
    found: dict[str, Any] = document["templates"][kind][language]
    return found


def channels(document: dict[str, Any], kind: str, language: str) -> dict[str, str]:
    found: dict[str, str] = texts(document, kind, language)["channels"]
    return found


def test_the_default_file_loads_the_same_through_its_document(tmp_path: Path) -> None:
    copied = load_templates(write(tmp_path, lambda d: None))
    assert isinstance(copied, Templates)
    assert copied.render("promise", language="zh", channel=Channel.SMS, facts=facts()) == (
        TEMPLATES.render("promise", language="zh", channel=Channel.SMS, facts=facts())
    )


BAD_FILES: dict[str, tuple[Change, str]] = {
    "unknown kind": (
        lambda d: d["templates"].__setitem__("reminder", d["templates"]["progress"]),
        r"templates\.reminder\.\[key\]: Input should be 'acknowledgement', 'progress'",
    ),
    "missing kind": (
        lambda d: d["templates"].pop("apology"),
        r"templates needs every kind: apology missing",
    ),
    "template syntax": (
        lambda d: channels(d, "progress", "en").__setitem__("sms", "Case {{ reference }: hi"),
        r"templates\.progress\.en\.channels\.sms: Value error, line 1: unexpected '}'",
    ),
    "unknown filter": (
        lambda d: channels(d, "progress", "en").__setitem__("chat", "{{ reference | shout }}"),
        r"templates\.progress\.en\.channels\.chat: .*No filter named 'shout'",
    ),
    "unknown name": (
        lambda d: texts(d, "apology", "zh").__setitem__("text", "{{ refrence }}"),
        r"templates\.apology\.zh\.text: Value error, unknown name refrence",
    ),
    "sms too long": (
        lambda d: channels(d, "promise", "zh").__setitem__(
            "sms", channels(d, "promise", "zh")["sms"] + "如有任何变化，我们会及时告诉您。"
        ),
        r"templates\.promise\.zh\.channels\.sms \(promise/zh/sms\): too long for one SMS "
        r"with the longest facts, free text cut to its shortest: \d+ ucs2 units of 70",
    ),
    "sms that a name makes ucs2": (
        lambda d: channels(d, "progress", "en").__setitem__(
            "sms", "Hi {{ customer_name }}, case {{ reference }}: " + "still working on it. " * 5
        ),
        r"templates\.progress\.en\.channels\.sms \(progress/en/sms\): too long for one SMS",
    ),
    "social reply too long": (
        lambda d: channels(d, "apology", "en").__setitem__("social", "Sorry. " * 41),
        r"templates\.apology\.en\.channels\.social \(apology/en/social\): 286 characters, "
        r"more than limits\.social \(280\)",
    ),
    "missing default language": (
        lambda d: d.pop("default_language"),
        r"default_language: Field required",
    ),
    "default language without texts": (
        lambda d: d.__setitem__("default_language", "fr"),
        r"default_language 'fr' is not one of languages \(en, zh\)",
    ),
    "a language missing for a kind": (
        lambda d: d["templates"]["apology"].pop("zh"),
        r"templates\.apology: needs every language of languages, no other \(missing: zh",
    ),
    "public reply with the name": (
        lambda d: channels(d, "progress", "zh").__setitem__(
            "app_review", "{{ customer_name }}，问题 {{ reference }}"
        ),
        r"templates\.progress\.zh\.channels\.app_review \(progress/zh/app_review\): "
        r"a public reply must not show customer_name",
    ),
    "time outside if": (
        lambda d: channels(d, "progress", "en").__setitem__(
            "sms", "Case {{ reference }} by {{ resolution_by | when }}"
        ),
        r"templates\.progress\.en\.channels\.sms \(progress/en/sms\): when got no time",
    ),
    "unknown date format": (
        lambda d: texts(d, "apology", "en").__setitem__(
            "text",
            "{{ reference }}{% if resolution_by %}{{ resolution_by | when('long') }}{% endif %}",
        ),
        r"templates\.apology\.en\.text .*no date format 'long'",
    ),
    "unknown date field": (
        lambda d: d["languages"]["zh"]["dates"]["formats"].__setitem__("zoned", "{zon}"),
        r"languages\.zh\.dates: Value error, formats\.zoned: unknown field zon",
    ),
    "outcome without words": (
        lambda d: d["languages"]["en"]["outcomes"].pop("refund"),
        r"languages\.en: Value error, outcomes needs words for refund",
    ),
    "layout without the message": (
        lambda d: d["languages"]["en"]["layouts"].__setitem__("email", "Hello,"),
        r"languages\.en\.layouts\.email: Value error, a layout must place the message",
    ),
    "a limit for sms": (
        lambda d: d["limits"].__setitem__("sms", 320),
        r"limits\.sms: Extra inputs are not permitted",
    ),
    "subject too long": (
        lambda d: texts(d, "progress", "zh").__setitem__(
            "subject", "进展" * 72 + "{{ reference }}"
        ),
        r"templates\.progress\.zh\.text \(progress/zh/\w+\): the subject is 152 characters",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_fails_to_load_naming_the_entry(tmp_path: Path, case: str) -> None:
    change, message = BAD_FILES[case]
    path = write(tmp_path, change)
    with pytest.raises(ConfigError, match=message) as raised:
        load_templates(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_a_missing_file_fails_to_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_templates(tmp_path / "absent.yaml")
