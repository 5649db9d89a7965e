"""The floor page (``/supervisor``) in Chromium helping in a real media call (issue 20):
signing in also signs the supervisor's own plugin in; "Monitor" on the agent's row,
then Whisper, Barge and Leave drive that plugin (imclient.js); the floor shows where the
supervisor helps; the agent's hub hears the supervisor's tone only once it whispers; the
agent's console (``/agent``) says what the supervisor is doing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from av import AudioFrame
from playwright.async_api import BrowserContext

from kefu.media.pattern import tone_for, tone_of
from kefu.plugin.supervising import SupervisorCall
from kefu.server.teams import add_team, assign, set_supervisor
from kefu.visitor import CallUpdate, MediaStatus, Visitor
from tests.conftest import PASSWORD as AGENT_PASSWORD
from tests.e2e.callkit import SMALL_MEDIA, AgentSide
from tests.plugin.harness import PASSWORD, Stack

from .harness import LIMIT, MEDIA, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.asyncio(loop_scope="session")]

MS = LIMIT * 1000


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The server (a3 and the supervisor boss in team t1) and boss's plugin."""
    async with Stack(tmp_path, media=MEDIA) as s:
        sv = s.server.services
        await s.server.add_agent("boss")
        await s.server.add_agent("a3", AGENT_PASSWORD)  # driven by tests.e2e.callkit's AgentSide
        await set_supervisor(sv.store, "boss")
        await add_team(sv.store, "t1", now=s.server.settings.now())
        for name in ("a3", "boss"):
            await assign(sv.store, "t1", name)
        yield s


async def test_the_floor_page_monitors_whispers_barges_and_leaves(
    context: BrowserContext, stack: Stack, tmp_path: Path
) -> None:
    a1 = await AgentSide(stack.server, "a3", tmp_path / "plugin-a3", media=SMALL_MEDIA).start(ready=True)  # type: ignore[arg-type]
    v = Visitor(stack.server.url, "v1", timeout=LIMIT, media=SMALL_MEDIA, on_invite="accept")
    try:
        await v.connect()
        accepted = await a1.call("callbackToVisitor", {"visitorName": "v1"}).callback(
            "acceptSuccess", "006011"
        )
        call_id = accepted["payload"]["callId"]
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        # the agent's console takes over its plugin (one page controls a plugin): it shows the
        # supervisor's presence
        assert a1.client is not None
        await a1.client.aclose()
        a1.client = None
        console = await context.new_page()
        await console.goto(f"{stack.server.url}/agent?plugin={a1.plugin.url}")
        await console.wait_for_selector("#console:not(.hidden)", timeout=MS)

        page = await context.new_page()
        await page.goto(f"{stack.server.url}/supervisor?plugin=ws://127.0.0.1:{stack.p.port}")
        await page.wait_for_selector("#login:not(.hidden)", timeout=MS)
        await page.fill("#login-name", "boss")
        await page.fill("#login-pwd", PASSWORD)
        await page.click("#login-btn")
        await page.wait_for_selector("#floor:not(.hidden)", timeout=MS)
        await page.wait_for_selector("#plugin-pill >> text=plugin: signed in", timeout=MS)

        # Monitor on a1's row: the supervisor's plugin joins the call, silent
        await page.locator("tr[data-agent='a3']").get_by_role("button", name="Monitor").click()
        await page.wait_for_selector("#help-state >> text=listening", timeout=MS)
        await page.wait_for_selector("tr[data-agent='boss'] .calls >> text=monitor", timeout=MS)
        await console.wait_for_selector("#supervisor-pill >> text=supervisor boss is listening", timeout=MS)
        hub = a1.plugin.hub
        assert hub is not None
        assert stack.p.media is not None
        mine = stack.p.media.calls[call_id]
        assert isinstance(mine, SupervisorCall)
        await mine.member.peer.next_frame("v1", "camera", within=LIMIT)  # it receives the call
        assert not any(r.label.member == "boss" for r in hub.peer("boss").received)

        # Whisper: the agent's hub hears the supervisor's tone; the visitor is not told
        await page.click("#whisper-btn")
        await page.wait_for_selector("#help-state >> text=whispering", timeout=MS)
        await console.wait_for_selector("#supervisor-pill >> text=is whispering to you", timeout=MS)
        frames = [await hub.peer("boss").next_frame("boss", "mic", within=LIMIT) for _ in range(12)]
        hz = tone_of([f for f in frames[2:] if isinstance(f, AudioFrame)])
        assert abs(hz - tone_for("boss")) < 40.0, hz
        assert not any(isinstance(e, CallUpdate) and e.name == "boss" for e in v.timeline)

        # Barge: the visitor is told of the supervisor joining
        await page.click("#barge-btn")
        await page.wait_for_selector("#help-state >> text=everyone hears", timeout=MS)
        await v.wait_for(CallUpdate, lambda e: e.what == "memberJoined" and e.name == "boss", within=LIMIT)
        await page.wait_for_selector("tr[data-agent='boss'] .calls >> text=barge", timeout=MS)
        await screenshot(page, "supervisor-barge")
        await console.wait_for_selector("#supervisor-pill >> text=is in the call", timeout=MS)
        await screenshot(console, "agent-console-supervisor-barge")

        # Leave
        await page.click("#leave-btn")
        await page.wait_for_selector("#help-state >> text=not in a call", timeout=MS)
        await v.wait_for(CallUpdate, lambda e: e.what == "memberLeft" and e.name == "boss", within=LIMIT)
        await stack.p.media.wait_closed()
        assert call_id not in stack.p.media.calls
        await console.wait_for_selector("#supervisor-pill >> text=supervisor boss left the call", timeout=MS)
        await page.close()
        await console.close()
    finally:
        await v.aclose()
        await a1.close()
