"""Intake's HTTP API: admit (key, limits, signature), normalise, publish, and answer
only after the broker acknowledged.

Bodies are read here rather than by FastAPI, so that the signature is checked over
the raw bytes and nothing is parsed for a caller that is not admitted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import to_json
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from services.intake import openapi
from services.intake.batch import TooManyItems, batch_items
from services.intake.channels import JSON_CHANNELS, JsonChannel, web
from services.intake.channels.email import parse_email
from services.intake.domain import FeedbackIn, Invalid, Source, normalise_from
from services.intake.guards import Guards
from services.intake.integrations import (
    API_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Integration,
    Integrations,
    signature_problem,
)
from services.intake.metrics import (
    ACCEPTED_BY_CHANNEL,
    BATCH_ITEMS,
    PUBLISH_SECONDS_BY_ENDPOINT,
    REJECTED,
)
from services.intake.problems import UNKNOWN_CHANNEL, Rejected, field_error, invalid
from services.intake.settings import IntakeSettings
from shared.auth import FORWARDED_FOR, FailureLimit, client_address
from shared.clock import utcnow
from shared.contracts import Channel, Feedback, FeedbackReceived
from shared.envelope import new_event
from shared.errors import BrokerUnavailable
from shared.runtime import Service

log = logging.getLogger(__name__)
SOURCE = "/closeloop/intake"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
RFC822 = "message/rfc822"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CHANNEL_VALUES = frozenset(channel.value for channel in Channel)

router = APIRouter(prefix="/v1", tags=["feedback"])


@dataclass(frozen=True)
class Intake:
    """What every request needs besides itself: set on ``app.state.intake`` at start."""

    settings: IntakeSettings
    integrations: Integrations
    guards: Guards
    failures: FailureLimit


class Accepted(BaseModel):
    feedback_id: str
    status: Literal["accepted"] = "accepted"


class FieldError(BaseModel):
    field: str
    message: str


class ItemResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    feedback_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    items: list[ItemResult]


class BatchIn(BaseModel):
    """Up to 500 generic feedback items; each is answered on its own."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "channel": "web",
                            "external_id": "form-20260311-0042",
                            "customer": {"id": "C-1001"},
                            "text": "The washing machine leaks water everywhere.",
                            "received_at": "2026-03-11T09:30:00+08:00",
                        },
                        {
                            "channel": "sms",
                            "external_id": "SM-20260311-88213",
                            "customer": {"phone": "+8613800138000"},
                            "text": "退款还没到账",
                        },
                    ]
                }
            ]
        },
    )

    items: list[FeedbackIn] = Field(min_length=1, max_length=500)


_FEEDBACK_ITEMS = TypeAdapter(list[FeedbackIn])


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


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


# --- admission ------------------------------------------------------------------------


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


async def admit(
    request: Request, *, channel: str, limits: Callable[[IntakeSettings], Mapping[str, int]]
) -> Admitted:
    """Who is posting, whether they may, and the body: 429, 401, 415, 413 or 422
    before anything is parsed. ``limits`` gives the accepted media types and the body
    size allowed for each.

    Failing costs the caller, never the integration: a missing or wrong key, a bad or
    replayed signature counts against the client's address (429 for an address over the
    limit on failures, whatever it sends); an integration's rate limit is charged only
    once the request is its own (its key, and its signature when it signs)."""
    intake = _intake(request)
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
    if not await _intake(request).guards.first_use(integration, signature):
        raise _unauthorized(
            channel,
            "replayed",
            SIGNATURE_HEADER,
            "this signed request was already received: sign each attempt anew",
        )


def _forbid_unless_allowed(integration: Integration, channel: Channel) -> None:
    if not integration.allows(channel):
        raise Rejected(
            403,
            "Forbidden",
            "forbidden_channel",
            [field_error("channel", f"integration {integration.name} may not post {channel}")],
            channel=channel.value,
        )


# --- publishing -----------------------------------------------------------------------


