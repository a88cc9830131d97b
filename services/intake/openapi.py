"""Intake's OpenAPI document: request bodies, headers, security and problem answers for
routes whose bodies intake reads itself (to verify signatures over the raw bytes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from services.intake.policy import API_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from shared.http import PROBLEM_JSON

REF = "#/components/schemas/{model}"


class ProblemField(BaseModel):
    field: str = Field(description="The field, header or part at fault, dotted for nesting")
    message: str = Field(description="Why it was refused")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemField] = Field(default_factory=list)


_PROBLEMS: dict[int, str] = {
    401: "API key missing or unknown, or the signature is missing, wrong, outside the "
    "tolerance window or replayed. Nothing was published",
    403: "The integration may not post for this channel",
    413: "The body, or the batch, is larger than allowed",
    415: "The Content-Type is not one this endpoint reads",
    422: "The body is not valid: each field at fault is named with the reason",
    429: "The integration is over its rate limit; retry after Retry-After seconds",
    503: "The broker did not acknowledge: nothing was accepted; retry after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def problem_responses(*extra: int) -> dict[int | str, dict[str, Any]]:
    statuses = sorted({401, 413, 415, 422, 429, 503, *extra})
    out: dict[int | str, dict[str, Any]] = {
        202: {"description": "Accepted: the broker acknowledged the feedback"}
    }
    for status in statuses:
        response: dict[str, Any] = {
            "description": _PROBLEMS[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="Problem")}}},
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        out[status] = response
    return out


HEADER_PARAMETERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes a retried post the same feedback when the message has no "
        "id of its own",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    },
    {
        "name": TIMESTAMP_HEADER,
        "in": "header",
        "required": False,
        "description": "Signing integrations: unix time in seconds when the request was signed",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": SIGNATURE_HEADER,
        "in": "header",
        "required": False,
        "description": "Signing integrations: `sha256=` and the hex HMAC-SHA256 of "
        "`<timestamp>.<raw body>` with the integration's secret",
        "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
    },
]


def operation(content: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": content},
        "parameters": HEADER_PARAMETERS,
        "security": [{"apiKey": []}],
    }


def json_body(model: type[BaseModel], *, examples: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": {"$ref": REF.format(model=model.__name__)}}
    extra = model.model_config.get("json_schema_extra")
    values = extra.get("examples") if isinstance(extra, dict) else None
    if examples and isinstance(values, list):
        body["examples"] = {
            f"example{index + 1}": {"value": value} for index, value in enumerate(values)
        }
    return body


EXAMPLE_MAIL = (
    "From: =?UTF-8?B?5p2O5Lyf?= <li.wei@example.com>\r\n"
    "To: support@example.com\r\n"
    "Subject: =?UTF-8?B?6YCA5qy+6L+Y5rKh5Yiw6LSm?=\r\n"
    "Date: Wed, 11 Mar 2026 09:30:00 +0800\r\n"
    "Message-ID: <20260311093000.4242@mail.example.com>\r\n"
    "X-Closeloop-Expected-Outcome: refund\r\n"
    "X-Closeloop-Expected-By: 2026-03-13T18:00:00+08:00\r\n"
    "X-Closeloop-Customer-Time-Zone: Asia/Shanghai\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "重复扣款两次，退款到现在还没到账！\r\n"
)


def raw_email_body() -> dict[str, Any]:
    return {"schema": {"type": "string", "format": "binary"}, "example": EXAMPLE_MAIL}


def install(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Generate the document once, adding the request models' schemas and the API-key
    security scheme that the routes refer to."""

    def document() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, definitions = models_json_schema(
            [(model, "validation") for model in models], ref_template=REF
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(definitions.get("$defs", {}))
        components["securitySchemes"] = {
            "apiKey": {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER,
                "description": "The integration's API key",
            }
        }
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]
