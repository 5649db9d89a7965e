"""Real WebRTC media through the whole stack: server + plugins (aiortc, the
primary agent's plugin is the hub) + ``IMClient`` + Python visitors, on
127.0.0.1 only. Small video (320x240 at 15 fps); every member sends its own
test pattern colour (``kefu.media.colour_for``), so who receives whom is
checked by colour."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from av import VideoFrame
from PIL import Image as PILImage

from kefu.media import MediaHub, MediaPeer, colour_for, sample_rgb
from kefu.plugin.media import MemberCall
from kefu.visitor import MediaStatus, SessionAssigned, Visitor
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT

from .callkit import SMALL_MEDIA, AgentSide

pytestmark = [pytest.mark.media, pytest.mark.server_settings(ring_timeout=5.0, call_grace=1.0)]


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def jpeg_rgb(data: bytes) -> tuple[int, int, int]:
    """The pattern colour of a JPEG (sampled where the pattern has no digits)."""
    with PILImage.open(io.BytesIO(data)) as img:
        return sample_rgb(VideoFrame.from_image(img.convert("RGB")))


class Scene:
    def __init__(self, server: ServerHandle, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.stack = stack

    async def agent(self, name: str, *, ready: bool = True, **kw: Any) -> AgentSide:
        await self.server.add_agent(name)
        kw.setdefault("media", SMALL_MEDIA)
        side = AgentSide(self.server, name, self.tmp_path / f"plugin-{name}", **kw)
        self.stack.push_async_callback(side.close)
        return await side.start(ready=ready)

    async def visitor(self, name: str, **kw: Any) -> Visitor:
        kw.setdefault("media", SMALL_MEDIA)
        return await self.server.visitor(name, **kw)


@pytest.fixture
async def scene(server: ServerHandle, tmp_path: Path) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        yield Scene(server, tmp_path, stack)


def hub_of(agent: AgentSide) -> MediaHub:
    hub = agent.plugin.call_media
    assert hub is not None, "the agent's plugin has no hub for its call"
    return hub


async def call_visitor(agent: AgentSide, v: Visitor) -> tuple[str, Any]:
    """The agent calls ``v`` out; ``v`` accepts; both ends' media is up. The call id, the request."""
    c = agent.call("callbackToVisitor", {"visitorName": v.name})
    accepted = await c.callback("acceptSuccess", "006011")
    await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    return str(accepted["payload"]["callId"]), c


