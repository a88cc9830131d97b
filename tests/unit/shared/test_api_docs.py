"""Every service's /docs works without internet: the page names no other origin, and
the scripts, styles and icon it loads are served by the service itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from services.classifier.app import build as build_classifier
from services.followup.app import build as build_followup
from services.followup.settings import FollowupSettings
from services.intake.app import build as build_intake
from services.intake.settings import IntakeSettings
from services.router.app import build as build_router
from services.router.settings import RouterSettings

# The services are built, never started: nothing connects to these.
NOWHERE = {"kafka_bootstrap": "127.0.0.1:9", "mongo_url": "mongodb://127.0.0.1:9/"}
KEYS = {"docs": "docs-agent-key-0123456789"}


def service_apps(tmp_path: Path) -> dict[str, FastAPI]:
    integrations = tmp_path / "integrations.yaml"
    integrations.write_text("integrations:\n  - name: docs\n    api_key_env: DOCS_KEY\n")
    intake = IntakeSettings.model_validate({"integrations_file": integrations, **NOWHERE})
    followup = FollowupSettings.model_validate(
        {
            "api_keys": KEYS,
            "survey_secret": "docs-survey-secret-0123456789abcdef",
            **NOWHERE,
        }
    )
    router = RouterSettings.model_validate({"api_keys": KEYS, **NOWHERE})
    return {
        "intake": build_intake(intake, environ={"DOCS_KEY": "docs-key-0123456789"}).app,
        "classifier": build_classifier().app,
        "router": build_router(router).app,
        "followup": build_followup(followup).app,
    }


class References(HTMLParser):
    """Every URL a page loads or links to: src, href, and url(...) in inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


EXTERNAL = re.compile(r"""(?:https?:)?//[^\s'"`)]+""")


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FastAPI]:
    return service_apps(tmp_path_factory.mktemp("docs"))


@pytest.mark.parametrize("service", ["intake", "classifier", "router", "followup"])
async def test_docs_reference_nothing_outside_the_service_and_its_assets_are_served(
    apps: dict[str, FastAPI], service: str
) -> None:
    transport = httpx.ASGITransport(app=apps[service])
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        references = References()
        references.feed(page.text)
        inline = "\n".join(references.scripts)
        assert EXTERNAL.findall(page.text) == [], "the page names another origin"
        assert references.urls, "the page loads its assets"
        for url in references.urls:
            absolute = urljoin(str(page.url), url)
            assert urlsplit(absolute).netloc == "svc", url
            asset = await http.get(absolute)
            assert asset.status_code == 200, url
        kinds = {urlsplit(u).path.rsplit(".", 1)[-1] for u in references.urls}
        assert {"js", "css", "png"} <= kinds
        # The spec it loads, and no validator badge from an outside service.
        assert "'/openapi.json'" in inline or '"/openapi.json"' in inline
        assert '"validatorUrl": null' in inline
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/redoc")).status_code == 404
