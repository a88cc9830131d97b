"""The worst case of each of intake's parsers: how long one request's parsing holds the
event loop, and how much it grows the process.

    python -m benchmarks.parsers [--repeat 3]

Each case is a body at the size limit (intake's default settings) built to be as costly
as its format allows: deep nesting, many small items, malformed markup, many parts. The
parsing a request does before anything is published (the same functions the routes
call) runs in a fresh process per case: the time is the slowest of ``--repeat`` runs,
the memory the growth of the process's peak resident size. A case is within bounds
when it takes at most 100 ms and grows the process by at most 50 MB; the line says what
the request answers (the status the route gives for the parser's outcome). An e-mail is
and a batch are parsed in a worker thread, off the event loop (which gets the
interpreter back at least every 5 ms meanwhile): their time is the thread's, and their
bound is the memory's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from services.intake.admission import feedback_items as _batch_items
from services.intake.channels import JSON_CHANNELS, web
from services.intake.channels.email import parse_email
from services.intake.domain import FeedbackIn, Invalid, Source, normalise_from
from services.intake.problems import Rejected
from services.intake.settings import IntakeSettings
from shared.clock import utcnow

SETTINGS = IntakeSettings()
# Routes that parse in a worker thread, off the event loop.
THREADED = ("/v1/channels/email", "/v1/feedback/batch")
MAX_MS = 100.0
MAX_MB = 50.0
ITEM = {"channel": "web", "customer": {"id": "C-1"}, "text": "x"}


def _source() -> Source:
    return Source(now=utcnow(), region="CN", timezone=UTC)


def _fill(unit: str, limit: int, head: str = "", tail: str = "") -> str:
    return head + unit * ((limit - len(head) - len(tail)) // len(unit)) + tail


def _mail(body: str, content_type: str = "text/plain") -> bytes:
    head = f"From: a@example.com\r\nSubject: x\r\nContent-Type: {content_type}\r\n\r\n"
    return _fill(" ", 0, head + body).encode()


def _nested_mime(levels: int) -> bytes:
    lines = ["From: a@example.com", "MIME-Version: 1.0"]
    for level in range(levels):
        lines += [f'Content-Type: multipart/mixed; boundary="b{level}"', "", f"--b{level}"]
    lines += ["Content-Type: text/plain", "", "late"]
    lines += [f"--b{level}--" for level in reversed(range(levels))]
    return "\r\n".join(lines).encode()


def _attachments(limit: int) -> bytes:
    part = (
        "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        'filename="a.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n'
    )
    head = 'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    head += "--b\r\nContent-Type: text/plain\r\n\r\nlate parcel\r\n"
    return _fill(part, limit, head, "--b--\r\n").encode()


FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "intake"


def _grown(fixture: str, key: str, most: int = 1_000_000) -> bytes:
    """A fixture whose list ``key`` is repeated up to ``most`` entries or the body limit."""
    document = json.loads((FIXTURES / fixture).read_text())
    entries = document[key]
    size = len(json.dumps(document).encode())
    per_entry = len(json.dumps(entries).encode()) // len(entries) + 1
    count = min(most, len(entries) + (SETTINGS.max_body_bytes - size) // per_entry - 1)
    document[key] = [dict(entries[i % len(entries)]) for i in range(count)]
    if key == "segments":
        for i, segment in enumerate(document[key]):
            segment.update(part=i + 1, total=count, text="退" * 1_000)
    return json.dumps(document, ensure_ascii=False).encode()


def _longest(fixture: str) -> bytes:
    """A fixture whose text is as long as a text may be."""
    document = json.loads((FIXTURES / fixture).read_text())
    for key in ("text", "body"):
        if key in document:
            document[key] = "退" * SETTINGS.max_text_chars
    return json.dumps(document, ensure_ascii=False).encode()


def _one_attachment(limit: int) -> bytes:
    """A short text and one attachment filling the limit, in base64 lines of 76."""
    head = (
        'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe photos of the damage.\r\n"
        "--b\r\nContent-Type: image/jpeg\r\nContent-Disposition: attachment; "
        'filename="damage.jpg"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    return _fill("A" * 76 + "\r\n", limit, head, "--b--\r\n").encode()


def _batch(items: int, item: Mapping[str, object] = ITEM) -> bytes:
    return json.dumps({"items": [item] * items}).encode()


def _parse_generic(body: bytes) -> object:
    return normalise_from(FeedbackIn.model_validate_json(body), _source())


def _parse_batch(body: bytes) -> object:
    source = _source()
    items = _batch_items(body, SETTINGS.max_batch_items)
    return [normalise_from(i, source) for i in items if isinstance(i, FeedbackIn)]


def _parse_email(body: bytes) -> object:
    return parse_email(body, _source())


def _parse_web_json(body: bytes) -> object:
    return web.to_feedback(web.WebForm.model_validate_json(body), _source())


def _parse_form(body: bytes) -> object:
    from starlette.datastructures import Headers
    from starlette.formparsers import FormParser

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    async def parse() -> object:
        headers = Headers({"content-type": "application/x-www-form-urlencoded"})
        form = await FormParser(headers, chunks(), max_fields=200).parse()
        pairs: list[tuple[str, str]] = [
            (name, value) for name, value in form.multi_items() if isinstance(value, str)
        ]
        return web.to_feedback(web.WebForm.model_validate(web.form_values(pairs)), _source())

    return asyncio.run(parse())


def _json_channel(path: str) -> Callable[[bytes], object]:
    channel = next(c for c in JSON_CHANNELS if c.path == path)

    def parse(body: bytes) -> object:
        return channel.to_feedback(channel.model.model_validate_json(body), _source())

    return parse


@dataclass(frozen=True)
class Case:
    endpoint: str
    name: str
    body: Callable[[], bytes]
    parse: Callable[[bytes], object]


BODY = SETTINGS.max_body_bytes
UPLOAD = SETTINGS.max_upload_bytes
HTML_BUDGET = SETTINGS.max_text_chars * 16  # what parse_email hands the HTML parser
CASES = [
    Case(
        "/v1/feedback",
        "20,000 characters of text",
        lambda: json.dumps({**ITEM, "text": "退" * 20_000}).encode(),
        _parse_generic,
    ),
    Case(
        "/v1/feedback",
        "metadata of 4,000 small keys",
        lambda: json.dumps({**ITEM, "metadata": {str(i): i for i in range(4_000)}}).encode(),
        _parse_generic,
    ),
    Case(
        "/v1/feedback",
        "metadata nested 10,000 deep",
        lambda: (
            '{"channel":"web","customer":{"id":"C"},"text":"x","metadata":'
            + "[" * 10_000
            + "]" * 10_000
            + "}"
        ).encode(),
        _parse_generic,
    ),
    Case(
        "/v1/feedback/batch",
        "500 items of 20 KB",
        lambda: _batch(500, {**ITEM, "text": "x" * 20_000}),
        _parse_batch,
    ),
    Case("/v1/feedback/batch", "500 small items", lambda: _batch(500), _parse_batch),
    Case("/v1/feedback/batch", "180,000 items, 9 MB", lambda: _batch(180_000), _parse_batch),
    Case(
        "/v1/channels/email",
        "HTML nested 20,000 deep",
        lambda: _mail("<div>" * 20_000 + "x" + "</div>" * 20_000, "text/html"),
        _parse_email,
    ),
    Case(
        "/v1/channels/email",
        "HTML nested 250 deep, repeated",
        lambda: _mail(_fill("<div>" * 250 + "x" + "</div>" * 250, HTML_BUDGET), "text/html"),
        _parse_email,
    ),
    Case(
        "/v1/channels/email",
        "malformed HTML '<a' repeated",
        lambda: _mail(_fill("<a", HTML_BUDGET), "text/html"),
        _parse_email,
    ),
    Case(
        "/v1/channels/email",
        "malformed HTML '</' repeated",
        lambda: _mail(_fill("</", HTML_BUDGET), "text/html"),
        _parse_email,
    ),
    Case(
        "/v1/channels/email",
        "malformed HTML CDATA repeated",
        lambda: _mail(_fill("<![CDATA[", HTML_BUDGET), "text/html"),
        _parse_email,
    ),
    Case("/v1/channels/email", "1,000 nested multipart", lambda: _nested_mime(1_000), _parse_email),
    Case("/v1/channels/email", "100 nested multipart", lambda: _nested_mime(100), _parse_email),
    Case(
        "/v1/channels/email", "1 MB plain text, one line", lambda: _mail("x" * BODY), _parse_email
    ),
    Case(
        "/v1/channels/email",
        "1 MB of short lines",
        lambda: _mail("ab\r\n" * (BODY // 4)),
        _parse_email,
    ),
    Case(
        "/v1/channels/email", "1 MB of tiny attachments", lambda: _attachments(BODY), _parse_email
    ),
    Case(
        "/v1/channels/email",
        f"{UPLOAD // 2**20} MB of tiny attachments",
        lambda: _attachments(UPLOAD),
        _parse_email,
    ),
    Case(
        "/v1/channels/email",
        f"{UPLOAD // 2**20} MB attachment in base64",
        lambda: _one_attachment(UPLOAD),
        _parse_email,
    ),
    Case(
        "/v1/channels/email",
        f"{UPLOAD // 2**20} MB of short lines",
        lambda: _mail("ab\r\n" * (UPLOAD // 4)),
        _parse_email,
    ),
    Case(
        "/v1/channels/web",
        "JSON, 100 extra fields of 2 KB",
        lambda: json.dumps(
            {
                "customer_id": "C",
                "message": "x",
                "fields": {str(i): "x" * 2_000 for i in range(100)},
            }
        ).encode(),
        _parse_web_json,
    ),
    Case(
        "/v1/channels/web",
        "form, 100 fields of 2 KB",
        lambda: (
            "message=x&customer_id=C&" + "&".join(f"f{i}={'x' * 2_000}" for i in range(98))
        ).encode(),
        _parse_form,
    ),
    Case(
        "/v1/channels/phone",
        "5,000 transcript turns",
        lambda: _grown("phone_call.json", "transcript", 5_000),
        _json_channel("phone"),
    ),
    Case(
        "/v1/channels/chat",
        "2,000 messages",
        lambda: _grown("chat_conversation.json", "messages", 2_000),
        _json_channel("chat"),
    ),
    Case(
        "/v1/channels/sms",
        "255 segments of 1,000 characters",
        lambda: _grown("sms_three_segments.json", "segments", 255),
        _json_channel("sms"),
    ),
    Case(
        "/v1/channels/social",
        "longest post",
        lambda: _longest("social_mention.json"),
        _json_channel("social"),
    ),
    Case(
        "/v1/channels/app-review",
        "longest review",
        lambda: _longest("app_review.json"),
        _json_channel("app-review"),
    ),
]


def _outcome(parse: Callable[[bytes], object], body: bytes) -> str:
    try:
        parse(body)
    except Invalid as exc:
        return f"422 {exc.message}"[:60]
    except ValidationError as exc:
        return f"422 {exc.errors()[0]['msg']}"[:60]
    except Rejected as exc:
        return f"{exc.status} {exc.errors[0]['message']}"[:60]
    return "accepted"


def _run(index: int, repeat: int) -> tuple[float, float, str, int]:
    case = CASES[index]
    body = case.body()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worst = 0.0
    outcome = ""
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = _outcome(case.parse, body)
        worst = max(worst, time.perf_counter() - started)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return worst * 1000, grown / 1024, outcome, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = Table(title="intake's parsers, worst cases (one fresh process per case)")
    for column in ("endpoint", "case", "body", "ms", "MB", "answer", "within"):
        table.add_column(column, justify="right" if column in ("body", "ms", "MB") else "left")
    over = 0
    with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1) as pool:
        for case, future in zip(
            CASES, [pool.submit(_run, i, args.repeat) for i in range(len(CASES))], strict=True
        ):
            ms, mb, outcome, size = future.result()
            threaded = case.endpoint in THREADED
            within = (threaded or ms <= MAX_MS) and mb <= MAX_MB
            over += not within
            table.add_row(
                case.endpoint, case.name, f"{size / 2**20:.2f} MB", f"{ms:.1f}", f"{mb:.1f}",
                outcome, "yes" if within else "NO",
            )  # fmt: skip
    Console(width=200).print(table)
    print(f"{len(CASES) - over} of {len(CASES)} within {MAX_MS:.0f} ms and {MAX_MB:.0f} MB")


if __name__ == "__main__":
    main()
