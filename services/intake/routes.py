"""Intake's HTTP routes: admitted and parsed by their dependencies (``admission``),
normalised by the channel's adapter, published (``publishing``) and answered only after
the broker acknowledged."""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies from
# the annotations, and those of the JSON channels' routes name local variables, which
# string annotations could not be resolved against.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from services.intake import openapi
from services.intake.admission import (
    FORM,
    JSON,
    MULTIPART,
    RFC822,
    Admitted,
    ChannelMessage,
    ChannelPost,
    FeedbackPost,
    WebPost,
    admit_batch,
    admit_email,
    feedback_post,
    intake_of,
    web_post,
)
from services.intake.channels import JSON_CHANNELS, JsonChannel, web
from services.intake.channels.email import parse_email
from services.intake.domain import FeedbackIn, Invalid, normalise_from
from services.intake.problems import invalid
from services.intake.publishing import accept_batch, accept_one
from services.intake.schemas import Accepted, BatchIn, BatchResult
from shared.contracts import Channel, Feedback

router = APIRouter(prefix="/v1", tags=["feedback"])

# The request models the routes read themselves, for the OpenAPI document's schemas.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    FeedbackIn,
    BatchIn,
    web.WebForm,
    web.WebFormUpload,
    *(spec.model for spec in JSON_CHANNELS),
    openapi.Problem,
)


def _normalised(make: Callable[[], Feedback], channel: str) -> Feedback:
    try:
        return make()
    except (Invalid, ValidationError) as exc:
        raise invalid(exc, channel) from exc


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
async def post_feedback(
    request: Request, posted: Annotated[FeedbackPost, Depends(feedback_post)]
) -> JSONResponse:
    item, source = posted.item, posted.admitted.generic_source()
    feedback = _normalised(lambda: normalise_from(item, source), item.channel.value)
    return await accept_one(request, posted.admitted, feedback)


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
async def post_batch(
    request: Request, admitted: Annotated[Admitted, Depends(admit_batch)]
) -> Response:
    return await accept_batch(request, admitted)


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
async def post_web(request: Request, posted: Annotated[WebPost, Depends(web_post)]) -> JSONResponse:
    source = posted.admitted.source(intake_of(request).settings)
    attachments = web.upload_metadata(posted.uploads)
    feedback = _normalised(
        lambda: web.to_feedback(posted.form, source, attachments), Channel.WEB.value
    )
    return await accept_one(request, posted.admitted, feedback)


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
    "received, `Message-ID` the message id. Optional headers of the mail, added by the "
    "system that wrote or passed it on: `X-Closeloop-Expected-Outcome` (what the customer "
    "asks for), `X-Closeloop-Expected-By` (by when: ISO 8601 or as in `Date`) and "
    "`X-Closeloop-Customer-Time-Zone` (an IANA name).",
    responses=openapi.problem_responses(403),
    openapi_extra=openapi.operation({RFC822: openapi.raw_email_body()}),
)
async def post_email(
    request: Request, admitted: Annotated[Admitted, Depends(admit_email)]
) -> JSONResponse:
    source = admitted.source(intake_of(request).settings)
    # Parsing a large mail takes a while: off the event loop, other requests go on.
    feedback = await run_in_threadpool(
        _normalised, lambda: parse_email(admitted.body, source), Channel.EMAIL.value
    )
    return await accept_one(request, admitted, feedback)


def _json_channel_route(spec: JsonChannel[Any]) -> Callable[..., Awaitable[JSONResponse]]:
    message = ChannelMessage(spec)

    async def post_channel(
        request: Request, posted: Annotated[ChannelPost[Any], Depends(message)]
    ) -> JSONResponse:
        source = posted.admitted.source(intake_of(request).settings)
        feedback = _normalised(lambda: spec.to_feedback(posted.message, source), spec.channel.value)
        return await accept_one(request, posted.admitted, feedback)

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
