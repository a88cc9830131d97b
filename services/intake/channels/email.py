"""E-mail: a raw RFC 5322 message as the mail gateway received it.

MIME structure, quoted-printable and base64 are undone by the standard library's
parser; headers and bodies are decoded here because mail in the wild labels GBK text
as GB2312. HTML-only mail becomes text in one pass of libxml2's HTML parser (lxml);
quoted replies and signatures are cut with mail-parser-reply. Attachments become
metadata only. What the customer asked for and their time zone, when the system that
wrote the mail knew them, are in headers of the mail (:data:`EXPECTED_OUTCOME_HEADER`,
:data:`EXPECTED_BY_HEADER`, :data:`TIME_ZONE_HEADER`), signed with the rest of it.

Every step's work is bounded before it starts: the parts that nest (multipart sections
and attached messages) are counted in the raw bytes before the standard library's
parser, which recurses, sees them; MIME depth and HTML nesting have limits; the HTML
and the text handed on are cut to a prefix. benchmarks/parsers.py measures the worst
cases.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email import message_from_bytes
from email.errors import HeaderParseError
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from lxml import etree
from mailparser_reply.parser import EmailMessage

from services.intake.domain import (
    Invalid,
    Source,
    assemble,
    build_customer,
    end_of_day_if_date,
    expected_by_in_utc,
    expected_outcome_of,
    tidy_text,
    to_utc,
)
from shared.contracts import Attachment, Channel, ExpectedOutcome, Feedback

# Headers of the mail (not of the HTTP request) that a form-to-mail system or the mail
# gateway adds: what the customer asked for, by when, and the customer's time zone.
EXPECTED_OUTCOME_HEADER = "X-Closeloop-Expected-Outcome"
EXPECTED_BY_HEADER = "X-Closeloop-Expected-By"
TIME_ZONE_HEADER = "X-Closeloop-Customer-Time-Zone"

# Labels whose text is, in practice, often a superset: decode with the superset.
_CHARSET_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "ascii": "utf-8",
    "us-ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "big5": "big5hkscs",
}
_REPLY_LANGUAGES = ["zh", "en"]
MAX_ATTACHMENTS = 50  # listed one by one; beyond, only counted
# A line introducing the quoted message, in the forms mail-parser-reply does not know.
_QUOTE_INTRO = re.compile(
    r"^\s*(?:在|于)?.{0,200}?(?:写道|wrote)\s*[:：]\s*$|^\s*-{2,}\s*(?:原始邮件|Original)",
    re.IGNORECASE,
)
_HTML_BLOCKS = frozenset([
    "p", "div", "li", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "section", "article", "header", "footer", "hr",
])  # fmt: skip
# Elements whose content is not the customer's words: left out with everything inside.
_HTML_HIDDEN = frozenset(["script", "style", "head", "title", "template", "noscript"])
# Quoted earlier messages, as mail programs mark them: (element, attribute, a value).
_HTML_QUOTES = (("div", "class", "gmail_quote"), ("div", "id", "divRplyFwdMsg"),
                ("div", "id", "appendonsend"))  # fmt: skip
_WHITE_SPACE = re.compile(r"\s+")
# Elements open at once (libxml2 closes the ones HTML lets go unclosed, like <p> and
# <li>); real mail, tables in tables included, stays far below.
MAX_HTML_DEPTH = 256
# Multipart sections and attached messages in one mail: the standard library's parser
# recurses into each, so they are counted before it runs.
MAX_MIME_CONTAINERS = 100
MAX_MIME_DEPTH = 16
# Parts in all (each becomes a Message object) and lines (the parser keeps each line
# as a string until its part ends): a mail's memory and time grow with these more than
# with its bytes. A 25 MB attachment in base64 is about 340,000 lines.
MAX_MIME_PARTS = 500
MAX_MAIL_LINES = 400_000
_MIME_PART = re.compile(rb"^content-type:", re.IGNORECASE | re.MULTILINE)
_MIME_CONTAINER = re.compile(
    rb"^content-type:\s*(?:multipart|message)/", re.IGNORECASE | re.MULTILINE
)
_HTML_CHUNK = 16_384


def decode_bytes(raw: bytes, charset: str | None) -> str:
    """Bytes in the declared charset (or its superset); undeclared mail is tried as
    UTF-8, then GB18030. Undecodable bytes become U+FFFD rather than an error."""
    for candidate in _charset_candidates(charset):
        try:
            return raw.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("utf-8", errors="replace")


def _charset_candidates(charset: str | None) -> list[str]:
    candidates = []
    if charset:
        label = charset.strip().strip('"').lower()
        label = _CHARSET_SUPERSETS.get(label, label)
        with contextlib.suppress(LookupError, ValueError):  # unknown, or not a name (NUL)
            candidates.append(codecs.lookup(label).name)
    return [*candidates, "utf-8", "gb18030"]


def _unescape_8bit(value: str) -> str:
    """Raw 8-bit header bytes (kept as surrogate escapes by the parser) as text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_bytes(value.encode("utf-8", "surrogateescape"), None)
    return value


