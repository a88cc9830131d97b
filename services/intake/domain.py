"""Normalising what a channel posted into one Feedback: pure functions, no I/O.

Every channel adapter (``services.intake.channels``) turns its own format into the
arguments of :func:`assemble`, which derives the feedback id, detects the language and
builds the Feedback. The generic ``POST /v1/feedback`` body is :class:`FeedbackIn`.

What the customer asked for (an expected outcome, a time it is expected by) and the
customer's time zone come with every channel, optionally: :data:`OutcomeIn` and
:data:`ExpectedByIn` read them in the channels' models, :func:`expected_by_in_utc`
puts the time in UTC and :func:`assemble` refuses one before the feedback was received.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Annotated, Any

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError, to_json

from shared.contracts import (
    MAX_METADATA_DEPTH,
    Attachment,
    Channel,
    Customer,
    CustomerTier,
    ExpectedOutcome,
    Feedback,
    UtcDatetime,
    error_message,
)
from shared.envelope import derive_id

MAX_TEXT_CHARS = 20_000
MAX_SUBJECT_CHARS = 500
# How far ahead of intake's clock a source timestamp may be: clocks of phones, gateways
# and scrapers drift, time zones get mislabelled; further ahead is a wrong timestamp.
MAX_FUTURE_SKEW = timedelta(days=1)
# Nothing about a complaint happened before the Unix epoch, and the stores reckon back
# from a feedback's time (the router's linking window): such a timestamp is wrong.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
MAX_KEY_CHARS = 200
MAX_METADATA_BYTES = 64 * 1024


class Invalid(Exception):
    """Input that cannot become a Feedback; names the field (dotted path) and the reason."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Source:
    """What an adapter knows besides the message: the time it arrived and what the
    integration that posted it configured."""

    now: datetime
    idempotency_key: str | None = None
    region: str | None = None  # phone numbers without a country code belong to this region
    timezone: tzinfo | None = None  # source timestamps without an offset are in this zone
    max_text_chars: int = MAX_TEXT_CHARS


# --- what the customer asked for -------------------------------------------------------

OUTCOMES = ", ".join(outcome.value for outcome in ExpectedOutcome)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def expected_outcome_of(value: str | None) -> ExpectedOutcome | None:
    """An expected outcome as a channel gives it: trimmed, in any case; blank is none.
    A ValueError naming the outcomes there are for anything else."""
    if value is None:
        return None
    wanted = value.strip().lower()
    if not wanted:
        return None
    try:
        return ExpectedOutcome(wanted)
    except ValueError:
        raise ValueError(f"unknown expected outcome {value.strip()!r}: one of {OUTCOMES}") from None


def _outcome(value: Any) -> Any:
    # Strings are read here; anything else is left to the enum, whose error lists them too.
    if not isinstance(value, str):
        return value
    try:
        return expected_outcome_of(value)
    except ValueError as exc:
        raise PydanticCustomError("expected_outcome", "{reason}", {"reason": str(exc)}) from None


def end_of_day_if_date(value: Any) -> Any:
    """A date alone (``2026-03-20``, what a form's date input sends) as the last second
    of that day, still without an offset: "by the 20th" means before the 20th is over."""
    if isinstance(value, str) and _DATE_ONLY.match(value.strip()):
        try:
            day = datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # not a date (2026-02-30): the datetime's own error says so
        return datetime.combine(day, time(23, 59, 59))
    return value


# The expected outcome of a channel's model: trimmed and case-insensitive, blank is none.
OutcomeIn = Annotated[ExpectedOutcome | None, BeforeValidator(_outcome)]
# The expected-by time of a channel's model: a date alone is the end of that day; without
# an offset it is read as the channel's other timestamps are (see expected_by_in_utc).
ExpectedByIn = Annotated[datetime | None, BeforeValidator(end_of_day_if_date)]