async def publish(
    request: Request, feedbacks: Sequence[Feedback], endpoint: Literal["single", "batch"]
) -> None:
    """Publish and wait for the broker's ack: 503 with Retry-After when it does not come.

    One log line per request, a batch included: the ids of what was accepted (feedback
    ids and the pseudonymous customer keys, never personal data).
    """
    service: Service = request.app.state.service
    # One time for the events published together (and one event per feedback id: the
    # same message twice in a batch is one feedback).
    published_at = datetime.now(UTC)
    events = {
        feedback.feedback_id: new_event(
            FeedbackReceived(feedback=feedback),
            source=SOURCE,
            cause=feedback.feedback_id,
            time=published_at,
        )
        for feedback in feedbacks
    }
    started = time.perf_counter()
    try:
        await service.producer.publish(list(events.values()))
    except BrokerUnavailable as exc:
        log.warning("feedback not accepted, broker unavailable: %s", exc)
        channels = {feedback.channel.value for feedback in feedbacks}
        raise Rejected(
            503,
            "Service unavailable",
            "broker_unavailable",
            [
                field_error(
                    "(broker)",
                    "the event broker did not acknowledge the feedback; nothing was accepted, "
                    "retry later",
                )
            ],
            channel=channels.pop() if len(channels) == 1 else UNKNOWN_CHANNEL,
            headers={"Retry-After": str(_intake(request).settings.retry_after_s)},
        ) from exc
    PUBLISH_SECONDS_BY_ENDPOINT[endpoint].observe(time.perf_counter() - started)
    counts = Counter(feedback.channel for feedback in feedbacks)
    for channel, count in counts.items():
        ACCEPTED_BY_CHANNEL[channel].inc(count)
    integration = getattr(request.state, "integration", None)
    if endpoint == "single":
        (feedback,) = feedbacks
        log.info(
            "feedback accepted",
            extra={
                "feedback_id": feedback.feedback_id,
                "customer_key": feedback.customer_key,
                "channel": feedback.channel.value,
                "integration": integration,
            },
        )
        return
    log.info(
        "feedback batch accepted",
        extra={
            "accepted": len(feedbacks),
            # In the order of the batch: feedback_ids[i] belongs to customer_keys[i].
            "feedback_ids": [feedback.feedback_id for feedback in feedbacks],
            "customer_keys": [feedback.customer_key for feedback in feedbacks],
            "channels": {channel.value: count for channel, count in counts.items()},
            "integration": integration,
        },
    )


async def accept_one(request: Request, admitted: Admitted, feedback: Feedback) -> JSONResponse:
    _forbid_unless_allowed(admitted.integration, feedback.channel)
    await publish(request, [feedback], "single")
    return JSONResponse(Accepted(feedback_id=feedback.feedback_id).model_dump(), status_code=202)


def _normalised(make: Callable[[], Feedback], channel: str) -> Feedback:
    try:
        return make()
    except (Invalid, ValidationError) as exc:
        raise invalid(exc, channel) from exc


# --- routes ---------------------------------------------------------------------------


def _json_only(settings: IntakeSettings) -> Mapping[str, int]:
    return {JSON: settings.max_body_bytes}


@router.post(
    "/feedback",
    status_code=202,
    response_model=Accepted,
    summary="Submit one piece of feedback from any channel",
    description="The generic format: the integration has already mapped its channel's "
    "message to these fields.",
    responses=openapi.problem_responses(403),
    openapi_extra=openapi.operation({JSON: openapi.json_body(FeedbackIn)}),
)
async def post_feedback(request: Request) -> JSONResponse:
    admitted = await admit(request, channel=UNKNOWN_CHANNEL, limits=_json_only)
    try:
        item = FeedbackIn.model_validate_json(admitted.body)
    except ValidationError as exc:
        raise invalid(exc, UNKNOWN_CHANNEL) from exc
    source = admitted.generic_source()
    feedback = _normalised(lambda: normalise_from(item, source), item.channel.value)
    return await accept_one(request, admitted, feedback)


def _batch_limits(settings: IntakeSettings) -> Mapping[str, int]:
    return {JSON: settings.max_batch_bytes}


