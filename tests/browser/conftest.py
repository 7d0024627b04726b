"""Headless Chromium (Debian's package) driven by Playwright, for the browser tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from config import Settings

CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it off the (closed) network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

# Tests run on parallel workers that share two cores with their Chromiums: what appears
# within a few hundred milliseconds alone can take seconds then. Waiting longer hides no
# bug (a missing update still fails), it only stops a busy machine from failing a test.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests save what they saw: a temporary folder (the run never rewrites
    tracked files such as docs/screenshots/; scripts/screenshots makes those from the demo).
    SWITCHBOARD_TEST_SCREENSHOTS names a folder to keep them in instead."""
    kept = os.environ.get("SWITCHBOARD_TEST_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium; each test opens its own contexts (separate people)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The browser tests also serve the demo website at /demo."""
    return settings.model_copy(update={"demo_page": True})