class FeedbackIn(BaseModel):
    """The generic feedback a channel integration posts to ``POST /v1/feedback``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "web",
                    "external_id": "form-20260311-0042",
                    "customer": {
                        "id": "C-1001",
                        "email": "li.wei@example.com",
                        "tier": "vip",
                        "time_zone": "Asia/Shanghai",
                    },
                    "text": "The washing machine I bought last week leaks water everywhere.",
                    "received_at": "2026-03-11T09:30:00+08:00",
                    "expected_outcome": "repair",
                    "expected_by": "2026-03-14T18:00:00+08:00",
                }
            ]
        },
    )

    channel: Channel
    customer: Customer
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="What the customer said")
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The channel's own message id; re-posting it yields the same feedback id",
    )
    received_at: UtcDatetime | None = Field(
        default=None, description="When the channel received it; with a time zone. Default: now"
    )
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)
    expected_outcome: OutcomeIn = Field(
        default=None,
        description=f"What the customer asked for: {OUTCOMES} (any case)",
    )
    expected_by: UtcDatetime | None = Field(
        default=None,
        description="By when the customer expects it; with a time zone, not before received_at",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        stripped = value.strip()
        if not has_visible_character(stripped):
            raise ValueError("text must contain a visible character, not only white space")
        return stripped


# --- what can be stored ---------------------------------------------------------------

# Letters that render as nothing (Hangul fillers, the blank Braille pattern).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# White space, controls, format characters (zero-width spaces and joiners, BOM, word
# joiner, bidi controls, soft hyphen, tags) and marks without a base show nothing.
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Mn", "Me", "Mc"})


def has_visible_character(text: str) -> bool:
    """Whether the text shows anything at all. Characters this Python does not know yet
    (a new emoji) count as visible."""
    for char in text:  # the first character decides for almost every text
        if char not in _BLANK_LETTERS and unicodedata.category(char) not in _INVISIBLE_CATEGORIES:
            return True
    return False


def key_problem(key: str) -> str | None:
    """Why intake refuses a key of metadata (or a form field's name), if it does."""
    if "\x00" in key:
        return "a key may not contain NUL characters"
    if key.startswith("$"):
        return "a key may not start with $ (MongoDB reserves such names)"
    if len(key) > MAX_KEY_CHARS:
        return f"a key is at most {MAX_KEY_CHARS} characters"
    return None


def check_metadata(metadata: Mapping[str, Any], field: str = "metadata") -> None:
    """Refuse metadata MongoDB could not store as it is, naming the key or value at
    fault. Integers beyond 64 bits are not refused: the contract keeps them as strings."""
    if not metadata:
        return
    found = _metadata_problem(metadata, 1)
    if found is not None:
        path, message = found
        raise Invalid(".".join([field, *reversed(path)]), message)
    if len(to_json(metadata)) > MAX_METADATA_BYTES:
        raise Invalid(field, f"is at most {MAX_METADATA_BYTES} bytes as JSON")


def _metadata_problem(value: Any, level: int) -> tuple[list[str], str] | None:
    """(the path to the problem, innermost first; the reason), or None."""
    if isinstance(value, dict | list):
        if level > MAX_METADATA_DEPTH:
            return [], f"metadata nests at most {MAX_METADATA_DEPTH} levels of objects and arrays"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                reason = key_problem(key)
                if reason is not None:
                    return [key], reason
            found = _metadata_problem(item, level + 1)
            if found is not None:
                found[0].append(str(key))
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return [], "is not a finite number"
    return None


# --- language -----------------------------------------------------------------------


# Runs rather than single characters: one match per run is much cheaper to count.
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df]+")
_LATIN = re.compile("[A-Za-z]+")
_LETTER = re.compile(r"[^\W\d_]+")
# Enough text to tell the language; counting further only costs time.
_LANGUAGE_SAMPLE = 4_000


def detect_language(text: str) -> str:
    """zh, en or other, from the share of Han characters and Latin letters."""
    sample = text[:_LANGUAGE_SAMPLE]
    if sample.isascii():
        # ASCII's only letters are Latin ones, so counting would say "en" for any letter
        # at all: decided without listing every letter first.
        return "en" if _LATIN.search(sample) else "other"
    return counted_language(sample)


def counted_language(sample: str) -> str:
    """The language by counting Han characters, Latin letters and other letters."""
    han = _count(_HAN, sample)
    latin = _count(_LATIN, sample)
    # One Han character carries about as much as a short English word. Other letters are
    # at most the characters that are neither Han nor Latin: when Han outweighs even
    # that many, counting them cannot change the answer.
    if han and han * 4 >= latin and han >= len(sample) - han - latin:
        return "zh"
    other = max(0, _count(_LETTER, sample) - han - latin)
    if han + latin + other == 0:
        return "other"
    if han * 4 >= latin and han >= other:
        return "zh"
    if latin > other:
        return "en"
    return "other"


def _count(runs: re.Pattern[str], text: str) -> int:
    """How many characters of ``text`` the pattern's runs cover."""
    return sum(map(len, runs.findall(text)))


_LANGUAGE_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*$")