@router.post(
    "/feedback/batch",
    status_code=202,
    response_model=BatchResult,
    summary="Submit up to 500 pieces of feedback at once",
    description="Each item is checked on its own: the answer lists, per item in order, "
    "the feedback id or the reasons it was rejected, and one bad item never rejects the "
    "others. 202 once the broker acknowledged every accepted item; 422 when no item "
    "was acceptable. With an Idempotency-Key header, item *i* uses the key `<key>/<i>`.",
    responses=openapi.problem_responses(),
    openapi_extra=openapi.operation({JSON: openapi.json_body(BatchIn)}),
)
async def post_batch(request: Request) -> Response:
    admitted = await admit(request, channel=UNKNOWN_CHANNEL, limits=_batch_limits)
    # Reading, validating and normalising up to 500 items takes a while: in a worker
    # thread, so that the event loop goes on serving other requests meanwhile.
    results, accepted, errors = await run_in_threadpool(
        _read_batch, admitted, _intake(request).settings.max_batch_items
    )
    if not accepted:
        raise Rejected(422, "Invalid request", "invalid", errors, counted=False)
    await publish(request, accepted, "batch")
    answer = {"accepted": len(accepted), "rejected": len(results) - len(accepted), "items": results}
    return Response(to_json(answer), status_code=202, media_type=JSON)


def _read_batch(
    admitted: Admitted, max_items: int
) -> tuple[list[dict[str, Any]], list[Feedback], list[dict[str, str]]]:
    """Per item of the batch, in order, its answer; the accepted feedback; the errors."""
    items = _batch_items(admitted.body, max_items)
    BATCH_ITEMS.observe(len(items))
    # One arrival time for the whole request: every item was received at once.
    source = admitted.generic_source()
    # The answer is plain data in the shape of BatchResult (which documents it): a
    # validated model per item would only check what this function just wrote.
    results: list[dict[str, Any]] = []
    accepted: list[Feedback] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        key = f"{admitted.idempotency_key}/{index}" if admitted.idempotency_key else None
        try:
            feedback = _batch_item(item, admitted.integration, source, key)
        except Rejected as exc:
            REJECTED.labels(exc.channel, exc.reason).inc()
            item_errors = [
                field_error(_item_field(index, error["field"]), error["message"])
                for error in exc.errors
            ]
            errors += item_errors
            results.append({"index": index, "status": "rejected", "errors": item_errors})
            continue
        accepted.append(feedback)
        results.append(
            {
                "index": index,
                "status": "accepted",
                "feedback_id": feedback.feedback_id,
                "errors": [],
            }
        )
    return results, accepted, errors


def _item_field(index: int, field: str) -> str:
    return f"items.{index}" if field == "(body)" else f"items.{index}.{field}"


def _batch_items(body: bytes, max_items: int) -> Sequence[FeedbackIn | Any]:
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


def _batch_item(
    raw: FeedbackIn | Any, integration: Integration, source: Source, idempotency_key: str | None
) -> Feedback:
    if isinstance(raw, FeedbackIn):
        item = raw
    else:
        channel = raw.get("channel") if isinstance(raw, dict) else None
        label = channel if isinstance(channel, str) and channel in CHANNEL_VALUES else None
        try:
            item = FeedbackIn.model_validate(raw)
        except ValidationError as exc:
            raise invalid(exc, label or UNKNOWN_CHANNEL) from exc
    _forbid_unless_allowed(integration, item.channel)
    if idempotency_key is not None:
        source = replace(source, idempotency_key=idempotency_key)
    try:
        return normalise_from(item, source)
    except (Invalid, ValidationError) as exc:
        raise invalid(exc, item.channel.value) from exc


def _web_limits(settings: IntakeSettings) -> Mapping[str, int]:
    return {
        JSON: settings.max_body_bytes,
        FORM: settings.max_body_bytes,
        MULTIPART: settings.max_upload_bytes,
    }


