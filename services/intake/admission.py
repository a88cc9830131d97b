"""Admission, as FastAPI dependencies: who is posting, whether they may, and the body,
read and parsed; 429, 401, 403, 415, 413 or 422 before anything is published.

Bodies are read here rather than by FastAPI, so that the signature is checked over
the raw bytes and nothing is parsed for a caller that is not admitted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from services.intake.batch import TooManyItems, batch_items
from services.intake.channels import JsonChannel, web
from services.intake.domain import FeedbackIn, Invalid, Source
from services.intake.guards import Guards
from services.intake.policy import (
    API_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Integration,
    Integrations,
    signature_problem,
)
from services.intake.problems import UNKNOWN_CHANNEL, Rejected, field_error, invalid
from services.intake.settings import IntakeSettings
from shared.auth import FORWARDED_FOR, FailureLimit, client_address
from shared.clock import utcnow
from shared.contracts import Channel

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
RFC822 = "message/rfc822"
IDEMPOTENCY_HEADER = "Idempotency-Key"

M = TypeVar("M", bound=BaseModel)
# The media types an endpoint reads, with the body size allowed for each.
Limits = Callable[[IntakeSettings], Mapping[str, int]]


@dataclass(frozen=True)
class Intake:
    """What every request needs besides itself: set on ``app.state.intake`` at start."""

    settings: IntakeSettings
    integrations: Integrations
    guards: Guards
    failures: FailureLimit


def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


@dataclass(frozen=True)
class Admitted:
    integration: Integration
    body: bytes
    media_type: str
    content_type: str
    idempotency_key: str | None

    def generic_source(self) -> Source:
        """What the generic endpoints normalise with: the integration's region for phone
        numbers; their timestamps carry their own offset and their text its own limit."""
        return Source(
            now=utcnow(),
            idempotency_key=self.idempotency_key,
            region=self.integration.region,
        )

    def source(self, settings: IntakeSettings) -> Source:
        return Source(
            now=utcnow(),
            idempotency_key=self.idempotency_key,
            region=self.integration.region,
            timezone=self.integration.timezone,
            max_text_chars=settings.max_text_chars,
        )


# --- limits ---------------------------------------------------------------------------


def json_only(settings: IntakeSettings) -> Mapping[str, int]:
    return {JSON: settings.max_body_bytes}


def batch_limits(settings: IntakeSettings) -> Mapping[str, int]:
    return {JSON: settings.max_batch_bytes}


def web_limits(settings: IntakeSettings) -> Mapping[str, int]:
    return {
        JSON: settings.max_body_bytes,
        FORM: settings.max_body_bytes,
        MULTIPART: settings.max_upload_bytes,
    }


def email_limits(settings: IntakeSettings) -> Mapping[str, int]:
    return {RFC822: settings.max_upload_bytes}


# --- who is posting, and whether they may ---------------------------------------------


def _unauthorized(channel: str, reason: str, header: str, message: str) -> Rejected:
    return Rejected(
        401,
        "Unauthorized",
        reason,
        [field_error(header, message)],
        channel=channel,
        headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'},
    )


async def _read_body(request: Request, limit: int, channel: str) -> bytes:
    def too_large() -> Rejected:
        return Rejected(
            413,
            "Content too large",
            "too_large",
            [field_error("(body)", f"larger than {limit} bytes")],
            channel=channel,
        )

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def admit(request: Request, *, channel: str, limits: Limits) -> Admitted:
    """Who is posting, whether they may, and the body: 429, 401, 415, 413 or 422
    before anything is parsed. ``limits`` gives the accepted media types and the body
    size allowed for each.

    Failing costs the caller, never the integration: a missing or wrong key, a bad or
    replayed signature counts against the client's address (429 for an address over the
    limit on failures, whatever it sends); an integration's rate limit is charged only
    once the request is its own (its key, and its signature when it signs)."""
    intake = intake_of(request)
    peer = request.client.host if request.client else None
    address = client_address(
        peer, request.headers.get(FORWARDED_FOR), intake.settings.trusted_proxies
    )
    wait = await intake.failures.retry_after(address)
    if wait is not None:
        raise Rejected(
            429,
            "Too many requests",
            "too_many_failures",
            [
                field_error(
                    "(client)", f"too many failed attempts from this address: retry after {wait} s"
                )
            ],
            channel=channel,
            headers={"Retry-After": str(wait)},
        )
    try:
        return await _admit(request, intake, channel, limits(intake.settings))
    except Rejected as rejected:
        if rejected.status == 401:
            await intake.failures.count(address)
        raise


async def _admit(
    request: Request, intake: Intake, channel: str, accepted: Mapping[str, int]
) -> Admitted:
    api_key = request.headers.get(API_KEY_HEADER)
    if not api_key:
        raise _unauthorized(
            channel, "unauthenticated", API_KEY_HEADER, "missing: send the integration's API key"
        )
    integration = intake.integrations.by_key(api_key)
    if integration is None:
        raise _unauthorized(channel, "unauthenticated", API_KEY_HEADER, "not a valid API key")
    request.state.integration = integration.name
    if not integration.signs:  # the key is the whole credential
        await _within_rate_limit(intake, integration, channel)

    content_type = request.headers.get("content-type", "")
    media_type = parse_options_header(content_type)[0].decode("latin-1").lower()
    if media_type not in accepted:
        raise Rejected(
            415,
            "Unsupported media type",
            "unsupported_media_type",
            [field_error("Content-Type", f"must be {' or '.join(accepted)}")],
            channel=channel,
        )

    idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
    if idempotency_key is not None and not 1 <= len(idempotency_key.strip()) <= 200:
        raise Rejected(
            422,
            "Invalid request",
            "invalid",
            [field_error(IDEMPOTENCY_HEADER, "must be 1 to 200 characters")],
            channel=channel,
        )

    body = await _read_body(request, accepted[media_type], channel)
    if integration.signs:
        await _verify_signature(request, integration, body, channel)
        await _within_rate_limit(intake, integration, channel)
    return Admitted(
        integration=integration,
        body=body,
        media_type=media_type,
        content_type=content_type,
        idempotency_key=idempotency_key.strip() if idempotency_key else None,
    )


async def _within_rate_limit(intake: Intake, integration: Integration, channel: str) -> None:
    retry_after = await intake.guards.retry_after(integration)
    if retry_after is not None:
        raise Rejected(
            429,
            "Too many requests",
            "rate_limited",
            [field_error(API_KEY_HEADER, f"integration {integration.name} is over its rate limit")],
            channel=channel,
            headers={"Retry-After": str(retry_after)},
        )


async def _verify_signature(
    request: Request, integration: Integration, body: bytes, channel: str
) -> None:
    signature = request.headers.get(SIGNATURE_HEADER)
    wrong = signature_problem(
        integration,
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        signature=signature,
        body=body,
        now=time.time(),
    )
    if wrong is not None:
        raise _unauthorized(channel, "bad_signature", *wrong)
    assert signature is not None
    if not await intake_of(request).guards.first_use(integration, signature):
        raise _unauthorized(
            channel,
            "replayed",
            SIGNATURE_HEADER,
            "this signed request was already received: sign each attempt anew",
        )


def forbid_unless_allowed(integration: Integration, channel: Channel) -> None:
    if not integration.allows(channel):
        raise Rejected(
            403,
            "Forbidden",
            "forbidden_channel",
            [field_error("channel", f"integration {integration.name} may not post {channel}")],
            channel=channel.value,
        )


class Admission:
    """The dependency admitting a post to one endpoint: ``admit``, then, for a channel's
    own endpoint, 403 unless the integration may post for that channel. ``channel`` is
    None for the generic endpoints, whose items name their channel."""

    def __init__(self, channel: Channel | None, limits: Limits) -> None:
        self.channel = channel
        self.limits = limits

    async def __call__(self, request: Request) -> Admitted:
        label = UNKNOWN_CHANNEL if self.channel is None else self.channel.value
        admitted = await admit(request, channel=label, limits=self.limits)
        if self.channel is not None:
            forbid_unless_allowed(admitted.integration, self.channel)
        return admitted


admit_feedback = Admission(None, json_only)
admit_batch = Admission(None, batch_limits)
admit_web = Admission(Channel.WEB, web_limits)
admit_email = Admission(Channel.EMAIL, email_limits)


# --- bodies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackPost:
    admitted: Admitted
    item: FeedbackIn


async def feedback_post(admitted: Annotated[Admitted, Depends(admit_feedback)]) -> FeedbackPost:
    """The generic item: 422 naming no channel when it is not one."""
    try:
        item = FeedbackIn.model_validate_json(admitted.body)
    except ValidationError as exc:
        raise invalid(exc, UNKNOWN_CHANNEL) from exc
    return FeedbackPost(admitted, item)


@dataclass(frozen=True)
class WebPost:
    admitted: Admitted
    form: web.WebForm
    uploads: list[tuple[str, str | None, int]]  # name, type and size of each file


async def web_post(admitted: Annotated[Admitted, Depends(admit_web)]) -> WebPost:
    """The web form, from JSON or form fields, and the files uploaded with it."""
    uploads: list[tuple[str, str | None, int]] = []
    try:
        if admitted.media_type == JSON:
            form = web.WebForm.model_validate_json(admitted.body)
        else:
            pairs, uploads = await _parse_form(admitted)
            form = web.WebForm.model_validate(web.form_values(pairs))
    except ValidationError as exc:
        raise invalid(exc, Channel.WEB.value) from exc
    return WebPost(admitted, form, uploads)


async def _parse_form(
    admitted: Admitted,
) -> tuple[list[tuple[str, str]], list[tuple[str, str | None, int]]]:
    async def body() -> AsyncGenerator[bytes, None]:
        yield admitted.body

    headers = Headers({"content-type": admitted.content_type})
    try:
        if admitted.media_type == MULTIPART:
            parsed = await MultiPartParser(headers, body(), max_files=20, max_fields=200).parse()
        else:
            parsed = await FormParser(headers, body(), max_fields=200).parse()
    except MultiPartException as exc:
        raise Rejected(
            422,
            "Invalid request",
            "invalid",
            [field_error("(body)", f"not valid form data: {exc.message}")],
            channel=Channel.WEB.value,
        ) from exc
    pairs: list[tuple[str, str]] = []
    uploads: list[tuple[str, str | None, int]] = []
    for name, value in parsed.multi_items():
        if isinstance(value, UploadFile):
            uploads.append((value.filename or name, value.content_type, value.size or 0))
            await value.close()
        else:
            pairs.append((name, value))
    return pairs, uploads


@dataclass(frozen=True)
class ChannelPost(Generic[M]):
    admitted: Admitted
    message: M


class ChannelMessage(Generic[M]):
    """The dependency admitting a post to a JSON channel's endpoint and reading the
    channel's message from it."""

    def __init__(self, spec: JsonChannel[M]) -> None:
        self.spec = spec
        self._admission = Admission(spec.channel, json_only)

    async def __call__(self, request: Request) -> ChannelPost[M]:
        admitted = await self._admission(request)
        try:
            message = self.spec.model.model_validate_json(admitted.body)
        except ValidationError as exc:
            raise invalid(exc, self.spec.channel.value) from exc
        return ChannelPost(admitted, message)


_FEEDBACK_ITEMS = TypeAdapter(list[FeedbackIn])


def feedback_items(body: bytes, max_items: int) -> Sequence[FeedbackIn | Any]:
    """The items of a batch body: validated ``FeedbackIn`` when every item is valid
    (the common case, checked in one pass), otherwise the raw items, each to be
    validated on its own so that its errors are its own. 413 as soon as one item more
    than allowed has been read; 422 when the body is not ``{"items": [...]}`` with at
    least one item."""
    try:
        raw = batch_items(body, max_items)
    except TooManyItems:
        raise Rejected(
            413,
            "Content too large",
            "too_large",
            [field_error("items", f"a batch holds at most {max_items} items")],
        ) from None
    except Invalid as exc:
        raise invalid(exc, UNKNOWN_CHANNEL) from exc
    try:
        return _FEEDBACK_ITEMS.validate_python(raw)
    except ValidationError:
        return raw  # some item is invalid