def decode_header_value(value: str | None) -> str:
    """A header as text: RFC 2047 encoded words (``=?gbk?B?...?=``) and raw 8-bit
    bytes decoded, folding undone."""
    if not value:
        return ""
    value = _unescape_8bit(str(value))
    try:
        chunks = decode_header(value)
    except HeaderParseError:
        chunks = [(value, None)]
    parts = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            parts.append(decode_bytes(chunk, charset))
        else:
            parts.append(chunk)
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def raw_header(message: Message, name: str) -> str | None:
    """A header's value as it was in the mail (the first one of that name)."""
    wanted = name.lower()
    for key, value in message.raw_items():
        if key.lower() == wanted:
            return _unescape_8bit(str(value))
    return None


def _addresses(value: str | None) -> list[tuple[str, str]]:
    if not value:
        return []
    return [
        (decode_header_value(name), address.strip())
        for name, address in getaddresses([value])
        if "@" in address
    ]


def _more_than(pattern: re.Pattern[bytes], raw: bytes, limit: int) -> bool:
    return sum(1 for _ in itertools.islice(pattern.finditer(raw), limit + 1)) > limit


def check_mail_shape(raw: bytes) -> None:
    """Refuse, before parsing, a mail the standard library's parser would spend too long
    on: more lines than :data:`MAX_MAIL_LINES`, more parts than :data:`MAX_MIME_PARTS`,
    or more multipart sections and attached messages than :data:`MAX_MIME_CONTAINERS`
    (an upper bound on how deep its parts nest; the parser recurses into each)."""
    if raw.count(b"\n") > MAX_MAIL_LINES:
        raise Invalid("(body)", f"the mail has more than {MAX_MAIL_LINES} lines")
    if _more_than(_MIME_CONTAINER, raw, MAX_MIME_CONTAINERS):
        raise Invalid(
            "(body)",
            f"the mail has more than {MAX_MIME_CONTAINERS} multipart sections and attached "
            "messages",
        )
    if _more_than(_MIME_PART, raw, MAX_MIME_PARTS):
        raise Invalid("(body)", f"the mail has more than {MAX_MIME_PARTS} MIME parts")


def _leaves(message: Message) -> Iterator[Message]:
    """Every non-multipart part, depth first; attached messages stay whole. Parts nested
    deeper than :data:`MAX_MIME_DEPTH` multipart levels are refused."""
    stack: list[tuple[Message, int]] = [(message, 1)]
    while stack:
        part, depth = stack.pop()
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            if depth > MAX_MIME_DEPTH:
                raise Invalid("(body)", f"MIME parts nest deeper than {MAX_MIME_DEPTH} levels")
            subs = [sub for sub in part.get_payload() if isinstance(sub, Message)]
            stack.extend((sub, depth + 1) for sub in reversed(subs))
        else:
            yield part


def _payload_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message":
        return part.as_bytes()
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _is_attachment(part: Message) -> bool:
    if part.get_content_disposition() == "attachment":
        return True
    if part.get_content_maintype() == "message":
        return True
    return part.get_filename() is not None and part.get_content_maintype() != "text"