async def test_two_party_media_both_ways_and_the_snapshot(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    # the agent's plugin receives the visitor's camera (its pattern colour)
    peer: MediaPeer = hub_of(a1).peer("v1")
    frame = await peer.next_frame("v1", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("v1"))  # type: ignore[arg-type]
    # the visitor receives the agent's
    assert v.media is not None
    frame = await v.media.peer.next_frame("a1", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("a1"))  # type: ignore[arg-type]
    # the hub's offer: host candidates on 127.0.0.1 only (no STUN server by default)
    offer = v.media.peer.pc.remoteDescription.sdp
    candidates = [line for line in offer.splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(" 127.0.0.1 " in c and c.endswith("typ host") for c in candidates), candidates
    # snapshot (SPEC §4.4): taken in the plugin, returned, stored on the server
    shot = await a1.call("snapshot").callback("success")
    p = shot["payload"]
    jpeg = base64.b64decode(p["base64"])
    assert (p["width"], p["height"], p["mime"]) == (320, 240, "image/jpeg")
    assert near(jpeg_rgb(jpeg), colour_for("v1"))
    assert p["sha256"] == hashlib.sha256(jpeg).hexdigest() and p["callId"] == call_id
    token = a1.plugin.api_token
    async with httpx.AsyncClient(base_url=scene.server.url) as http:
        stored = await http.get(f"/api/media/{p['artifactId']}", headers={"Authorization": f"Bearer {token}"})
        assert stored.status_code == 200 and stored.content == jpeg
        arts = (
            await http.get(f"/api/calls/{call_id}/media", headers={"Authorization": f"Bearer {token}"})
        ).json()
    snap = next(a for a in arts if a["artifactId"] == p["artifactId"])
    assert snap["kind"] == "snapshot" and snap["meta"]["agentName"] == "a1"
    # hanging up closes the media on both sides
    await a1.call("videoDisconnect").callback("success", "005004")
    await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
    await a1.plugin.media.wait_closed()  # type: ignore[union-attr]
    assert a1.plugin.call_media is None and peer.closed


async def test_snapshot_before_any_frame_and_without_media(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1", on_invite="accept", media=replace(SMALL_MEDIA, fps=1))
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await c.callback("acceptSuccess", "006011")
    await v.settled()
    # the visitor's first frame has not reached the hub yet (1 fps, just connected), or it has:
    # either way the answer is one of the two, and an error is no_media
    shot = a1.call("snapshot")
    await shot.v190307.find(lambda e: True)
    name, data = shot.v1204.items[0]
    assert name in ("success", "error")
    if name == "error":
        assert data["error"]["code"] == "no_media"
    a2 = await scene.agent("a2", media=None)  # --no-media: signalling only
    v2 = await scene.visitor("v2", on_invite="accept")
    c = a2.call("callbackToVisitor", {"visitorName": "v2"})
    await c.callback("acceptSuccess", "006011")
    err = await a2.call("snapshot").callback("error")
    assert err["error"]["code"] == "no_media" and "--no-media" in err["error"]["detail"]
    assert a2.plugin.call_media is None and v2.media is None


async def test_three_party_each_member_receives_both_others(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2")
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    invite = a1.call("videoInviteAgent", {"agentName": "a2"})
    await a2.state("004002")
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006014")
    await invite.callback("acceptSuccess", "008002")
    hub = hub_of(a1)
    # a1, the hub, receives v1 and a2
    for member in ("v1", "a2"):
        frame = await hub.peer(member).next_frame(member, "camera", within=LIMIT)
        assert near(sample_rgb(frame), colour_for(member)), member  # type: ignore[arg-type]
    # a2, a member, receives a1 and (forwarded by the hub) v1
    assert a2.plugin.media is not None
    member_call = a2.plugin.media.calls[call_id]
    assert isinstance(member_call, MemberCall)
    member = await asyncio.wait_for(member_call.wait_member(), LIMIT)  # made on the hub's first offer
    for sender in ("a1", "v1"):
        frame = await member.peer.next_frame(sender, "camera", within=LIMIT)
        assert near(sample_rgb(frame), colour_for(sender)), sender  # type: ignore[arg-type]
    # v1 receives a1 and (forwarded) a2
    assert v.media is not None
    for sender in ("a1", "a2"):
        frame = await v.media.peer.next_frame(sender, "camera", within=LIMIT)
        assert near(sample_rgb(frame), colour_for(sender)), sender  # type: ignore[arg-type]
    # the third agent snapshots the visitor from the forwarded stream
    shot = await a2.call("snapshot").callback("success")
    assert near(jpeg_rgb(base64.b64decode(shot["payload"]["base64"])), colour_for("v1"))
    # the third agent leaves: the hub closes its peer, the call goes on
    await a2.call("videoDisconnect").callback("success", "005010")
    await invite.callback("exitSuccess", "006010")
    await a2.plugin.media.wait_closed()
    assert a2.plugin.media.calls == {}

    def a2_left(e: tuple[str, Any]) -> bool:
        members = e[1]["payload"]["members"] if e[0] == "call" else []
        return {"kind": "agent", "name": "a2", "role": "thirdAgent", "status": "left"} in members

    await a1.inner.find(a2_left)  # the plugin tells its SDK after it acted on the push
    assert a1.plugin.media is not None
    await asyncio.wait_for(a1.plugin.media.calls[call_id].settled(), LIMIT)
    assert hub.members == ("v1",)


async def test_take_photo_round_trip_and_photos_disabled(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    photo = await a1.call("takePhoto").callback("success")
    p = photo["payload"]
    jpeg = base64.b64decode(p["base64"])
    # the visitor's own camera at full resolution, stored on the server (who, when, which call, checksum)
    assert (p["width"], p["height"]) == (SMALL_MEDIA.photo_width, SMALL_MEDIA.photo_height)
    with PILImage.open(io.BytesIO(jpeg)) as img:
        assert img.size == (p["width"], p["height"])
    assert p["sha256"] == hashlib.sha256(jpeg).hexdigest() and p["callId"] == call_id
    assert p["artifactId"] and p["requestId"] and p["visitorName"] == "v1"
    await a1.call("videoDisconnect").callback("success")
    # photos disabled: exactly the spec's error (SPEC §4.4)
    v2 = await scene.visitor("v2", on_invite="accept", allow_photo=False)
    await a1.set_ready()
    await call_visitor(a1, v2)
    c = a1.call("takePhoto")
    err = await c.callback("error")
    assert {k: err[k] for k in ("mark", "subMark", "error")} == {
        "mark": "takePhoto",
        "subMark": "error",
        "error": {"type": "snapShotDisabled", "msg": "snapShotDisabled"},
    }
    assert c.v190307.items[0][1] == {"error": {"type": "snapShotDisabled", "msg": "snapShotDisabled"}}


async def test_share_open_close_and_is_share_state(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1", on_invite="accept")
    await call_visitor(a1, v)
    assert (await a1.call("isShareState").callback("success"))["data"] is False
    share = a1.call("inviteShare")
    opened = await share.callback("open")
    assert opened["state"] == "006011"
    assert (await a1.call("isShareState").callback("success"))["data"] is True
    # the hub receives the visitor's screen, a second video track (light grey, not the camera)
    frame = await hub_of(a1).peer("v1").next_frame("v1", "screen", within=LIMIT)
    assert sample_rgb(frame) != colour_for("v1")  # type: ignore[arg-type]
    await v.stop_share()
    await share.callback("close")
    assert (await a1.call("isShareState").callback("success"))["data"] is False
    assert share.names == ["open", "close"]
    # refused: error
    v.allow_share = False
    refused = await a1.call("inviteShare").callback("error")
    assert refused["error"]["code"] == "share_refused"
    # a share that is on when the call ends is closed
    v.allow_share = True
    share = a1.call("inviteShare")
    await share.callback("open")
    await a1.call("videoDisconnect").callback("success")
    closed = await share.callback("close")
    assert closed["payload"]["by"] == "call ended"
    assert (await a1.call("isShareState").callback("success"))["data"] is False


async def test_a_stalled_camera_is_one_stream_offline_and_a_short_pause_none(scene: Scene) -> None:
    threshold = 1.5  # short, yet above the frame jitter of a loaded machine
    a1 = await scene.agent("a1", media=replace(SMALL_MEDIA, offline_threshold=threshold))
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    await hub_of(a1).peer("v1").next_frame("v1", "camera", within=LIMIT)
    mark = len(v.timeline)
    v.pause_video(threshold * 0.25)
    await v.wait_for(MediaStatus, lambda e: e.status == "resumed" and v.timeline.index(e) >= mark)
    await hub_of(a1).peer("v1").next_frame("v1", "camera", within=LIMIT)
    v.pause_video(threshold * 2)
    _, offline = await a1.inner.find(lambda e: e[0] == "visitorStreamOffline", within=threshold * 2 + LIMIT)
    p = offline["payload"]
    assert (p["callId"], p["member"], p["memberKind"]) == (call_id, "v1", "visitor")
    assert p["offlineMs"] >= threshold * 1000
    _, online = await a1.inner.find(lambda e: e[0] == "visitorStreamOnline", within=threshold * 2 + LIMIT)
    assert online["payload"]["offlineMs"] >= threshold * 1000
    assert a1.inner.count(lambda e: e[0] == "visitorStreamOffline") == 1  # the short pause: none
    assert a1.inner.count(lambda e: e[0] == "visitorStreamOnline") == 1


async def test_every_call_flow_has_media(scene: Scene) -> None:
    """visitorInvite (videoPickUp), callCurrentVisitor and a third visitor: frames both ways."""
    a1 = await scene.agent("a1")
    v1 = await scene.visitor("v1", on_invite="accept")
    await v1.send_message("hello")
    assigned = await v1.wait_for(SessionAssigned, lambda e: e.agent_name == "a1")
    await v1.request_video()
    await a1.state("004001")
    pick = a1.call("videoPickUp", {"session_id": assigned.session_id})
    await pick.callback("visitorJoin", "006013")
    await v1.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    frame = await hub_of(a1).peer("v1").next_frame("v1", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("v1"))  # type: ignore[arg-type]
    # a third visitor joins: each visitor receives the other through the hub
    v2 = await scene.visitor("v2", on_invite="accept")
    invite = a1.call("videoInviteVisitor", {"visitorName": "v2"})
    await invite.callback("acceptSuccess", "008001")
    assert v1.media is not None
    frame = await v1.media.peer.next_frame("v2", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("v2"))  # type: ignore[arg-type]
    await v2.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    assert v2.media is not None
    frame = await v2.media.peer.next_frame("v1", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("v1"))  # type: ignore[arg-type]
    await a1.call("videoDisconnect").callback("success", "005001")
    # the current visitor, called again by videoInviteCurrentVisitor
    await a1.set_ready()
    mark = len(v1.timeline)
    cur = a1.call("videoInviteCurrentVisitor")
    await cur.callback("acceptSuccess", "006012")
    await v1.wait_for(
        MediaStatus, lambda e: e.status == "connected" and v1.timeline.index(e) >= mark, within=LIMIT
    )
    frame = await hub_of(a1).peer("v1").next_frame("v1", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("v1"))  # type: ignore[arg-type]