def language_of(hint: str | None, text: str) -> str:
    """The channel's language tag reduced to its ISO 639 code (``zh-CN`` is ``zh``), or
    the language detected from the text when the channel gave none that is usable."""
    if hint:
        match = _LANGUAGE_TAG.match(hint.strip())
        if match:
            return match.group(1).lower()
    return detect_language(text)


# --- identity and time --------------------------------------------------------------


def feedback_id(
    channel: Channel,
    external_id: str | None,
    idempotency_key: str | None,
    fingerprint: Callable[[], str],
) -> str:
    """Deterministic id: the same channel message always maps to the same feedback.

    The channel's message id wins, then an Idempotency-Key header, then a fingerprint
    of the content (customer, text, received_at) for posts that carry neither; it is
    computed only then (it hashes the whole normalised text).
    """
    if external_id:
        return derive_id("feedback", channel.value, "external", external_id)
    if idempotency_key:
        return derive_id("feedback", channel.value, "idempotency-key", idempotency_key)
    return derive_id("feedback", channel.value, "content", fingerprint())


def content_fingerprint(customer_key: str, text: str, received_at: datetime) -> str:
    normalised = unicodedata.normalize("NFKC", text)
    raw = "\x1f".join((customer_key, normalised, received_at.isoformat()))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _in_utc(value: datetime, source: Source, field: str) -> datetime:
    """A timestamp in UTC; without an offset it is in the integration's time zone, and
    without one configured it is refused rather than guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        if source.timezone is None:
            raise Invalid(
                field, "has no time zone offset and the integration configures no timezone"
            )
        value = value.replace(tzinfo=source.timezone)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise Invalid(field, "is out of range") from exc


def to_utc(value: datetime, source: Source, field: str) -> datetime:
    """A source timestamp in UTC. A timestamp without an offset is in the integration's
    time zone; without one configured it is refused rather than guessed. One more than
    :data:`MAX_FUTURE_SKEW` ahead of ``source.now``, or before 1970, is refused."""
    utc = _in_utc(value, source, field)
    if utc - source.now > MAX_FUTURE_SKEW:
        raise Invalid(field, "is more than a day in the future")
    if utc < EARLIEST_TIMESTAMP:
        raise Invalid(field, "is before 1970-01-01")
    return utc


def expected_by_in_utc(value: datetime | None, source: Source, field: str) -> datetime | None:
    """The time the customer expects something by, in UTC, read as the channel's other
    timestamps are (without an offset: in the integration's time zone, or refused). It
    may be any time ahead; :func:`assemble` refuses one before the feedback was received."""
    return None if value is None else _in_utc(value, source, field)


def e164(number: str, region: str | None, field: str) -> str:
    """A phone number in E.164 (+8613800138000); national numbers need the region."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if region else " (give it with its country code, e.g. +86...)"
        raise Invalid(field, f"is not a phone number{hint}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise Invalid(field, "is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def build_customer(
    source: Source,
    *,
    id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    handle: str | None = None,
    name: str | None = None,
    tier: CustomerTier | str | None = None,
    time_zone: str | None = None,
    field: str = "customer",
    names: Mapping[str, str] | None = None,
) -> Customer:
    """The customer as the channel knows them: phone in E.164, blank values dropped, the
    time zone an IANA name.

    Errors name ``<field>.<attribute>``, or the channel's own field name from ``names``
    (e.g. ``{"phone": "caller_number"}``)."""

    def name_of(attribute: str) -> str:
        if names and attribute in names:
            return names[attribute]
        return f"{field}.{attribute}" if field else attribute

    values: dict[str, Any] = {
        "id": _blank_to_none(id),
        "email": _blank_to_none(email),
        "handle": _blank_to_none(handle),
        "name": _blank_to_none(name),
        "time_zone": _blank_to_none(time_zone),
    }
    if values["email"] is not None and not _looks_like_email(values["email"]):
        raise Invalid(name_of("email"), "is not an e-mail address")
    phone = _blank_to_none(phone)
    if phone is not None:
        values["phone"] = e164(phone, source.region, name_of("phone"))
    if tier:
        values["tier"] = tier
    try:
        return Customer.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        raise Invalid(name_of(loc) if loc else field or "(body)", error_message(first)) from exc


def already_normal(customer: Customer) -> bool:
    """Whether :func:`build_customer` would give this customer back unchanged: no phone
    number to put in E.164, nothing blank or padded, an e-mail that looks like one. Then
    the validated customer is kept as it is."""
    if customer.phone is not None:
        return False
    for value in (customer.id, customer.email, customer.handle, customer.name, customer.time_zone):
        if value is not None and (not value or value != value.strip()):
            return False
    return customer.email is None or _looks_like_email(customer.email)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and " " not in value)


# --- text ---------------------------------------------------------------------------

_BLANK_LINES = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """Line endings unified, trailing spaces and runs of blank lines removed."""
    lines = (line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def join_texts(parts: Iterable[str]) -> str:
    return "\n".join(part.strip() for part in parts if part and part.strip())


# --- the one normalised Feedback ----------------------------------------------------


def assemble(
    source: Source,
    *,
    channel: Channel,
    customer: Customer,
    text: str,
    received_at: datetime | None = None,
    external_id: str | None = None,
    subject: str | None = None,
    language: str | None = None,
    attachments: Iterable[Attachment] = (),
    metadata: Mapping[str, Any] | None = None,
    text_field: str = "text",
    expected_outcome: ExpectedOutcome | None = None,
    expected_by: datetime | None = None,
    expected_by_field: str = "expected_by",
) -> Feedback:
    """One Feedback; ``received_at`` and ``expected_by`` must already be in UTC (see
    :func:`to_utc`, :func:`expected_by_in_utc`).

    Text longer than the limit is cut and flagged ``metadata.text_truncated`` rather
    than refused, so that a long mail or call is never lost. An ``expected_by`` before
    the feedback was received is refused, naming ``expected_by_field``.
    """
    text = text.strip()
    if not has_visible_character(text):
        raise Invalid(text_field, "there is no text from the customer")
    extra: dict[str, Any] = dict(metadata or {})
    if len(text) > source.max_text_chars:
        text = text[: source.max_text_chars].rstrip()
        extra["text_truncated"] = True
    ingested = source.now.astimezone(UTC)
    received = received_at or ingested
    check_expected_by(expected_by, received, expected_by_field)
    customer_key = customer.key  # a SHA-256 each time it is read
    fid = feedback_id(
        channel,
        external_id,
        source.idempotency_key,
        lambda: content_fingerprint(customer_key, text, received),
    )
    return Feedback(
        feedback_id=fid,
        channel=channel,
        external_id=external_id,
        customer=customer,
        customer_key=customer_key,
        text=text,
        subject=_shown_subject(subject),
        language=language_of(language, text),
        received_at=received,
        ingested_at=ingested,
        attachments=list(attachments),
        metadata=extra,
        expected_outcome=expected_outcome,
        expected_by=expected_by,
    )


def _shown_subject(subject: str | None) -> str | None:
    """The subject trimmed and cut to its limit; none when it shows nothing."""
    subject = _blank_to_none(subject)
    if subject is None or not has_visible_character(subject):
        return None
    return subject[:MAX_SUBJECT_CHARS]


def check_expected_by(expected_by: datetime | None, received_at: datetime, field: str) -> None:
    """Refuse a time the customer expects something by that is before the feedback was
    received: a wrong date (or the wrong offset), not a wish."""
    if expected_by is not None and expected_by < received_at:
        raise Invalid(
            field,
            "is before the feedback was received "
            f"({received_at.isoformat().replace('+00:00', 'Z')})",
        )


def normalise(
    item: FeedbackIn,
    *,
    now: datetime,
    idempotency_key: str | None = None,
    region: str | None = None,
) -> Feedback:
    """One Feedback from a generic post, timestamps in UTC, the phone in E.164."""
    return normalise_from(item, Source(now=now, idempotency_key=idempotency_key, region=region))


def normalise_from(item: FeedbackIn, source: Source) -> Feedback:
    """:func:`normalise` with what the integration knows besides the post in one
    :class:`Source` (the same for every item of a batch without an Idempotency-Key)."""
    given = item.customer
    customer = (
        given
        if already_normal(given)
        else build_customer(
            source,
            id=given.id,
            email=given.email,
            phone=given.phone,
            handle=given.handle,
            name=given.name,
            tier=given.tier,
            time_zone=given.time_zone,
        )
    )
    received_at = to_utc(item.received_at, source, "received_at") if item.received_at else None
    check_metadata(item.metadata)
    return assemble(
        source,
        channel=item.channel,
        customer=customer,
        text=item.text,
        received_at=received_at,
        external_id=item.external_id,
        subject=item.subject,
        language=item.language,
        attachments=item.attachments,
        metadata=item.metadata,
        expected_outcome=item.expected_outcome,
        expected_by=expected_by_in_utc(item.expected_by, source, "expected_by"),
    )
