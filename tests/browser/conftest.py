"""Fixtures of the browser tests: one Chromium for the session, a fresh
context (cookies, storage, permissions) per test.

Chromium takes seconds to start, so it is launched once, on the session's
event loop; every browser test runs on that loop too
(``pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]``)
and so do the fixtures it uses (``@pytest_asyncio.fixture(loop_scope="session")``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, async_playwright

from .harness import CHROMIUM, CHROMIUM_ARGS


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set KEFU_TEST_CHROMIUM)")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    _need_chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def other_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A second person's browser (its own window: a page in a background tab of the
    same window would have its timers and animation frames throttled)."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield ctx
    finally:
        await ctx.close()