class _VisibleText:
    """An lxml parser target: collects what a browser would show, in one pass."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.depth = 0
        # While inside a hidden element or a quote: its tag and how many of that tag
        # are open (they can nest).
        self.skipping: str | None = None
        self.skipped_open = 0

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        self.depth += 1
        if self.depth > MAX_HTML_DEPTH:
            raise Invalid("(body)", f"the HTML nests deeper than {MAX_HTML_DEPTH} elements")
        if self.skipping is not None:
            self.skipped_open += tag == self.skipping
            return
        if tag in _HTML_HIDDEN or tag == "blockquote" or _is_quote(tag, attrib):
            self.skipping, self.skipped_open = tag, 1
        elif tag == "br" or tag in _HTML_BLOCKS:
            self.parts.append("\n")

    def end(self, tag: str) -> None:
        self.depth -= 1
        if self.skipping is not None:
            if tag == self.skipping:
                self.skipped_open -= 1
                if self.skipped_open == 0:
                    self.skipping = None
            return
        if tag in _HTML_BLOCKS:
            self.parts.append("\n")

    def data(self, text: str) -> None:
        if self.skipping is None:
            self.parts.append(_WHITE_SPACE.sub(" ", text))

    def close(self) -> str:
        return "".join(self.parts)


def _is_quote(tag: str, attrib: Mapping[str, str]) -> bool:
    for element, attribute, value in _HTML_QUOTES:
        if tag == element and value in (attrib.get(attribute) or "").split():
            return True
    return False


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, without scripts, styles and quoted replies:
    source white space collapsed as a browser does, block elements on their own lines.
    Linear in the length of the HTML (libxml2's parser, fed in chunks so that a
    nesting beyond :data:`MAX_HTML_DEPTH` stops it early: 422)."""
    target = _VisibleText()
    parser = etree.HTMLParser(target=target, recover=True, no_network=True, remove_pis=True)
    # libxml2 takes no NUL; a browser shows nothing for one either.
    html = html.replace("\x00", "")
    for start in range(0, len(html), _HTML_CHUNK):
        parser.feed(html[start : start + _HTML_CHUNK])
    text: str = parser.close() if html else ""
    lines = (line.strip() for line in text.split("\n"))
    return tidy_text("\n".join(lines))


def latest_reply(text: str) -> str:
    """What the customer wrote this time: quoted earlier messages and the signature
    removed. Falls back to the whole text if nothing would remain."""
    text = tidy_text(text)
    if not text:
        return ""
    message = EmailMessage(text=text, languages=list(_REPLY_LANGUAGES), keep_hyphen_lists=True)
    replies = message.read().replies
    reply = replies[0].body if replies else text
    kept = []
    for line in reply.split("\n"):
        if _QUOTE_INTRO.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return tidy_text("\n".join(kept)) or text