@router.post(
    "/channels/web",
    status_code=202,
    response_model=Accepted,
    summary="A web form, as JSON or form fields",
    description="JSON, `application/x-www-form-urlencoded`, or `multipart/form-data` "
    "with uploaded files (only their name, type and size are kept). Form fields other "
    "than the documented ones are kept in `metadata.fields`. `submission_id` is the "
    "message id.",
    responses=openapi.problem_responses(403),
    openapi_extra=openapi.operation(
        {
            JSON: openapi.json_body(web.WebForm),
            FORM: openapi.json_body(web.WebForm),
            MULTIPART: openapi.json_body(web.WebFormUpload, examples=False),
        }
    ),
)
async def post_web(request: Request) -> JSONResponse:
    channel = Channel.WEB.value
    admitted = await admit(request, channel=channel, limits=_web_limits)
    _forbid_unless_allowed(admitted.integration, Channel.WEB)
    uploads: list[tuple[str, str | None, int]] = []
    try:
        if admitted.media_type == JSON:
            form = web.WebForm.model_validate_json(admitted.body)
        else:
            pairs, uploads = await _parse_form(admitted)
            form = web.WebForm.model_validate(web.form_values(pairs))
    except ValidationError as exc:
        raise invalid(exc, channel) from exc
    source = admitted.source(_intake(request).settings)
    attachments = web.upload_metadata(uploads)
    feedback = _normalised(lambda: web.to_feedback(form, source, attachments), channel)
    return await accept_one(request, admitted, feedback)


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


def _email_limits(settings: IntakeSettings) -> Mapping[str, int]:
    return {RFC822: settings.max_upload_bytes}


@router.post(
    "/channels/email",
    status_code=202,
    response_model=Accepted,
    summary="A raw e-mail (RFC 5322), as the mail gateway received it",
    description="The body is the whole message, headers included (`message/rfc822`). "
    "MIME parts, quoted-printable and base64 are decoded; charsets include UTF-8, GBK, "
    "GB2312 and GB18030. HTML-only mail is turned into text; quoted earlier messages "
    "and the signature are removed; the subject is kept. Attachments are kept as "
    "metadata (name, type, size) only. `From` is the customer, `Date` the time "
    "received, `Message-ID` the message id.",
    responses=openapi.problem_responses(403),
    openapi_extra=openapi.operation({RFC822: openapi.raw_email_body()}),
)
async def post_email(request: Request) -> JSONResponse:
    channel = Channel.EMAIL.value
    admitted = await admit(request, channel=channel, limits=_email_limits)
    _forbid_unless_allowed(admitted.integration, Channel.EMAIL)
    source = admitted.source(_intake(request).settings)
    # Parsing a large mail takes a while: off the event loop, other requests go on.
    feedback = await run_in_threadpool(
        _normalised, lambda: parse_email(admitted.body, source), channel
    )
    return await accept_one(request, admitted, feedback)


def _json_channel_route(spec: JsonChannel[Any]) -> Callable[[Request], Any]:
    async def post_channel(request: Request) -> JSONResponse:
        channel = spec.channel.value
        admitted = await admit(request, channel=channel, limits=_json_only)
        _forbid_unless_allowed(admitted.integration, spec.channel)
        try:
            message = spec.model.model_validate_json(admitted.body)
        except ValidationError as exc:
            raise invalid(exc, channel) from exc
        source = admitted.source(_intake(request).settings)
        feedback = _normalised(lambda: spec.to_feedback(message, source), channel)
        return await accept_one(request, admitted, feedback)

    post_channel.__name__ = f"post_{spec.path.replace('-', '_')}"
    return post_channel


for _spec in JSON_CHANNELS:
    router.add_api_route(
        f"/channels/{_spec.path}",
        _json_channel_route(_spec),
        methods=["POST"],
        status_code=202,
        response_model=Accepted,
        summary=_spec.summary,
        description=_spec.description,
        responses=openapi.problem_responses(403),
        openapi_extra=openapi.operation({JSON: openapi.json_body(_spec.model)}),
    )


def install(app: FastAPI, intake: Intake) -> None:
    app.state.intake = intake
    app.include_router(router)
    openapi.install(
        app,
        [
            FeedbackIn,
            BatchIn,
            web.WebForm,
            web.WebFormUpload,
            *(spec.model for spec in JSON_CHANNELS),
            openapi.Problem,
        ],
    )
