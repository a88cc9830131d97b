"""What the browser tests share: Debian's chromium, never a downloaded one
(CLOSELOOP_CHROMIUM, else /usr/bin/chromium; `make test` installs the package when
missing), launched headless once per module."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

CHROMIUM = Path(os.environ.get("CLOSELOOP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
# Upper bounds for waiting on a loaded machine; they assert nothing about speed.
WAIT_MS = 20_000

expect.set_options(timeout=WAIT_MS)


def chromium() -> Path:
    """The browser binary; a missing one fails the tests (never skips them)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"no chromium at {CHROMIUM}: closeloop's pages are tested in Debian's chromium. "
            "Run `make test` (as root it installs the package), or `apt-get install chromium`, "
            "or point CLOSELOOP_CHROMIUM at a chromium binary."
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()
