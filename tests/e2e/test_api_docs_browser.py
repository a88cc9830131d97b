"""/docs as a person opens it, in Debian's chromium with no way out of this machine: the
interactive documentation renders the service's OpenAPI 3.1 description from assets
the service serves itself, and the page asks nothing of any other origin."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Request, Route, async_playwright, expect
from pydantic import SecretStr

from services.followup.app import build
from services.followup.settings import FollowupSettings
from shared.tools.devstack import free_port
from tests.e2e.conftest import CHROMIUM_ARGS, WAIT_MS, chromium
from tests.integration.running import running


async def test_the_docs_page_renders_every_operation_offline() -> None:
    port = free_port()
    settings = FollowupSettings(
        http_port=port,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        mongo_url=f"mongodb://127.0.0.1:{free_port()}/",
        api_keys={"docs": "docs-agent-key-0123456789"},
        survey_secret=SecretStr("docs-survey-secret-0123456789abcdef"),
    )
    elsewhere: list[str] = []

    async def only_this_service(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == f"127.0.0.1:{port}":
            await route.continue_()
        else:
            elsewhere.append(request.url)
            await route.abort()

    async with running(build(settings), wait_ready=False), async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium()), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await page.route("**/*", only_this_service)
            await page.goto(f"http://127.0.0.1:{port}/docs")
            operations = page.locator(".opblock-summary-path")
            await expect(operations.first).to_be_visible(timeout=WAIT_MS)
            paths = set(await operations.all_inner_texts())
            assert {"/v1/cases", "/v1/cases/{case_id}/resolve"} <= {
                p.replace("\u200b", "") for p in paths
            }
            assert await page.get_by_text("Unable to render this definition").count() == 0
        finally:
            await browser.close()
    assert elsewhere == []
