"""Customer notifications (customer.notify): the texts of the templates file
(notifications.yaml) rendered for one case in the customer's language for their
channel, every time in the customer's time zone. Pure: no I/O but reading the file.

The file is checked when it is loaded: every template compiles and uses only the
facts there are, public replies (social, app_review) never show the customer's
details, and every message fits its channel (an SMS one message) with the longest
facts there can be once the free text (the customer's name, the promise) is cut to
its shortest. So rendering always fits: the free text is cut, with an ellipsis, just
as much as the channel needs and no more."""

from __future__ import annotations

import functools
import itertools
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args
from zoneinfo import ZoneInfo, available_timezones

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.config import ConfigError, load_yaml
from shared.contracts import Channel, ExpectedOutcome, NotificationKind, check_time_zone

DEFAULT_TEMPLATES = Path(__file__).with_name("notifications.yaml")

KINDS: tuple[NotificationKind, ...] = get_args(NotificationKind)
PUBLIC_CHANNELS = frozenset({Channel.SOCIAL, Channel.APP_REVIEW})

# --- SMS: one message ---------------------------------------------------------------
# GSM 03.38: the basic table (one septet each; ESC is not a character) and the
# extension table (ESC plus one, so two septets each). A text with any other
# character goes as UCS-2: 16 bits a UTF-16 code unit.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM_LIMIT = 160
UCS2_LIMIT = 70

SmsEncoding = Literal["gsm7", "ucs2"]


class SmsUnits(NamedTuple):
    """What a text costs as one SMS: its encoding, its units (septets for GSM 7-bit,
    UTF-16 code units for UCS-2) and the most one message holds in that encoding."""

    encoding: SmsEncoding
    units: int
    limit: int

    @property
    def fits(self) -> bool:
        return self.units <= self.limit


