"""Done-when of issue 16 in a browser: the visitor page in Debian's Chromium on
the visitor's network (tests/netns/page.py), called out by the agent's
``IMClient`` on the agent's network. The two networks reach only the data
centre, so the page's camera can reach the agent's media hub only through
coturn, with the credentials the server gave the page in its hello.

Chromium's fake camera paints a known picture (a bright green "pacman" that
turns, bright corners and a time stamp, on a dark green ground): the hub's snapshots of the page's video show
it, and two of them differ (frames keep coming, not one frozen picture)."""

from __future__ import annotations

import base64
import io
import time

from PIL import Image as PILImage
from PIL import ImageChops

from tests.browser.harness import ARTIFACTS

from .conftest import LIMIT, Lines, Network
from .test_relay import callback
from .topology import TURN_ADDRESS


async def page_do(page: Lines, cmd: dict[str, object], answer: str) -> dict[str, object]:
    start = len(page.seen)
    page.send(cmd)
    got = await page.find(lambda m: m.get("event") in (answer, "error"), start=start)
    assert got["event"] == answer, got
    return got


async def snapshot(net: Network, agent: Lines) -> PILImage.Image:
    shot = await callback(agent, net.call(agent, "snapshot"), "success")
    jpeg = base64.b64decode(shot["data"]["payload"]["base64"])  # type: ignore[index]
    return PILImage.open(io.BytesIO(jpeg)).convert("RGB")


def fake_camera(img: PILImage.Image) -> tuple[float, float]:
    """The shares of the picture in Chromium's fake camera's two greens: its ground
    (about (0, 134, 0)) and its pacman and corner squares (about (0..80, 255, 0..20))."""
    data = img.tobytes()
    ground = bright = 0
    for r, g, b in zip(data[0::3], data[1::3], data[2::3], strict=True):
        if r < 30 and 110 < g < 160 and b < 30:
            ground += 1
        elif r < 120 and g > 220 and b < 60:
            bright += 1
    total = img.size[0] * img.size[1]
    return ground / total, bright / total


async def test_the_visitor_page_in_chromium_is_called_out_through_the_relay(tls_network: Network) -> None:
    net = tls_network
    agent = await net.agent("a1")
    page = await net.page("visitor", "pv1")
    assert page.seen[-1]["event"] == "connected", page.seen[-1]
    rid = net.call(agent, "callbackToVisitor", {"visitorName": "pv1"})
    await page_do(page, {"cmd": "accept"}, "accepted")
    await callback(agent, rid, "acceptSuccess")
    # the page sends its camera and decodes the agent's, over a pair with a relay candidate:
    # nothing else joins the two networks
    figures = await page_do(
        page,
        {"cmd": "stats", "where": "s.state === 'connected' && s.outVideo > 15 && s.inVideo > 15"},
        "stats",
    )
    assert "relay" in figures["route"], figures  # type: ignore[operator]
    assert TURN_ADDRESS in figures["addresses"], figures  # type: ignore[operator]
    # the hub has the page's camera: Chromium's picture, and it moves
    first = await snapshot(net, agent)
    ground, bright = fake_camera(first)
    assert first.size[0] >= 320 and ground > 0.7 and bright > 0.005, (first.size, ground, bright)
    deadline = time.monotonic() + LIMIT
    while True:
        later = await snapshot(net, agent)
        moved = ImageChops.difference(first, later).getbbox() is not None
        if moved or time.monotonic() > deadline:
            break
    assert moved, "the hub's snapshots of the page's camera did not change"
    ARTIFACTS.mkdir(exist_ok=True)
    later.save(ARTIFACTS / "netns-page-camera-at-hub.jpg")
    await page_do(
        page, {"cmd": "screenshot", "path": str(ARTIFACTS / "netns-page-in-call.png")}, "screenshot"
    )
    await callback(agent, net.call(agent, "videoDisconnect"), "success")
    hidden = "() => document.getElementById('call-panel').classList.contains('hidden')"
    await page_do(page, {"cmd": "wait", "js": hidden}, "waited")