def _received_at(message: Message, source: Source) -> datetime | None:
    value = raw_header(message, "Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # an unreadable Date header is no reason to lose the mail
    if parsed.tzinfo is None:
        # RFC 5322: "-0000" is UTC with no information about the local zone.
        parsed = parsed.replace(tzinfo=source.now.tzinfo)
    try:
        return to_utc(parsed, source, "Date")
    except Invalid:
        return None  # a sender's clock far ahead is no reason to lose the mail either


def _expected_outcome(message: Message) -> ExpectedOutcome | None:
    try:
        return expected_outcome_of(
            decode_header_value(raw_header(message, EXPECTED_OUTCOME_HEADER))
        )
    except ValueError as exc:
        raise Invalid(EXPECTED_OUTCOME_HEADER, str(exc)) from None


def _expected_by(message: Message, source: Source) -> datetime | None:
    """The expected-by header in UTC: ISO 8601 (without an offset: in the integration's
    time zone, or refused; a date alone: the end of that day) or a date as in ``Date``
    (``-0000``: UTC). Unlike ``Date``, which falls back to now, an unreadable one is
    refused: there is nothing to fall back on."""
    value = decode_header_value(raw_header(message, EXPECTED_BY_HEADER))
    if not value:
        return None
    parsed = end_of_day_if_date(value)
    if isinstance(parsed, str):
        try:
            parsed = datetime.fromisoformat(parsed)
        except ValueError:
            parsed = _rfc5322_time(parsed)
    return expected_by_in_utc(parsed, source, EXPECTED_BY_HEADER)


def _rfc5322_time(value: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise Invalid(
            EXPECTED_BY_HEADER,
            "is not a date and time: ISO 8601 (2026-03-20T18:00:00+08:00) or as in a Date header",
        ) from None
    # RFC 5322: "-0000" is UTC with no information about the local zone.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _sender(message: Message) -> tuple[str, str]:
    raw = raw_header(message, "From") or raw_header(message, "Sender")
    if not raw:
        raise Invalid("From", "the mail has no sender")
    addresses = _addresses(raw)
    if not addresses:
        raise Invalid("From", "the sender is not an e-mail address")
    return addresses[0]


def _message_id(message: Message) -> str | None:
    value = (raw_header(message, "Message-ID") or "").strip().strip("<>").strip()
    return value[:200] or None


def _parts(message: Message) -> tuple[list[str], list[str], list[Attachment], int]:
    """The plain-text and HTML parts, decoded; the attachments (at most
    ``MAX_ATTACHMENTS``) as metadata; and how many attachments were left out."""
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    omitted = 0
    for part in _leaves(message):
        if _is_attachment(part):
            if len(attachments) >= MAX_ATTACHMENTS:
                omitted += 1
                continue
            filename = decode_header_value(part.get_filename()) or "attachment"
            attachments.append(
                Attachment(
                    name=filename[:255],
                    content_type=part.get_content_type(),
                    size=len(_payload_bytes(part)),
                )
            )
            continue
        subtype = part.get_content_type()
        if subtype == "text/plain":
            plain.append(decode_bytes(_payload_bytes(part), part.get_content_charset()))
        elif subtype == "text/html":
            html.append(decode_bytes(_payload_bytes(part), part.get_content_charset()))
    return plain, html, attachments, omitted


def _metadata(message: Message, *, html_only: bool, omitted: int) -> dict[str, object]:
    metadata: dict[str, object] = {"html_only": html_only}
    if omitted:
        metadata["attachments_omitted"] = omitted
    mailbox = _addresses(raw_header(message, "To"))
    if mailbox:
        metadata["mailbox"] = mailbox[0][1][:320]
    in_reply_to = (raw_header(message, "In-Reply-To") or "").strip().strip("<>")
    if in_reply_to:
        metadata["in_reply_to"] = in_reply_to[:200]
    return metadata


def parse_email(raw: bytes, source: Source) -> Feedback:
    if not raw.strip():
        raise Invalid("(body)", "the mail is empty")
    check_mail_shape(raw)
    message = message_from_bytes(raw)
    if not message.keys():
        raise Invalid("(body)", "not an RFC 5322 message: it has no header fields")
    name, address = _sender(message)
    customer = build_customer(
        source,
        email=address,
        name=name[:200] or None,
        time_zone=decode_header_value(raw_header(message, TIME_ZONE_HEADER)) or None,
        field="From",
        names={"time_zone": TIME_ZONE_HEADER},
    )
    plain, html, attachments, omitted = _parts(message)

    # The latest reply is at the top: a bounded prefix is all the text that can be kept,
    # and keeps the HTML and reply parsers fast on mails of many megabytes.
    budget = source.max_text_chars * 4
    body = tidy_text("\n\n".join(plain)[:budget])
    html_only = not body and bool(html)
    if html_only:
        # Markup is most of an HTML mail: four times the text's budget is enough.
        body = html_to_text("\n".join(html)[: budget * 4])
    text = latest_reply(body[:budget])
    subject = decode_header_value(raw_header(message, "Subject")) or None
    metadata = _metadata(message, html_only=html_only, omitted=omitted)
    if not text and subject:
        text = subject  # a mail that says everything in its subject line
    return assemble(
        source,
        channel=Channel.EMAIL,
        customer=customer,
        text=text,
        received_at=_received_at(message, source),
        external_id=_message_id(message),
        subject=subject,
        attachments=attachments,
        metadata=metadata,
        text_field="(body)",
        expected_outcome=_expected_outcome(message),
        expected_by=_expected_by(message, source),
        expected_by_field=EXPECTED_BY_HEADER,
    )
