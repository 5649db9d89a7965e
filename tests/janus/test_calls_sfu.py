"""Calls whose media goes through Janus (SFU mode), with the real plugin, ``IMClient``
and the Python visitor, all in a network namespace with Janus (``dc`` fixture).

Each member sends its own pattern colour (``kefu.media.colour_for``) and
publishes once; who receives whom is checked by colour and live counter."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest
from av import VideoFrame

from kefu.media import SfuMember, TrackAdded, colour_for, read_counter, sample_rgb
from kefu.plugin.media import SfuCall
from kefu.visitor import MediaStatus, Visitor
from tests.e2e.callkit import SMALL_MEDIA, AgentSide
from tests.e2e.test_call_media import jpeg_rgb, near
from tests.media.conftest import Events
from tests.plugin.harness import LIMIT

from .conftest import DataCentre
from .netns import HOST

pytestmark = pytest.mark.media

MEDIA = replace(SMALL_MEDIA, host_addresses=(HOST,))


class Scene:
    def __init__(self, dc: DataCentre, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.dc = dc
        self.server = dc.server
        self.tmp_path = tmp_path
        self.stack = stack

    async def agent(self, name: str) -> AgentSide:
        await self.server.add_agent(name)
        side = AgentSide(self.server, name, self.tmp_path / f"plugin-{name}", media=MEDIA)
        self.stack.push_async_callback(side.close)
        return await side.start(ready=True)

    async def visitor(self, name: str) -> Visitor:
        return await self.server.visitor(name, media=MEDIA, on_invite="accept")


@pytest.fixture
async def scene(dc: DataCentre, tmp_path: Path) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        yield Scene(dc, tmp_path, stack)


def sfu_of(agent: AgentSide) -> SfuMember:
    media = agent.plugin.call_media
    assert isinstance(media, SfuMember), f"{agent.name}'s plugin has no SFU media: {media!r}"
    return media


async def frame_of(member: SfuMember, name: str) -> VideoFrame:
    """The next camera frame of ``name`` received by ``member`` (its subscription made first)."""
    if name not in member.members:
        events = Events()
        member.events.subscribe(events)
        await events.wait_for(lambda e: isinstance(e, TrackAdded) and e.member == name, LIMIT)
    frame = await member.subscription(name).next_frame(name, "camera", within=LIMIT)
    assert isinstance(frame, VideoFrame)
    return frame


async def test_two_party_call_through_janus_both_ways_and_the_snapshot(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    accepted = await c.callback("acceptSuccess", "006011")
    call_id = accepted["payload"]["callId"]
    await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)  # its publisher
    a_media = sfu_of(a1)
    assert isinstance(v.media, SfuMember)
    # each receives the other's camera from Janus, live
    at_agent = await frame_of(a_media, "v1")
    assert near(sample_rgb(at_agent), colour_for("v1"))
    at_visitor = await frame_of(v.media, "a1")
    assert near(sample_rgb(at_visitor), colour_for("a1"))
    later = await frame_of(a_media, "v1")
    assert read_counter(later) > read_counter(at_agent)
    # the media went through Janus: the subscription's offer came from it, on the namespace's address
    offer = a_media.subscription("v1").pc.remoteDescription.sdp
    assert "a=candidate:" in offer and f" {HOST} " in offer
    assert a_media.members == ("v1",) and v.media.members == ("a1",)
    # snapshot (SPEC §4.4) from the plugin's subscription to the visitor: the plugin has no
    # window, so the video is decoded for it (from a key frame asked of the publisher: D55)
    camera = a_media.subscription("v1").received_track("v1", "camera")
    assert camera is not None and camera.on_demand
    decoded = camera.frames
    shot = await a1.call("snapshot").callback("success")
    assert camera.frames > decoded
    p = shot["payload"]
    assert (p["width"], p["height"], p["callId"]) == (320, 240, call_id)
    assert near(jpeg_rgb(base64.b64decode(p["base64"])), colour_for("v1"))
    # the end closes the media on both sides and the server's handles
    await a1.call("videoDisconnect").callback("success", "005004")
    await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
    assert a1.plugin.media is not None
    await a1.plugin.media.wait_closed()
    assert a1.plugin.media.calls == {} and a_media.closed
    relay = scene.server.services.calls.sfu.relay  # type: ignore[union-attr]
    await relay.settled()
    assert relay._calls == {}


async def test_three_party_call_through_janus(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    accepted = await c.callback("acceptSuccess", "006011")
    call_id = accepted["payload"]["callId"]
    await frame_of(sfu_of(a1), "v1")
    invite = a1.call("videoInviteAgent", {"agentName": "a2"})
    await a2.state("004002")
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006014")
    await invite.callback("acceptSuccess", "008002")
    assert a2.plugin.media is not None
    assert isinstance(a2.plugin.media.calls[call_id], SfuCall)
    assert isinstance(v.media, SfuMember)
    # everyone receives both others, each from its own subscription
    receivers: dict[str, SfuMember] = {"a1": sfu_of(a1), "a2": sfu_of(a2), "v1": v.media}
    for me, media in receivers.items():
        for other in receivers:
            if other != me:
                frame = await frame_of(media, other)
                assert near(sample_rgb(frame), colour_for(other)), (me, other)
    # the third agent snapshots the visitor from its own subscription
    shot = await a2.call("snapshot").callback("success")
    assert near(jpeg_rgb(base64.b64decode(shot["payload"]["base64"])), colour_for("v1"))
    # the third agent leaves: the others' subscriptions to it close, the call goes on
    left = {m: Events() for m in ("a1", "v1")}
    for m, events in left.items():
        receivers[m].events.subscribe(events)
    await a2.call("videoDisconnect").callback("success", "005010")
    await invite.callback("exitSuccess", "006010")

    async def gone(m: str) -> None:
        while "a2" in receivers[m].members:
            await left[m].wait_for(lambda e: getattr(e, "member", None) == "a2", LIMIT)
            left[m].seen.clear()

    await asyncio.wait_for(asyncio.gather(gone("a1"), gone("v1")), LIMIT)
    assert receivers["a1"].members == ("v1",) and receivers["v1"].members == ("a1",)
    # and the media between the two who stay still flows
    frame = await frame_of(receivers["v1"], "a1")
    assert near(sample_rgb(frame), colour_for("a1"))


async def test_the_publisher_encodes_on_the_loop_and_janus_forwards_its_frames(scene: Scene) -> None:
    """D64: the agent's publisher encodes its camera and microphone on the event loop;
    through Janus the visitor gets its colour, a counter that goes up frame by frame, and the
    agent's tone."""
    from kefu.media.encoding import encodes_on_loop
    from kefu.media.pattern import tone_for, tone_of

    a1 = await scene.agent("a1")
    v = await scene.visitor("v1")
    await a1.call("callbackToVisitor", {"visitorName": "v1"}).callback("acceptSuccess", "006011")
    await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    assert isinstance(v.media, SfuMember)
    senders = {t.kind: t.sender for t in sfu_of(a1).publisher.pc.getTransceivers()}
    assert sorted(senders) == ["audio", "video"]
    assert all(encodes_on_loop(s) for s in senders.values())
    counters = []
    for _ in range(6):
        frame = await frame_of(v.media, "a1")
        assert near(sample_rgb(frame), colour_for("a1"))
        counters.append(read_counter(frame))
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    sub = v.media.subscription("a1")
    sound = [await sub.next_frame("a1", "mic", within=LIMIT) for _ in range(25)]
    assert abs(tone_of(sound[5:]) - tone_for("a1")) < 10  # type: ignore[arg-type]
