"""The visitor page (``/visitor`` on the server) in Chromium with its fake
camera and microphone, against the real server, and an agent in Python (the
SDK's ``Client``) on a real plugin with its media hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page

from kefu.media import MediaPeer
from kefu.sdk import Client, Reply
from tests.plugin.harness import Stack

from .harness import LIMIT, screenshot, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

#: What the page's peer connection reports (getStats), for the test to check.
STATS_JS = """async () => {
    const pc = window.kefuVisitor.media.pc;
    if (!pc) return null;
    const out = {inVideo: 0, inAudio: 0, outVideo: 0, outAudio: 0, pair: null, state: pc.connectionState};
    const report = await pc.getStats();
    const byId = {};
    report.forEach(s => { byId[s.id] = s; });
    report.forEach(s => {
        if (s.type === "inbound-rtp" && s.kind === "video") out.inVideo += s.framesDecoded || 0;
        if (s.type === "inbound-rtp" && s.kind === "audio") out.inAudio += s.packetsReceived || 0;
        if (s.type === "outbound-rtp" && s.kind === "video") out.outVideo += s.framesEncoded || 0;
        if (s.type === "outbound-rtp" && s.kind === "audio") out.outAudio += s.packetsSent || 0;
        if (s.type === "transport" && s.selectedCandidatePairId) {
            const p = byId[s.selectedCandidatePairId];
            out.pair = [byId[p.localCandidateId].address, byId[p.remoteCandidateId].address];
        }
    });
    return out;
}"""


class Desk:
    """A plugin with agent a1 logged in and ready (the Python SDK), and the server's pages."""

    def __init__(self, stack: Stack, agent: Client) -> None:
        self.stack = stack
        self.agent = agent

    def page_url(self, path: str) -> str:
        return self.stack.server.url + path

    def hub_peer(self, call_id: str, member: str) -> MediaPeer:
        media = self.stack.p.media
        assert media is not None
        call = media.calls[call_id]
        return call.hub.peer(member)  # type: ignore[union-attr]


@pytest_asyncio.fixture(loop_scope="session")
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with (
        Stack(tmp_path) as stack,
        Client(stack.p.url, data_dir=stack.p.settings.data_dir) as agent,
    ):
        await agent.start_login(stack.login_url("a1"))
        await agent.set_agent_state("idle")
        yield Desk(stack, agent)


async def open_visitor(context: BrowserContext, desk: Desk, name: str, query: str = "") -> Page:
    page = await context.new_page()
    await page.goto(desk.page_url(f"/visitor?name={name}{query}"))
    await wait_js(page, "() => document.getElementById('conn').textContent === 'connected'")
    return page


async def chat(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#chat-form button[type=submit]")


async def replies(stream: AsyncIterator[Reply], n: int) -> list[Reply]:
    return [await asyncio.wait_for(anext(stream), LIMIT) for _ in range(n)]


async def stats(page: Page, where: str) -> dict[str, Any]:
    """The page's media figures once ``where`` (JS over ``s``) holds. The page
    takes them every 100 ms (getStats is asynchronous; the wait reads the latest)."""
    await page.evaluate(
        f"""() => {{
            if (window.__statsTimer) return;
            const take = {STATS_JS};
            window.__statsTimer = setInterval(async () => {{ window.__stats = await take(); }}, 100);
        }}"""
    )
    found: dict[str, Any] = await wait_js(
        page, f"() => {{ const s = window.__stats; return s && ({where}) ? s : null; }}"
    )
    return found


async def test_chat_then_the_agent_calls_and_media_flows_both_ways(
    context: BrowserContext, desk: Desk
) -> None:
    page = await open_visitor(context, desk, "ann")
    await chat(page, "Hello, I need help with my card")
    session = await wait_js(
        page, "() => window.kefuVisitor.state.session && window.kefuVisitor.state.session.status === 'open'"
    )
    assert session
    assert "a1" in await page.inner_text("#agent-line")

    # the agent answers in the chat, then calls the visitor out
    sid = (await desk.agent.session_state())[0]["sessionId"]
    await desk.agent.send_message(sid, "Hello Ann, let me call you")
    await page.wait_for_selector(".msg.them >> text=let me call you", timeout=LIMIT * 1000)
    call = desk.agent.stream("callbackToVisitor", {"visitorName": "ann", "startVideo": True})
    (invite,) = await replies(call, 1)
    assert (invite.sub_mark, invite.state) == ("inviteSuccess", "003001")
    call_id = invite.payload["callId"]

    # the page shows the invitation; the visitor accepts
    await page.wait_for_selector("#invite-dialog[open]", timeout=LIMIT * 1000)
    assert "a1" in await page.inner_text("#invite-text")
    await page.click("#accept-btn")
    (accepted,) = await replies(call, 1)
    assert (accepted.sub_mark, accepted.state) == ("acceptSuccess", "006011")

    # media both ways
    figures = await stats(
        page, "s.state === 'connected' && s.inVideo > 10 && s.inAudio > 10 && s.outVideo > 10"
    )
    # the hub offers 127.0.0.1 only and the page answers with loopback candidates only; Chromium
    # may still check from a socket on another local interface towards 127.0.0.1 (the hub, as the
    # controlling side, nominates that pair when it answers first): the hub's end is loopback
    assert figures["pair"][1] == "127.0.0.1"
    peer = desk.hub_peer(call_id, "ann")
    frames = [await peer.next_frame("ann", "camera", within=LIMIT) for _ in range(5)]
    assert all(f.width >= 320 and f.height >= 240 for f in frames)  # Chromium's fake camera
    received = await peer.stats()
    assert received.packets_received["video"] > 0 and received.packets_received["audio"] > 0
    await page.wait_for_selector(".tile video", timeout=LIMIT * 1000)
    playing = await wait_js(
        page,
        "() => { const v = document.querySelector('.tile video'); return v && v.videoWidth > 0 && v.videoWidth; }",
    )
    assert playing == 640  # the plugin's camera (a test pattern), 640x480
    assert "a1" in await page.inner_text(".tile figcaption")

    await screenshot(page, "visitor-in-call")

    # the visitor hangs up: the agent hears visitorDisconnect, 005003
    await page.click("#hangup-btn")
    (ended,) = await replies(call, 1)
    assert (ended.sub_mark, ended.state) == ("visitorDisconnect", "005003")
    await wait_js(page, "() => document.getElementById('call-panel').classList.contains('hidden')")
    assert await page.evaluate("() => window.kefuVisitor.media.pc") is None
    await page.close()
