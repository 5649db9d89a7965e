"""The visitor page (``/visitor`` on the server) in Chromium with its fake
camera and microphone, against the real server, and an agent in Python (the
SDK's ``Client``) on a real plugin with its media hub."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import BrowserContext, Page

from kefu.media import MediaPeer
from kefu.sdk import Client, Reply
from kefu.visitor import Visitor
from tests.plugin.harness import Stack

from .harness import LIMIT, MEDIA, screenshot, wait_js

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
        Stack(tmp_path, media=MEDIA) as stack,
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
    assert playing == 320  # the plugin's camera (a test pattern), 320x240 in these tests
    assert "a1" in await page.inner_text(".tile figcaption")

    await screenshot(page, "visitor-in-call")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await screenshot(page, "visitor-phone-in-call")

    # the visitor hangs up: the agent hears visitorDisconnect, 005003
    await page.click("#hangup-btn")
    (ended,) = await replies(call, 1)
    assert (ended.sub_mark, ended.state) == ("visitorDisconnect", "005003")
    await wait_js(page, "() => document.getElementById('call-panel').classList.contains('hidden')")
    assert await page.evaluate("() => window.kefuVisitor.media.pc") is None
    await page.close()


async def in_call(
    context: BrowserContext, desk: Desk, name: str, query: str = ""
) -> tuple[Page, AsyncIterator[Reply], str]:
    """A visitor page in a call the agent made, its media connected: (page, the call's replies, call id)."""
    page = await open_visitor(context, desk, name, query)
    call = desk.agent.stream("callbackToVisitor", {"visitorName": name, "startVideo": True})
    (invite,) = await replies(call, 1)
    await page.wait_for_selector("#invite-dialog[open]", timeout=LIMIT * 1000)
    await page.click("#accept-btn")
    (accepted,) = await replies(call, 1)
    assert accepted.state == "006011"
    await stats(page, "s.state === 'connected' && s.inVideo > 0 && s.outVideo > 0")
    return page, call, str(invite.payload["callId"])


async def test_screen_share_from_the_browser_reaches_the_agent(context: BrowserContext, desk: Desk) -> None:
    page, call, call_id = await in_call(context, desk, "bob")
    share = desk.agent.stream("inviteShare")
    first = asyncio.ensure_future(anext(share))  # the request goes out on the first wait
    await page.wait_for_selector("#share-dialog[open]", timeout=LIMIT * 1000)
    await page.click("#share-yes")  # getDisplayMedia: Chromium's fake screen
    opened = await asyncio.wait_for(first, LIMIT)
    assert opened.sub_mark == "open" and opened.payload["callId"] == call_id
    peer = desk.hub_peer(call_id, "bob")
    screen = [await peer.next_frame("bob", "screen", within=LIMIT) for _ in range(3)]
    camera = await peer.next_frame("bob", "camera", within=LIMIT)  # the camera goes on beside it
    assert screen[-1].width >= 640 and camera.width >= 320
    assert (await desk.agent.is_share_state()) is True
    await page.wait_for_selector("#sharing-note:not(.hidden)", timeout=LIMIT * 1000)

    await page.click("#share-stop-btn")
    (closed,) = await replies(share, 1)
    assert closed.sub_mark == "close"
    assert (await desk.agent.is_share_state()) is False
    await wait_js(page, "() => window.kefuVisitor.media.screen === null")
    # the call goes on; the agent hangs up
    await desk.agent.video_disconnect()
    (ended,) = await replies(call, 1)
    assert (ended.sub_mark, ended.state) == ("kefuCloseVideoSuccess", "005004")
    await wait_js(page, "() => document.getElementById('call-panel').classList.contains('hidden')")
    await page.close()


async def test_a_photo_with_the_visitors_consent(context: BrowserContext, desk: Desk) -> None:
    page, _call, call_id = await in_call(context, desk, "cat")
    photo = asyncio.ensure_future(desk.agent.request("takePhoto"))
    await page.wait_for_selector("#photo-dialog[open]", timeout=LIMIT * 1000)
    await page.click("#photo-yes")
    reply = await asyncio.wait_for(photo, LIMIT)
    jpeg = base64.b64decode(reply.payload["base64"])
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG" and image.size == (reply.payload["width"], reply.payload["height"])
        assert image.width >= 640 and image.height >= 480
    assert reply.payload["visitorName"] == "cat" and reply.payload["callId"] == call_id
    await page.wait_for_selector(".msg.system >> text=Photo sent to the agent", timeout=LIMIT * 1000)

    # the visitor declines the next one
    photo = asyncio.ensure_future(desk.agent.stream("takePhoto").__anext__())
    await page.wait_for_selector("#photo-dialog[open]", timeout=LIMIT * 1000)
    await page.click("#photo-no")
    refused = await asyncio.wait_for(photo, LIMIT)
    assert refused.sub_mark == "error"
    await page.close()


async def test_photos_off_answer_the_specs_snapshot_disabled(context: BrowserContext, desk: Desk) -> None:
    page, _call, _call_id = await in_call(context, desk, "dan", "&photo=off")
    reply = await asyncio.wait_for(anext(desk.agent.stream("takePhoto")), LIMIT)
    # SPEC §4.4: {"mark":"takePhoto","subMark":"error","error":{"type":"snapShotDisabled","msg":"snapShotDisabled"}}
    assert reply.raw["mark"] == "takePhoto" and reply.sub_mark == "error"
    assert reply.raw["error"] == {"type": "snapShotDisabled", "msg": "snapShotDisabled"}
    assert await page.evaluate("() => document.getElementById('photo-dialog').open") is False
    await page.close()


async def test_queue_connection_state_and_a_video_request(context: BrowserContext, tmp_path: Path) -> None:
    async with Stack(tmp_path, media=MEDIA) as stack, Visitor(stack.server.url, "pam", timeout=LIMIT) as pam:
        await pam.send_message("first in line")
        page = await context.new_page()
        await page.goto(f"{stack.server.url}/visitor?name=quinn")
        await wait_js(page, "() => document.getElementById('conn').textContent === 'connected'")
        await chat(page, "hello?")
        await page.wait_for_selector("#queue-box:not(.hidden) >> text=#2", timeout=LIMIT * 1000)
        assert "Waiting for an agent" in await page.inner_text("#status")
        await pam.close_session()  # the one ahead leaves: quinn moves up, live
        await page.wait_for_selector("#queue-position >> text=#1", timeout=LIMIT * 1000)

        # the server restarts: the page says so, reconnects by itself, and is still first in line
        await stack.server.stop()
        await wait_js(page, "() => document.getElementById('conn').textContent === 'reconnecting…'")
        await stack.server.start()
        await wait_js(page, "() => document.getElementById('conn').textContent === 'connected'", limit=LIMIT)
        await page.wait_for_selector("#queue-position >> text=#1", timeout=LIMIT * 1000)

        # an agent becomes ready: the session is routed to it
        async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as agent:
            await agent.start_login(stack.login_url("a1"))
            await agent.set_agent_state("idle")
            await page.wait_for_selector("#agent-line >> text=a1", timeout=LIMIT * 1000)
            assert await page.is_hidden("#queue-box")

            # the visitor asks for video; the agent picks up; the page joins with its media
            states = agent.states()
            await page.click("#video-btn")
            await page.wait_for_selector("#call-status >> text=calling a1", timeout=LIMIT * 1000)
            while (await asyncio.wait_for(anext(states), LIMIT)).code.value != "004001":
                pass
            sid = (await agent.session_state())[0]["sessionId"]
            pick = agent.stream("videoPickUp", {"session_id": sid})
            got = await replies(pick, 2)
            assert [(r.sub_mark, r.state) for r in got] == [("success", "004001"), ("visitorJoin", "006013")]
            await stats(page, "s.state === 'connected' && s.inVideo > 0 && s.outVideo > 0")
            await agent.video_disconnect()
            (ended,) = await replies(pick, 1)
            assert (ended.sub_mark, ended.state) == ("kefuCloseVideoSuccess", "005008")
            await wait_js(page, "() => document.getElementById('call-panel').classList.contains('hidden')")
            assert await page.is_enabled("#video-btn")
        await page.close()


async def test_a_third_visitor_appears_as_a_tile_of_its_own(context: BrowserContext, desk: Desk) -> None:
    page, _call, _call_id = await in_call(context, desk, "fay")
    async with Visitor(desk.stack.server.url, "gus", timeout=LIMIT, on_invite="accept", media=MEDIA) as gus:
        third = desk.agent.stream("videoInviteVisitor", {"visitorName": "gus"})
        got = await replies(third, 2)
        assert [(r.sub_mark, r.state) for r in got] == [
            ("inviteSuccess", "007001"),
            ("acceptSuccess", "008001"),
        ]
        # the hub forwards gus's camera to fay: a second tile, named from the track's label
        await page.wait_for_selector(".tile figcaption >> text=gus", timeout=LIMIT * 1000)
        size = await wait_js(
            page,
            """() => [...document.querySelectorAll('.tile')]
                 .filter(t => t.querySelector('figcaption').textContent === 'gus')
                 .map(t => t.querySelector('video').videoWidth).filter(w => w > 0)[0]""",
        )
        assert size == 320  # gus's pattern camera, through the hub
        captions = await page.locator(".tile figcaption").all_inner_texts()
        assert sorted(captions) == ["Agent a1", "gus"]
        await gus.hangup()
        await page.wait_for_selector(".tile figcaption >> text=gus", state="detached", timeout=LIMIT * 1000)
    await desk.agent.video_disconnect()
    await page.close()


async def test_a_blind_transfer_moves_the_pages_media_to_the_new_agent(
    context: BrowserContext, desk: Desk, tmp_path: Path
) -> None:
    """Issue 20 (D30): the page closes its connection to a1's hub and answers a2's offer."""
    from kefu.plugin import Plugin
    from tests.plugin.harness import fast_settings

    plugin = Plugin(fast_settings(desk.stack.server.url, tmp_path / "plugin-a2", media=MEDIA))
    await plugin.start()
    try:
        async with Client(plugin.url, data_dir=plugin.settings.data_dir) as a2:
            await a2.start_login(desk.stack.login_url("a2"))
            await a2.set_agent_state("idle")
            page, _call, call_id = await in_call(context, desk, "tom")
            transfer = desk.agent.stream("transferCall", {"agentName": "a2", "note": "savings"})
            (asked,) = await replies(transfer, 1)
            assert (asked.sub_mark, asked.state) == ("inviteSuccess", "007003")
            picked = await a2.request("multipleVideoPickUp")
            assert (picked.sub_mark, picked.state) == ("acceptSuccess", "006023")
            (done,) = await replies(transfer, 1)
            assert (done.sub_mark, done.state) == ("transferSuccess", "005011")
            await page.wait_for_selector(
                ".msg.system >> text=Your call is now with agent a2", timeout=LIMIT * 1000
            )
            # a2's plugin is the hub now: it receives the page's camera, the page shows a2's
            assert plugin.media is not None
            hub = plugin.media.calls[call_id].hub  # type: ignore[union-attr]
            frame = await hub.peer("tom").next_frame("tom", "camera", within=LIMIT)
            assert frame.width >= 320
            await wait_js(
                page,
                """() => [...document.querySelectorAll('.tile')].some(t =>
                    t.querySelector('figcaption').textContent.includes('a2') &&
                    t.querySelector('video').videoWidth > 0)""",
            )
            await screenshot(page, "visitor-after-transfer")
            await page.click("#hangup-btn")
            await wait_js(page, "() => document.getElementById('call-panel').classList.contains('hidden')")
            await page.close()
    finally:
        await plugin.aclose()


async def test_a_call_waiting_in_a_teams_queue_shows_the_waiting_state_then_the_new_agent(
    context: BrowserContext, desk: Desk, tmp_path: Path
) -> None:
    """Issue 20 (D50): a blind transfer to a team none of whose agents is ready: the page says
    it waits, with its place, and shows no agent's media; the team's agent who becomes ready
    picks up, its plugin is the hub and the page shows its video."""
    from kefu.plugin import Plugin
    from kefu.server.teams import add_team, assign
    from tests.plugin.harness import fast_settings

    server = desk.stack.server
    await add_team(server.services.store, "loans", now=server.settings.now())
    await assign(server.services.store, "loans", "a2")
    plugin = Plugin(fast_settings(server.url, tmp_path / "plugin-a2", media=MEDIA))
    await plugin.start()
    try:
        async with Client(plugin.url, data_dir=plugin.settings.data_dir) as a2:
            await a2.start_login(desk.stack.login_url("a2"))  # logged in, not ready
            page, _call, call_id = await in_call(context, desk, "una")
            transfer = desk.agent.stream("transferCall", {"teamName": "loans"})
            (queued,) = await replies(transfer, 1)
            assert (queued.sub_mark, queued.state) == ("queued", "005015")
            await page.wait_for_selector(
                ".msg.system >> text=you are number 1 in the queue", timeout=LIMIT * 1000
            )
            status = await page.locator("#call-status").inner_text()
            assert "waiting for an agent (#1)" in status
            assert await page.locator(".tile").count() == 0  # no agent's media while it waits
            await screenshot(page, "visitor-waiting-in-queue")
            states = a2.states()
            await a2.set_agent_state("idle")

            async def rung() -> None:  # the waiting call rings a2 once it is ready
                async for change in states:
                    if change.code.value == "004003":
                        return

            await asyncio.wait_for(rung(), LIMIT)
            await states.aclose()
            picked = await a2.request("multipleVideoPickUp")
            assert (picked.sub_mark, picked.state) == ("acceptSuccess", "006023")
            await page.wait_for_selector(
                ".msg.system >> text=Your call is now with agent a2", timeout=LIMIT * 1000
            )
            assert plugin.media is not None
            hub = plugin.media.calls[call_id].hub  # type: ignore[union-attr]
            frame = await hub.peer("una").next_frame("una", "camera", within=LIMIT)
            assert frame.width >= 320
            await wait_js(
                page,
                """() => [...document.querySelectorAll('.tile')].some(t =>
                    t.querySelector('figcaption').textContent.includes('a2') &&
                    t.querySelector('video').videoWidth > 0)""",
            )
            await page.click("#hangup-btn")
            await wait_js(page, "() => document.getElementById('call-panel').classList.contains('hidden')")
            await page.close()
    finally:
        await plugin.aclose()
