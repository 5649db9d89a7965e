"""visitorStreamOffline (SPEC §2, v1216): the frame watchdog, first with time
as an input, then on real media with a sender that pauses its camera."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kefu.media import FrameWatchdog, MediaSettings, StreamOffline, StreamOnline

from .conftest import GREEN, call

FPS = 1 / 30


def frames(w: FrameWatchdog, start: float, end: float) -> tuple[list[StreamOnline], float]:
    """Frames of v1 every 1/30 s in [start, end), polling after each; returns
    the online events and the time of the last frame."""
    out: list[StreamOnline] = []
    k, t = 0, start
    while t < end:
        online = w.frame("v1", t)
        if online:
            out.append(online)
        assert w.poll(t) == []
        last = t
        k += 1
        t = start + k * FPS
    return out, last


def test_a_pause_longer_than_the_threshold_is_one_outage() -> None:
    w = FrameWatchdog("call-1", threshold=3.0)
    w.watch("v1")
    events, last = frames(w, 0.0, 1.0)
    assert events == []
    assert w.next_deadline() == pytest.approx(last + 3.0)
    assert w.poll(last + 2.9) == []  # 2.9 s: not yet
    [offline] = w.poll(last + 3.1)
    assert offline == StreamOffline("call-1", "v1", pytest.approx(3.1))
    assert w.is_offline("v1") and w.next_deadline() is None
    assert w.poll(last + 3.4) == [] and w.poll(last + 10) == []  # once per outage
    online = w.frame("v1", last + 3.5)  # the 3.5 s pause ends
    assert online == StreamOnline("call-1", "v1", pytest.approx(3.5))
    assert frames(w, last + 3.5 + FPS, last + 5)[0] == []
    assert not w.is_offline("v1")


def test_a_shorter_pause_and_a_member_that_never_started_report_nothing() -> None:
    w = FrameWatchdog("call-1", threshold=3.0)
    w.watch("v1")
    w.watch("v2")  # connected, never sent a frame: no stream has "stopped"
    _, last = frames(w, 0.0, 1.0)
    assert w.poll(last + 2.9) == []
    assert w.frame("v1", last + 2.95) is None  # a 2.95 s gap: no event either way
    assert w.poll(20.0)[0].member == "v1"  # v2 still silent: only v1's outage
    w.unwatch("v1")
    assert w.poll(40.0) == [] and w.members == ("v2",)
    with pytest.raises(ValueError):
        FrameWatchdog("c", threshold=0)


@given(st.lists(st.floats(min_value=0.001, max_value=8.0), min_size=1, max_size=30))
def test_one_offline_and_one_online_per_gap_above_the_threshold(gaps: list[float]) -> None:
    w = FrameWatchdog("c", threshold=3.0)
    t = 0.0
    w.frame("v1", t)
    for gap in gaps:
        polls = [t + k * 0.05 for k in range(1, int(gap / 0.05) + 1) if k * 0.05 < gap]  # the timer
        offline = [e for p in polls for e in w.poll(p)]
        late = any(p - t > 3.0 for p in polls)
        assert len(offline) == (1 if late else 0)
        assert all(e.offline_for > 3.0 for e in offline)
        t += gap
        online = w.frame("v1", t)
        assert (online is not None) == late
        if online is not None:
            assert online.offline_for == pytest.approx(gap)


@pytest.mark.media
async def test_a_paused_camera_gives_one_offline_then_one_online_event(settings: MediaSettings) -> None:
    threshold = 0.4
    s = replace(settings, offline_threshold=threshold)
    async with call(s, ("v1", GREEN)) as c:
        hub_side, camera = c.hub.peer("v1"), c.members["v1"].source.video
        await hub_side.next_frame()

        # a pause shorter than the threshold: nothing
        camera.pause()  # type: ignore[attr-defined]
        await asyncio.sleep(threshold / 3)  # the pause itself (an input, not a wait)
        camera.resume()  # type: ignore[attr-defined]
        for _ in range(int(s.fps * threshold * 2)):  # frames for twice the threshold
            await hub_side.next_frame()
        assert c.events.of(StreamOffline) == [] and c.events.of(StreamOnline) == []

        # a pause longer than the threshold: one outage, reported once, then back
        camera.pause()  # type: ignore[attr-defined]
        offline = await c.events.wait_for(lambda e: isinstance(e, StreamOffline))
        await asyncio.sleep(threshold)  # stay paused well past the first report
        camera.resume()  # type: ignore[attr-defined]
        online = await c.events.wait_for(lambda e: isinstance(e, StreamOnline))
        assert isinstance(offline, StreamOffline) and isinstance(online, StreamOnline)
        assert (offline.call_id, offline.member) == ("call-1", "v1")
        assert threshold < offline.offline_for < threshold + 0.3
        assert online.offline_for > 2 * threshold
        for _ in range(3):
            await hub_side.next_frame()
        assert len(c.events.of(StreamOffline)) == 1 and len(c.events.of(StreamOnline)) == 1
        assert offline.to_payload() == {
            "callId": "call-1",
            "member": "v1",
            "offlineMs": round(offline.offline_for * 1000),
        }
