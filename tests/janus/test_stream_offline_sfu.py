"""``visitorStreamOffline`` in the SFU mode: the plugin's frame watchdog on its subscription
to the visitor's feed through Janus, with the spec's 3 s threshold (SPEC §2, v1216). The
plugin has no window: its subscription decodes the video only when asked for (D55), so the
watchdog counts the frames that arrive undecoded."""

from __future__ import annotations

import pytest

from kefu.visitor import MediaStatus
from tests.plugin.harness import LIMIT

from .test_calls_sfu import Scene, frame_of, scene, sfu_of

pytestmark = pytest.mark.media
__all__ = ["scene"]


async def test_a_camera_stalled_3_5_s_is_one_offline_and_a_2_s_pause_none(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
    media = sfu_of(a1)
    assert media.watchdog.threshold == 3.0  # the default: the spec's 3 s
    await frame_of(media, "v1")
    # 2 s without video: under the threshold, nothing
    mark = len(v.timeline)
    v.pause_video(2.0)
    await v.wait_for(MediaStatus, lambda e: e.status == "resumed" and v.timeline.index(e) >= mark)
    await frame_of(media, "v1")  # the feed is back through Janus
    assert a1.inner.count(lambda e: e[0] == "visitorStreamOffline") == 0
    # 3.5 s without video: exactly one offline, then one online when frames come back
    camera = media.subscription("v1").received_track("v1", "camera")
    assert camera is not None and camera.on_demand
    decoded = camera.frames
    v.pause_video(3.5)
    _, offline = await a1.inner.find(lambda e: e[0] == "visitorStreamOffline", within=3.5 + LIMIT)
    p = offline["payload"]
    assert (p["callId"], p["member"], p["memberKind"]) == (call_id, "v1", "visitor")
    assert p["offlineMs"] >= 3000
    _, online = await a1.inner.find(lambda e: e[0] == "visitorStreamOnline", within=3.5 + LIMIT)
    assert online["payload"]["offlineMs"] >= 3000
    assert camera.frames - decoded <= 3  # the outage and its end seen undecoded
    await frame_of(media, "v1")
    assert a1.inner.count(lambda e: e[0] == "visitorStreamOffline") == 1
    assert a1.inner.count(lambda e: e[0] == "visitorStreamOnline") == 1
