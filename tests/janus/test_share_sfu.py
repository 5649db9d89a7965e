"""The visitor's screen share (inviteShare, SPEC §4.5) through Janus: a second track of the
visitor's publisher, which Janus offers again to the agent's subscription.

The shared screen is checked by content (the synthetic screen's grey and a live counter,
not the visitor's camera colour); open, close, refuse and the call's end as in hub mode."""

from __future__ import annotations

import pytest

from kefu.media import (
    PatternPainter,
    SfuMember,
    TrackAdded,
    TrackRemoved,
    colour_for,
    read_counter,
    sample_rgb,
)
from kefu.visitor import MediaStatus
from tests.e2e.test_call_media import near
from tests.media.conftest import Events
from tests.plugin.harness import LIMIT

from .test_calls_sfu import Scene, frame_of, scene, sfu_of

pytestmark = pytest.mark.media

__all__ = ["scene"]  # the fixture, used by name


async def test_the_visitor_shares_its_screen_through_janus(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await c.callback("acceptSuccess", "006011")
    await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    a_media = sfu_of(a1)
    assert isinstance(v.media, SfuMember)
    await frame_of(a_media, "v1")
    tracks = Events()
    a_media.events.subscribe(tracks)
    assert (await a1.call("isShareState").callback("success"))["data"] is False

    share = a1.call("inviteShare")
    opened = await share.callback("open")
    assert opened["state"] == "006011"
    assert (await a1.call("isShareState").callback("success"))["data"] is True
    # Janus offers the visitor's feed again with the screen: the plugin's subscription gets it
    await tracks.wait_for(lambda e: isinstance(e, TrackAdded) and e.role == "screen", LIMIT)
    sub = a_media.subscription("v1")
    first = await sub.next_frame("v1", "screen", within=LIMIT)
    expected = sample_rgb(PatternPainter(320, 240, colour_for("v1"), "screen").paint(0))
    assert near(sample_rgb(first), expected) and not near(sample_rgb(first), colour_for("v1"))
    later = await sub.next_frame("v1", "screen", within=LIMIT)
    assert read_counter(later) > read_counter(first)  # live
    # the camera goes on beside it, and the window reads the screen's tile the same way
    assert near(sample_rgb(await sub.next_frame("v1", "camera", within=LIMIT)), colour_for("v1"))
    assert near(sample_rgb(a_media.latest_frame("v1", "screen")), expected)

    await v.stop_share()
    await share.callback("close")
    await tracks.wait_for(lambda e: isinstance(e, TrackRemoved) and e.role == "screen", LIMIT)
    assert (await a1.call("isShareState").callback("success"))["data"] is False
    assert share.names == ["open", "close"]
    assert near(sample_rgb(await sub.next_frame("v1", "camera", within=LIMIT)), colour_for("v1"))

    # refused: the spec's error, nothing published
    v.allow_share = False
    refused = await a1.call("inviteShare").callback("error")
    assert refused["error"]["code"] == "share_refused"
    assert not v.media.sharing

    # shared again, then the call ends while the screen is on: the share is closed
    v.allow_share = True
    tracks.seen.clear()
    share = a1.call("inviteShare")
    await share.callback("open")
    await tracks.wait_for(lambda e: isinstance(e, TrackAdded) and e.role == "screen", LIMIT)
    # the m-line Janus uses again for it (its SSRCs new) carries the screen (kefu.media.ssrc)
    await a_media.subscription("v1").next_frame("v1", "screen", within=LIMIT)
    await a1.call("videoDisconnect").callback("success")
    closed = await share.callback("close")
    assert closed["payload"]["by"] == "call ended"
