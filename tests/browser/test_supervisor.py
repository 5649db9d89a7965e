"""The supervisor's floor page (``/supervisor``) in Chromium: signing in, a live floor that
changes as agents change state and visitors queue (no reload), actions on an agent, and an
agent refused the floor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page

from kefu.server.reasons import add_reason
from kefu.server.teams import add_team, assign, set_supervisor
from tests.conftest import PASSWORD, Clock, ServerHandle, fast_settings

from .harness import LIMIT, screenshot, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

MS = LIMIT * 1000


@pytest_asyncio.fixture(loop_scope="session")
async def server(tmp_path: Path) -> AsyncIterator[ServerHandle]:
    handle = ServerHandle(fast_settings(tmp_path / "data", Clock(), floor_push_interval=0.0))
    await handle.start()
    sv = handle.services
    for name in ("a1", "a2", "sup"):
        await handle.add_agent(name)
    await set_supervisor(sv.store, "sup")
    await add_team(sv.store, "t1", now=handle.settings.now())
    for name in ("a1", "a2", "sup"):
        await assign(sv.store, "t1", name)
    await add_reason(sv.store, "LUNCH", "Lunch break", now=handle.settings.now())
    try:
        yield handle
    finally:
        await handle.stop()


async def sign_in(context: BrowserContext, server: ServerHandle, name: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{server.url}/supervisor")
    await page.wait_for_selector("#login:not(.hidden)", timeout=MS)
    await page.fill("#login-name", name)
    await page.fill("#login-pwd", PASSWORD)
    await page.click("#login-btn")
    return page


async def agent_state(page: Page, name: str, code: str) -> None:
    await wait_js(
        page,
        "([n, c]) => { const r = document.querySelector(`tr[data-agent='${n}']`); return r && r.dataset.state === c; }",
        [name, code],
    )


async def test_the_floor_updates_live_without_reload(context: BrowserContext, server: ServerHandle) -> None:
    page = await sign_in(context, server, "sup")
    await page.wait_for_selector("#floor:not(.hidden)", timeout=MS)
    await page.wait_for_selector("#live-pill.ok", timeout=MS)
    await agent_state(page, "a1", "000000")
    rows = await page.eval_on_selector_all("#agents tbody tr", "rs => rs.map(r => r.dataset.agent)")
    assert rows == ["a1", "a2", "sup"]
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url))

    a1 = await server.agent("a1", add=False)  # logs in: not ready
    await agent_state(page, "a1", "001000")
    await a1.call("setAgentState", {"state": "busy", "reason": "LUNCH"})
    await wait_js(
        page, "() => document.querySelector(\"tr[data-agent='a1'] .reason\").textContent === 'Lunch break'"
    )
    # a visitor queues: the queue shows it, the figures count it
    v1 = await server.visitor("v1")
    sid = (await v1.send_message("hello"))["sessionId"]
    await page.wait_for_selector(f"#queue tr[data-session='{sid}']", timeout=MS)
    assert await page.inner_text("#m-waiting") == "1"
    assert await page.inner_text("#reasons tr[data-reason='LUNCH'] td") == "Lunch break"
    # the agent becomes ready: it takes the session, the queue empties
    await a1.call("setAgentState", {"state": "idle"})
    await a1.next_event("sessionAssigned")
    await page.wait_for_selector(f"#queue tr[data-session='{sid}']", state="detached", timeout=MS)
    await wait_js(
        page, "() => document.querySelector(\"tr[data-agent='a1'] .sessions\").textContent === '1 / 5'"
    )
    assert await page.inner_text("#m-answered") == "1 / 1"
    assert navigations == []  # all of it without a reload
    frames = await page.evaluate("window.kefuFloor.frames")
    assert frames >= 4

    # the supervisor sets a1 not ready with a reason, then logs it out, from the page
    await page.select_option("tr[data-agent='a1'] select", "LUNCH")
    await page.click("tr[data-agent='a1'] >> text=Not ready")
    await agent_state(page, "a1", "001000")
    push = await a1.next_event(mark="state")
    while "by" not in push["payload"]:  # its own earlier changes first
        push = await a1.next_event(mark="state")
    assert push["payload"]["by"] == "sup" and push["payload"]["reason"] == "LUNCH"
    await wait_js(
        page, "() => document.querySelector(\"tr[data-agent='a1'] .reason\").textContent.includes('by sup')"
    )
    await page.click("tr[data-agent='a1'] >> text=Log out")
    await agent_state(page, "a1", "000000")
    await screenshot(page, "supervisor-floor")


async def test_an_agent_is_refused_the_floor(context: BrowserContext, server: ServerHandle) -> None:
    page = await sign_in(context, server, "a2")
    await page.wait_for_selector("#refused:not(.hidden)", timeout=MS)
    assert "supervisors" in await page.inner_text("#refused-msg")
    assert await page.is_hidden("#floor")


async def test_a_call_waiting_in_the_teams_queue_shows_live(
    context: BrowserContext, server: ServerHandle
) -> None:
    from tests.server.test_calls import state, visitor

    page = await sign_in(context, server, "sup")
    await page.wait_for_selector("#live-pill.ok", timeout=MS)
    a1 = await server.agent("a1", add=False, ready=True)
    v = await visitor(server, "v1")
    call_id = (await a1.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(a1, "003001")
    await state(a1, "006011")
    await a1.call("transferCall", {"teamName": "t1", "mode": "blind"})  # a2 is not connected: it waits
    row = f"#call-queue tr[data-call='{call_id}']"
    await page.wait_for_selector(row, timeout=MS)
    assert await page.inner_text(f"{row} .team") == "t1"
    assert await page.inner_text("#call-queue-count") == "(1)"
    await v.call("hangup", {"callId": call_id})
    await page.wait_for_selector(row, state="detached", timeout=MS)
    assert await page.inner_text("#call-queue-count") == "(0)"
