"""The visitor page (``/visitor``) in Debian's Chromium, in a call whose media goes
through Janus (SFU mode): the page publishes its fake camera once and answers the
server's offer of the agent's feed with a recvonly connection of its own.

Everything runs in the ``dc`` namespace: Playwright's driver and Chromium are started
from the test's thread, which is inside it, so the page reaches the server on the
namespace's 127.0.0.1 (a secure context: the camera is allowed on plain http there)
and Janus on its host address."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from av import VideoFrame
from PIL import Image as PILImage
from PIL import ImageChops
from playwright.async_api import Page, async_playwright

from kefu.media import SfuMember, TrackRemoved
from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, page_stats
from tests.e2e.callkit import SMALL_MEDIA, AgentSide
from tests.media.conftest import Events
from tests.netns.test_browser import fake_camera
from tests.plugin.harness import LIMIT

from .conftest import DataCentre
from .netns import HOST
from .test_calls_sfu import frame_of

pytestmark = [pytest.mark.media, pytest.mark.browser]

MEDIA = replace(SMALL_MEDIA, host_addresses=(HOST,))

#: The page's SFU figures: frames its publisher encoded, frames decoded from each feed.
STATS = """async () => {
    const m = window.kefuVisitor.media;
    if (!m.pc || !m.sfu) return null;
    const out = {outVideo: 0, inVideo: {}, state: m.pc.connectionState, feeds: Object.keys(m.subs)};
    (await m.pc.getStats()).forEach(s => {
        if (s.type === "outbound-rtp" && s.kind === "video") out.outVideo += s.framesEncoded || 0;
    });
    for (const key of Object.keys(m.subs)) {
        out.inVideo[key] = 0;
        (await m.subs[key].pc.getStats()).forEach(s => {
            if (s.type === "inbound-rtp" && s.kind === "video") out.inVideo[key] += s.framesDecoded || 0;
        });
    }
    return out;
}"""


async def stats(page: Page, where: str) -> dict[str, Any]:
    return await page_stats(page, STATS, where, LIMIT)


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing")


@pytest.fixture
async def page(dc: DataCentre) -> AsyncIterator[Page]:
    _need_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"],
            headless=True,
        )
        try:
            yield await browser.new_page(viewport={"width": 1280, "height": 800})
        finally:
            await browser.close()


async def snapshot(agent: AgentSide) -> PILImage.Image:
    shot = await agent.call("snapshot").callback("success")
    return PILImage.open(io.BytesIO(base64.b64decode(shot["payload"]["base64"]))).convert("RGB")


async def test_the_visitor_page_publishes_and_subscribes_through_janus(
    dc: DataCentre, page: Page, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        await dc.server.add_agent("a1")
        a1 = AgentSide(dc.server, "a1", tmp_path / "plugin-a1", media=MEDIA)
        stack.push_async_callback(a1.close)
        await a1.start(ready=True)
        await page.goto(dc.server.url + "/visitor?name=pv1")
        await page.wait_for_function(
            "() => document.getElementById('conn').textContent === 'connected'", timeout=LIMIT * 1000
        )
        c = a1.call("callbackToVisitor", {"visitorName": "pv1"})
        await page.wait_for_selector("#invite-dialog[open]", timeout=LIMIT * 1000)
        await page.click("#accept-btn")
        await c.callback("acceptSuccess", "006011")
        # the page sends its camera to Janus and decodes the agent's feed from it
        figures = await stats(
            page, "s.state === 'connected' && s.outVideo > 15 && (s.inVideo['agent:a1'] || 0) > 15"
        )
        assert figures["feeds"] == ["agent:a1"], figures
        signals = await page.evaluate("() => window.kefuVisitor.media.signals")
        assert {"answer", "offer"} <= {s["type"] for s in signals if s["from"]["kind"] == "sfu"}
        await page.wait_for_function(
            "() => { const v = document.querySelector('.tile video'); return v && v.videoWidth === 320; }",
            timeout=LIMIT * 1000,
        )
        assert "a1" in await page.inner_text(".tile figcaption")
        # the agent's plugin receives the page's camera (Chromium's picture) through Janus, moving
        first = await snapshot(a1)
        ground, bright = fake_camera(first)
        assert first.size[0] >= 320 and ground > 0.5 and bright > 0.003, (first.size, ground, bright)
        for _ in range(50):
            later = await snapshot(a1)
            if ImageChops.difference(first, later).getbbox() is not None:
                break
        else:
            raise AssertionError("the plugin's snapshots of the page's camera did not change")
        # the agent ends the call: the page closes its publisher and subscriptions
        await a1.call("videoDisconnect").callback("success", "005004")
        await page.wait_for_function(
            "() => document.getElementById('call-panel').classList.contains('hidden')", timeout=LIMIT * 1000
        )
        left = await page.evaluate(
            "() => [window.kefuVisitor.media.pc, Object.keys(window.kefuVisitor.media.subs)]"
        )
        assert left == [None, []]


async def test_a_second_agent_is_a_tile_of_its_own_until_it_leaves(
    dc: DataCentre, page: Page, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        agents: dict[str, AgentSide] = {}
        for name in ("a1", "a2"):
            await dc.server.add_agent(name)
            agents[name] = AgentSide(dc.server, name, tmp_path / f"plugin-{name}", media=MEDIA)
            stack.push_async_callback(agents[name].close)
            await agents[name].start(ready=True)
        a1, a2 = agents["a1"], agents["a2"]
        await page.goto(dc.server.url + "/visitor?name=pv1")
        await page.wait_for_function(
            "() => document.getElementById('conn').textContent === 'connected'", timeout=LIMIT * 1000
        )
        c = a1.call("callbackToVisitor", {"visitorName": "pv1"})
        await page.wait_for_selector("#invite-dialog[open]", timeout=LIMIT * 1000)
        await page.click("#accept-btn")
        await c.callback("acceptSuccess", "006011")
        invite = a1.call("videoInviteAgent", {"agentName": "a2"})
        await a2.state("004002")
        await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006014")
        await invite.callback("acceptSuccess", "008002")
        # the page decodes both agents' feeds, each on its own connection and tile
        await stats(page, "(s.inVideo['agent:a1'] || 0) > 10 && (s.inVideo['agent:a2'] || 0) > 10")
        await page.wait_for_function(
            "() => document.querySelectorAll('.tile video').length === 2", timeout=LIMIT * 1000
        )
        # and the second agent receives the page's camera from its own subscription
        ground, _bright = fake_camera(await snapshot(a2))
        assert ground > 0.5, ground
        # a2 leaves: Janus's leave closes the page's subscription and its tile, the call goes on
        await a2.call("videoDisconnect").callback("success", "005010")
        await invite.callback("exitSuccess", "006010")
        await page.wait_for_function(
            "() => Object.keys(window.kefuVisitor.media.subs).join() === 'agent:a1'"
            " && document.querySelectorAll('.tile video').length === 1",
            timeout=LIMIT * 1000,
        )
        assert "a1" in await page.inner_text(".tile figcaption")
        signals = await page.evaluate("() => window.kefuVisitor.media.signals")
        assert {"kind": "agent", "name": "a2"} in [s.get("feed") for s in signals if s["type"] == "leave"]
        before = (await stats(page, "true"))["inVideo"]["agent:a1"]
        await page.evaluate("() => { window.__stats = null; }")
        await stats(page, f"s.inVideo['agent:a1'] > {before + 10}")  # a1's video still comes


async def test_the_page_shares_its_screen_through_janus(dc: DataCentre, page: Page, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        await dc.server.add_agent("a1")
        a1 = AgentSide(dc.server, "a1", tmp_path / "plugin-a1", media=MEDIA)
        stack.push_async_callback(a1.close)
        await a1.start(ready=True)
        await page.goto(dc.server.url + "/visitor?name=pv1")
        await page.wait_for_function(
            "() => document.getElementById('conn').textContent === 'connected'", timeout=LIMIT * 1000
        )
        c = a1.call("callbackToVisitor", {"visitorName": "pv1"})
        await page.wait_for_selector("#invite-dialog[open]", timeout=LIMIT * 1000)
        await page.click("#accept-btn")
        await c.callback("acceptSuccess", "006011")
        await stats(page, "s.state === 'connected' && s.outVideo > 5")
        media = a1.plugin.hub
        assert isinstance(media, SfuMember)
        camera = await frame_of(media, "pv1")
        # inviteShare: the page publishes Chromium's fake screen as a second track of its feed
        share = a1.call("inviteShare")
        await page.wait_for_selector("#share-dialog[open]", timeout=LIMIT * 1000)
        await page.click("#share-yes")
        await share.callback("open")
        sub = media.subscription("pv1")
        screen = [await sub.next_frame("pv1", "screen", within=LIMIT) for _ in range(3)]
        assert isinstance(screen[-1], VideoFrame)
        # the fake screen is not the fake camera: a picture of its own, at its own size
        assert screen[-1].width >= 640 and (screen[-1].width, screen[-1].height) != (
            camera.width,
            camera.height,
        )
        assert (await a1.call("isShareState").callback("success"))["data"] is True
        assert await sub.next_frame("pv1", "camera", within=LIMIT)  # the camera goes on beside it
        # the page stops: the share closes, the agent's subscription loses the screen
        tracks = Events()
        media.events.subscribe(tracks)
        await page.click("#share-stop-btn")
        await share.callback("close")
        assert (await a1.call("isShareState").callback("success"))["data"] is False
        await tracks.wait_for(lambda e: isinstance(e, TrackRemoved) and e.role == "screen", LIMIT)
        assert sub.received_track("pv1", "screen") is None
        await a1.call("videoDisconnect").callback("success", "005004")