def sms_units(text: str) -> SmsUnits:
    """The encoding, length and limit of ``text`` as a single (unconcatenated) SMS."""
    if all(c in GSM_BASIC or c in GSM_EXTENSION for c in text):
        return SmsUnits("gsm7", sum(2 if c in GSM_EXTENSION else 1 for c in text), GSM_LIMIT)
    return SmsUnits("ucs2", len(text.encode("utf-16-le")) // 2, UCS2_LIMIT)


# --- the facts of one message -------------------------------------------------------

REFERENCE_LENGTH = 8
TIMES = ("first_response_by", "resolution_by", "promise_due")
# Free text (written by the customer or an agent) is cut to fit the channel, but never
# below this many characters; the file is checked with free text cut this short.
FREE_TEXT = ("customer_name", "promise_what")
SHORTEST = {"customer_name": 10, "promise_what": 10}
ELLIPSIS = "…"
GSM_ELLIPSIS = "..."  # U+2026 is not in GSM 03.38: it would make the SMS UCS-2


@dataclass(frozen=True)
class NoticeFacts:
    """What a message may say about the case; None leaves that sentence out."""

    reference: str
    time_zone: ZoneInfo
    customer_name: str | None = None
    first_response_by: datetime | None = None
    resolution_by: datetime | None = None
    promise_what: str | None = None
    promise_due: datetime | None = None
    expected_outcome: ExpectedOutcome | None = None

    def __post_init__(self) -> None:
        # The file is checked with references this long, of characters one septet each.
        if not 1 <= len(self.reference) <= REFERENCE_LENGTH or not all(
            c in GSM_BASIC and not c.isspace() for c in self.reference
        ):
            raise ValueError(f"{self.reference!r} is not a case reference (1 to 8 characters)")
        for name in TIMES:
            at = getattr(self, name)
            if at is not None and at.utcoffset() is None:
                raise ValueError(f"{name} must carry a time zone")


@dataclass(frozen=True)
class Rendered:
    """A message ready to send: the template it came from (<kind>/<language>/<channel>),
    the language it is in (after falling back) and, for e-mail, its subject."""

    template: str
    language: str
    email_subject: str | None
    text: str


# --- the file -----------------------------------------------------------------------

FACT_NAMES = frozenset({"reference", "expected_outcome", *TIMES, *FREE_TEXT})
PRIVATE_NAMES = frozenset({"customer_name", "promise_what", "expected_outcome"})
FORMAT_FIELDS = frozenset(
    {"weekday", "weekday_short", "day", "month", "month_short", "month_number", "year"}
    | {"time", "hour", "hour12", "minute", "period", "zone"}
)


def _environment(when: Callable[..., str]) -> ImmutableSandboxedEnvironment:
    # Plain text, so nothing is escaped; a name no fact has fails instead of vanishing.
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["spaced"] = _spaced
    return env


def _spaced(value: object) -> str:
    """A reference as a voice reads it out: one character at a time."""
    return " ".join(str(value))


def _no_dates(at: datetime | None, style: str = "short") -> str:
    raise AssertionError("only compiled, never rendered")


_SYNTAX = _environment(_no_dates)


@functools.lru_cache(maxsize=1024)
def _names(source: str) -> frozenset[str]:
    """The names a template uses; a ValueError saying where when it does not compile."""
    try:
        ast = _SYNTAX.parse(source)
        _SYNTAX.from_string(source)  # unknown filters only show when compiled
    except TemplateSyntaxError as exc:
        raise ValueError(f"line {exc.lineno}: {exc.message}") from exc
    except TemplateError as exc:
        raise ValueError(str(exc)) from exc
    return frozenset(meta.find_undeclared_variables(ast))


def _check_message(source: str) -> str:
    unknown = _names(source) - FACT_NAMES
    if unknown:
        raise ValueError(
            f"unknown name {', '.join(sorted(unknown))}; a message may use "
            + ", ".join(sorted(FACT_NAMES))
        )
    return source


def _check_layout(source: str) -> str:
    names = _names(source)
    if "body" not in names:
        raise ValueError("a layout must place the message: {{ body }}")
    unknown = names - FACT_NAMES - {"body"}
    if unknown:
        raise ValueError(
            f"unknown name {', '.join(sorted(unknown))}; a layout may use body, "
            + ", ".join(sorted(FACT_NAMES))
        )
    return source


MessageText = Annotated[str, Field(min_length=1), AfterValidator(_check_message)]
LayoutText = Annotated[str, Field(min_length=1), AfterValidator(_check_layout)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateWords(_Strict):
    """How one language writes a date: its words and named formats (str.format
    patterns over FORMAT_FIELDS; ``short`` is the one ``when`` uses by default)."""

    weekdays: tuple[str, str, str, str, str, str, str]  # Monday first
    weekdays_short: tuple[str, str, str, str, str, str, str]
    months: tuple[str, str, str, str, str, str, str, str, str, str, str, str]
    months_short: tuple[str, str, str, str, str, str, str, str, str, str, str, str]
    periods: tuple[str, str] = ("am", "pm")
    formats: dict[str, str]
    zone_names: dict[Annotated[str, AfterValidator(check_time_zone)], str] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _formats_format(self) -> DateWords:
        if "short" not in self.formats:
            raise ValueError("formats needs short, the format when uses by default")
        sample = datetime(2030, 12, 6, 14, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
        for name, pattern in self.formats.items():
            try:
                fields = {field for _, field, _, _ in string.Formatter().parse(pattern) if field}
                if not fields <= FORMAT_FIELDS:
                    raise ValueError(
                        f"unknown field {', '.join(sorted(fields - FORMAT_FIELDS))}; "
                        f"fields: {', '.join(sorted(FORMAT_FIELDS))}"
                    )
                format_date(sample, self, name)
            except (ValueError, KeyError, IndexError) as exc:
                raise ValueError(f"formats.{name}: {exc}") from exc
        return self


class LanguageWords(_Strict):
    dates: DateWords
    outcomes: dict[ExpectedOutcome, str] = Field(
        description="What the customer asked for, as the messages restate it ('' not restated)"
    )
    layouts: dict[Channel, LayoutText] = Field(
        default_factory=dict, description="Wraps every kind's message on that channel"
    )

    @model_validator(mode="after")
    def _every_outcome(self) -> LanguageWords:
        missing = [o.value for o in ExpectedOutcome if o not in self.outcomes]
        if missing:
            raise ValueError(f"outcomes needs words for {', '.join(missing)}")
        return self


class KindTexts(_Strict):
    subject: MessageText = Field(description="The e-mail subject line")
    text: MessageText = Field(description="The message on every channel without its own")
    channels: dict[Channel, MessageText] = Field(default_factory=dict)


class Limits(_Strict):
    """The longest message per channel, in characters (an SMS is one message, counted
    by sms_units: it has no limit to set)."""

    web: int = Field(default=2000, ge=1)
    email: int = Field(default=4000, ge=1)
    phone: int = Field(default=1000, ge=1)
    chat: int = Field(default=500, ge=1)
    social: int = Field(default=280, ge=1)
    app_review: int = Field(default=280, ge=1)
    email_subject: int = Field(default=150, ge=1)

    def of(self, channel: Channel) -> int:
        limit: int = getattr(self, channel.value)
        return limit


LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]


class TemplatesFile(_Strict):
    default_language: LanguageCode
    limits: Limits = Limits()
    languages: dict[LanguageCode, LanguageWords]
    templates: dict[NotificationKind, dict[LanguageCode, KindTexts]]

    @model_validator(mode="after")
    def _complete(self) -> TemplatesFile:
        if self.default_language not in self.languages:
            raise ValueError(
                f"default_language {self.default_language!r} is not one of languages "
                f"({', '.join(self.languages) or 'none'})"
            )
        missing = [kind for kind in KINDS if kind not in self.templates]
        if missing:
            raise ValueError(f"templates needs every kind: {', '.join(missing)} missing")
        for kind, by_language in self.templates.items():
            lacking = [lang for lang in self.languages if lang not in by_language]
            extra = [lang for lang in by_language if lang not in self.languages]
            if lacking or extra:
                raise ValueError(
                    f"templates.{kind}: needs every language of languages, no other "
                    f"(missing: {', '.join(lacking) or '-'}; unknown: {', '.join(extra) or '-'})"
                )
        return self


# --- dates --------------------------------------------------------------------------


@functools.cache
def _longest_zone() -> str:
    """The longest IANA time zone name there is."""
    return max(sorted(available_timezones()), key=len, default="UTC")


def zone_label(at: datetime, words: DateWords) -> str:
    """How a message names the time zone of ``at``: the language's own name for it,
    else its IANA name, else (a name longer than any IANA zone's) its UTC offset."""
    key = str(getattr(at.tzinfo, "key", None) or "")
    if key in words.zone_names:
        return words.zone_names[key]
    if key and len(key) <= len(_longest_zone()):
        return key
    offset = at.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}" if offset not in ("", "+0000") else "UTC"


def format_date(at: datetime | None, words: DateWords, style: str = "short") -> str:
    """``at`` (in its own time zone) written in one of the language's formats."""
    if at is None:
        raise ValueError("when got no time: a time may be none, so say it inside {% if %}")
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ValueError(f"when needs a time with its time zone, not {at!r}")
    pattern = words.formats.get(style)
    if pattern is None:
        raise ValueError(f"no date format {style!r}; formats: {', '.join(words.formats)}")
    return pattern.format(
        weekday=words.weekdays[at.weekday()],
        weekday_short=words.weekdays_short[at.weekday()],
        day=at.day,
        month=words.months[at.month - 1],
        month_short=words.months_short[at.month - 1],
        month_number=at.month,
        year=at.year,
        time=f"{at:%H:%M}",
        hour=at.hour,
        hour12=(at.hour - 1) % 12 + 1,
        minute=f"{at:%M}",
        period=words.periods[at.hour >= 12],
        zone=zone_label(at, words),
    )


def _when(words: DateWords) -> Callable[..., str]:
    """The templates' ``when`` filter for one language."""

    def when(at: datetime | None, style: str = "short") -> str:
        return format_date(at, words, style)

    return when


# --- rendering ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """The templates of one kind, language and channel."""

    name: str  # kind/language/channel
    where: str  # the entry of the file its message comes from
    message: Template
    layout: Template | None
    subject: Template
    names: frozenset[str]  # the facts it uses


@dataclass(frozen=True)
class _Draft:
    text: str
    subject: str


@dataclass(frozen=True)
class _Drawer:
    """Draws one message from its facts, with the free text cut to ``cap`` characters
    (never below its shortest; None: not cut), a cut text ending in ``ellipsis``."""

    entry: _Entry
    context: dict[str, Any]
    free: dict[str, str | None]

    @property
    def longest(self) -> int:
        return max((len(text) for text in self.free.values() if text), default=0)

    def draw(self, cap: int | None, ellipsis: str = ELLIPSIS) -> _Draft:
        values = dict(self.context)
        for name, text in self.free.items():
            if text is not None and cap is not None:
                text = _cut(text, max(cap, SHORTEST[name]), ellipsis)
            values[name] = text
        text = self.entry.message.render(values)
        if self.entry.layout is not None:
            text = self.entry.layout.render({**values, "body": _tidy(text)})
        return _Draft(_tidy(text), " ".join(self.entry.subject.render(values).split()))


class _Unfit(ValueError):
    """A template that fails, or does not fit its channel, with the longest facts."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (Cc)


def _inline(text: str | None, *, trailing: str = "") -> str | None:
    """Free text as it goes inside a sentence: one line, no control characters, no
    final full stop (the sentence has its own)."""
    if text is None:
        return None
    return " ".join(_CONTROL.sub(" ", text).split()).rstrip(trailing + " ") or None


def _cut(text: str, keep: int, ellipsis: str) -> str:
    """``text`` in at most ``keep`` characters and the ellipsis: at the end of a word
    when one ends in the second half (text with spaces between its words)."""
    if len(text) <= keep:
        return text
    kept = text[:keep]
    if not text[keep].isspace():
        space = kept.rfind(" ")
        if space > keep // 2:
            kept = kept[:space]
    return kept.rstrip() + ellipsis


_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    """The message without what left-out sentences leave behind: runs of spaces,
    trailing spaces, more than one empty line, empty lines at either end."""
    lines = [_SPACES.sub(" ", line.rstrip()) for line in text.strip().splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines))


class Templates:
    """The checked templates file: renders each kind of message."""

    def __init__(self, document: TemplatesFile) -> None:
        self._document = document
        self._environments = {
            lang: _environment(_when(words.dates)) for lang, words in document.languages.items()
        }
        self._entries = {
            (kind, lang, channel): self._entry(kind, lang, channel)
            for kind in KINDS
            for lang in document.languages
            for channel in Channel
        }
        self._longest = {
            lang: _longest_facts(words.dates) for lang, words in document.languages.items()
        }
        for entry in self._entries.values():
            self._check(entry)

    @property
    def default_language(self) -> str:
        return self._document.default_language

    def languages(self) -> tuple[str, ...]:
        return tuple(self._document.languages)

    def language_for(self, language: str) -> str:
        """The language a message is written in: ``language`` (or its primary subtag,
        zh for zh-CN) when the file has it, else the default language."""
        for candidate in (language, re.split(r"[-_]", language.strip().lower())[0]):
            if candidate in self._document.languages:
                return candidate
        return self._document.default_language

    def render(
        self, kind: NotificationKind, *, language: str, channel: Channel, facts: NoticeFacts
    ) -> Rendered:
        lang = self.language_for(language)
        entry = self._entries[kind, lang, Channel(channel)]
        draft = self._fit(entry, self._drawer(entry, facts))
        if draft is None:  # only facts beyond those checked at load (see NoticeFacts)
            raise ValueError(f"{entry.name}: the message does not fit {channel}")
        subject = draft.subject if channel == Channel.EMAIL else None
        return Rendered(entry.name, lang, subject, draft.text)

    def _entry(self, kind: NotificationKind, lang: str, channel: Channel) -> _Entry:
        texts = self._document.templates[kind][lang]
        own = channel in texts.channels
        source = texts.channels[channel] if own else texts.text
        where = f"templates.{kind}.{lang}." + (f"channels.{channel}" if own else "text")
        layout = self._document.languages[lang].layouts.get(channel)
        if layout is not None:
            where += f" in languages.{lang}.layouts.{channel}"
        name = f"{kind}/{lang}/{channel}"
        shown = _names(source) | (_names(layout) if layout else frozenset())
        if channel in PUBLIC_CHANNELS and shown & PRIVATE_NAMES:
            raise _Unfit(
                f"{where} ({name}): a public reply must not show "
                + ", ".join(sorted(shown & PRIVATE_NAMES))
            )
        env = self._environments[lang]
        return _Entry(
            name=name,
            where=where,
            message=env.from_string(source),
            layout=env.from_string(layout) if layout else None,
            subject=env.from_string(texts.subject),
            names=shown | _names(texts.subject),
        )

    def _drawer(self, entry: _Entry, facts: NoticeFacts) -> _Drawer:
        lang = entry.name.split("/")[1]
        outcomes = self._document.languages[lang].outcomes
        context: dict[str, Any] = {
            name: None if at is None else at.astimezone(facts.time_zone)
            for name in TIMES
            for at in (getattr(facts, name),)
        }
        context["reference"] = facts.reference
        context["expected_outcome"] = (
            outcomes[facts.expected_outcome] or None if facts.expected_outcome else None
        )
        free = {
            "customer_name": _inline(facts.customer_name),
            "promise_what": _inline(facts.promise_what, trailing=".。,，;；、"),
        }
        return _Drawer(entry, context, free)

    def _fits(self, entry: _Entry, draft: _Draft) -> bool:
        limits = self._document.limits
        if len(draft.subject) > limits.email_subject:
            return False
        channel = Channel(entry.name.rsplit("/", 1)[1])
        if channel == Channel.SMS:
            return sms_units(draft.text).fits
        return len(draft.text) <= limits.of(channel)

    def _fit(self, entry: _Entry, drawer: _Drawer) -> _Draft | None:
        """The message with the free text kept as long as the channel allows."""
        whole = drawer.draw(None)
        if self._fits(entry, whole):
            return whole
        best: tuple[int, _Draft] | None = None
        ellipses = (ELLIPSIS, GSM_ELLIPSIS) if entry.name.endswith("/sms") else (ELLIPSIS,)
        for ellipsis in ellipses:
            found = self._longest_cut(
                entry, functools.partial(drawer.draw, ellipsis=ellipsis), drawer.longest
            )
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        return None if best is None else best[1]

    def _longest_cut(
        self, entry: _Entry, draw: Callable[[int], _Draft], longest: int
    ) -> tuple[int, _Draft] | None:
        # Longer free text never makes a message shorter, nor its SMS encoding roomier:
        # the largest cap that fits is found by halving.
        shortest = draw(0)
        if not self._fits(entry, shortest):
            return None
        low, high, best = 0, longest - 1, (0, shortest)
        while low < high:
            middle = (low + high + 1) // 2
            draft = draw(middle)
            if self._fits(entry, draft):
                low, best = middle, (middle, draft)
            else:
                high = middle - 1
        return best

    def _check(self, entry: _Entry) -> None:
        """Every template renders, and fits, with the longest facts (free text cut to
        its shortest) and every combination of facts left out."""
        lang = entry.name.split("/")[1]
        for facts in (
            variant
            for longest in self._longest[lang]
            for variant in _left_out(longest, entry.names)
        ):
            try:
                draft = self._drawer(entry, facts).draw(0)
            except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
                raise _Unfit(f"{entry.where} ({entry.name}): {exc}") from exc
            if not self._fits(entry, draft):
                raise _Unfit(f"{entry.where} ({entry.name}): {self._too_long(entry, draft)}")

    def _too_long(self, entry: _Entry, draft: _Draft) -> str:
        cut = "with the longest facts, free text cut to its shortest"
        if len(draft.subject) > self._document.limits.email_subject:
            return (
                f"the subject is {len(draft.subject)} characters, more than "
                f"limits.email_subject ({self._document.limits.email_subject}) {cut}: "
                f"{draft.subject!r}"
            )
        if entry.name.endswith("/sms"):
            units = sms_units(draft.text)
            return (
                f"too long for one SMS {cut}: {units.units} {units.encoding} units of "
                f"{units.limit}: {draft.text!r}"
            )
        channel = entry.name.rsplit("/", 1)[1]
        return (
            f"{len(draft.text)} characters, more than limits.{channel} "
            f"({self._document.limits.of(Channel(channel))}) {cut}"
        )


# --- the longest facts --------------------------------------------------------------

# A character two UTF-16 units long (and not GSM): the costliest free text for an SMS.
_WIDE = "\U00020bb7"


def _worst_zone(words: DateWords) -> ZoneInfo:
    named = max(words.zone_names.items(), key=lambda item: len(item[1]), default=None)
    longest = _longest_zone()
    if named is not None and len(named[1]) >= len(longest):
        return ZoneInfo(named[0])
    return ZoneInfo(longest)


def _worst_dates(words: DateWords, zone: ZoneInfo) -> list[datetime]:
    """For each date format, a time it writes longest (two-digit days, every weekday
    and month, morning and evening)."""
    candidates = [
        datetime(2030, month, day, hour, tzinfo=zone)
        for month in range(1, 13)
        for day in range(22, 29)
        for hour in (10, 22)
    ]
    worst = {max(candidates, key=lambda at: len(format_date(at, words, s))) for s in words.formats}
    return sorted(worst)


def _longest_facts(words: DateWords) -> tuple[NoticeFacts, ...]:
    """Every fact set, at its longest: one per date the language writes longest."""
    zone = _worst_zone(words)
    return tuple(
        NoticeFacts(
            reference="W" * REFERENCE_LENGTH,
            time_zone=zone,
            customer_name=_WIDE * 200,
            first_response_by=at.astimezone(UTC),
            resolution_by=at.astimezone(UTC),
            promise_what=_WIDE * 2000,
            promise_due=at.astimezone(UTC),
        )
        for at in _worst_dates(words, zone)
    )


def _left_out(longest: NoticeFacts, names: frozenset[str]) -> Iterator[NoticeFacts]:
    """``longest`` with every outcome, and each optional fact a template uses left out
    in every combination."""
    outcomes: list[ExpectedOutcome | None] = [None]
    if "expected_outcome" in names:
        outcomes += list(ExpectedOutcome)
    optional = [n for n in (*TIMES, *FREE_TEXT) if n in names]
    for outcome in outcomes:
        for left_out in itertools.product((False, True), repeat=len(optional)):
            gone: dict[str, Any] = {
                n: None for n, out in zip(optional, left_out, strict=True) if out
            }
            yield replace(longest, expected_outcome=outcome, **gone)


def load_templates(path: Path = DEFAULT_TEMPLATES) -> Templates:
    """The templates file, read and checked (at start): a bad file raises ConfigError
    naming the entry."""
    document = load_yaml(path, TemplatesFile)
    try:
        return Templates(document)
    except _Unfit as exc:
        raise ConfigError(f"{path}: {exc}") from exc
