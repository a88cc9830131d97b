"""Paging and other integer query parameters of every service API are bounded, so a
number the database cannot take (BSON integers are 64-bit) is a 422 naming the
parameter rather than a 500 from the driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.classifier.app import build as build_classifier
from services.followup.app import build as build_followup
from services.intake.app import build as build_intake
from services.intake.settings import IntakeSettings
from services.router.app import build as build_router
from shared.http import PROBLEM_JSON
from tests.conftest import Infra
from tests.integration.followup.test_store import API_KEY, followup_settings
from tests.integration.router.test_flows import small_policy
from tests.integration.router.test_service import router_settings, write_policy
from tests.integration.running import running

INT64_MAX = 2**63 - 1
HUGE = "99999999999999999999"


def apps(infra: Infra, tmp_path: Path) -> dict[str, FastAPI]:
    integrations = tmp_path / "integrations.yaml"
    integrations.write_text("integrations:\n  - name: limits\n    api_key_env: LIMITS_KEY\n")
    intake = IntakeSettings(integrations_file=integrations)
    policy_file = write_policy(tmp_path, small_policy())
    return {
        "intake": build_intake(intake, environ={"LIMITS_KEY": "limits-key-0123456789"}).app,
        "classifier": build_classifier().app,
        "router": build_router(router_settings(infra, "limits", policy_file, "limits")).app,
        "followup": build_followup(followup_settings(infra, "limits")).app,
    }


def integer_query_parameters(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, parameter, schema) of every integer query parameter in the app's OpenAPI."""
    for path, operations in app.openapi()["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                types = [schema, *schema.get("anyOf", [])]
                if parameter["in"] == "query" and any(t.get("type") == "integer" for t in types):
                    yield path, parameter["name"], schema


def test_every_integer_query_parameter_of_every_api_has_a_bound_the_database_takes(
    infra: Infra, tmp_path: Path
) -> None:
    found = []
    for service, app in apps(infra, tmp_path).items():
        for path, name, schema in integer_query_parameters(app):
            bounded = [t for t in [schema, *schema.get("anyOf", [])] if "maximum" in t]
            assert bounded, f"{service} {path} ?{name} has no maximum"
            assert all(t["maximum"] <= INT64_MAX for t in bounded), (service, path, name)
            assert all(t.get("minimum", -1) >= 0 for t in bounded), (service, path, name)
            found.append((service, path, name))
    # The paged endpoints this pins down: more appear here as they are added.
    assert {
        ("followup", "/v1/cases", "limit"),
        ("followup", "/v1/cases", "offset"),
        ("router", "/v1/teams/{team_id}/queue", "limit"),
    } <= set(found)


@pytest.fixture
async def followup(
    infra: Infra, database_name: str
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    settings = followup_settings(infra, database_name)
    async with (
        running(build_followup(settings)) as service,
        httpx.AsyncClient(
            base_url=settings.public_url, headers={"X-API-Key": API_KEY}, timeout=10
        ) as http,
    ):
        yield http, service.app


@pytest.mark.parametrize("offset", [HUGE, str(2**63), str(2**63 - 1)])
async def test_a_case_list_offset_beyond_what_the_database_takes_is_a_422(
    followup: tuple[httpx.AsyncClient, FastAPI], offset: str
) -> None:
    http, _ = followup
    response = await http.get("/v1/cases", params={"offset": offset})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"][0]["field"] == "query.offset"


async def test_the_largest_allowed_offset_is_an_empty_page(
    followup: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    http, app = followup
    (schema,) = [
        s for p, name, s in integer_query_parameters(app) if (p, name) == ("/v1/cases", "offset")
    ]
    page = await http.get("/v1/cases", params={"offset": schema.get("maximum", INT64_MAX)})
    assert page.status_code == 200, page.text
    assert page.json()["items"] == []
