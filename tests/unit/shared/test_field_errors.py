"""The problem+json answers every service API gives for a request FastAPI validates."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from shared.http import install_problem_handlers


class Resolution(BaseModel):
    resolved_by: str
    solution: str


def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/resolve")
    async def resolve(body: Resolution) -> dict[str, str]:
        return {"resolved_by": body.resolved_by}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def test_a_json_syntax_error_names_the_body_and_says_where_it_is() -> None:
    body = b'{"resolved_by": "agent-1", "solution": "refunded",}'
    async with client() as http:
        response = await http.post(
            "/resolve", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == "(body)"
    assert error["message"].startswith("not valid JSON: ")
    assert f"(at byte {body.index(b'}')})" in error["message"]


async def test_an_invalid_field_is_named_by_its_path_in_the_body() -> None:
    async with client() as http:
        response = await http.post("/resolve", json={"resolved_by": "agent-1"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "solution", "message": "Field required"}]
