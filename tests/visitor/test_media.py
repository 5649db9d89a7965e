"""The visitor's media in a call: real peer connections on 127.0.0.1 between
the visitor and a :class:`~kefu.media.MediaHub` of the test (the agent's side),
the signalling carried over the visitor socket by the scripted server
(tests/visitor/peer.py), as the real server carries it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from av import AudioFrame

from kefu.media import (
    MediaError,
    MediaEvent,
    MediaHub,
    MediaSettings,
    StreamOffline,
    StreamOnline,
    TrackAdded,
    TrackRemoved,
    colour_for,
    open_source,
    read_counter,
    sample_rgb,
)
from kefu.visitor import CallAction, CallUpdate, MediaStatus, MediaTrack, PhotoAnswer, ShareAnswer, Visitor
from tests.conftest import scaled
from tests.media.test_sources import ORANGE, write_clip

from .peer import HubRelay, ScriptedServer

pytestmark = pytest.mark.media

BLUE = (30, 90, 200)  # the agent


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 20) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


@dataclass
class HubEvents:
    seen: list[MediaEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: MediaEvent) -> None:
        self.seen.append(event)
        self.changed.set()

    async def wait_for(
        self, kind: type, within: float = scaled(5.0), since: int = 0, **attrs: object
    ) -> MediaEvent:
        """The first event of ``kind`` (with ``attrs``) from ``seen[since]`` on."""

        async def scan() -> MediaEvent:
            while True:
                for e in self.seen[since:]:
                    if isinstance(e, kind) and all(getattr(e, k) == v for k, v in attrs.items()):
                        return e
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(scan(), within)

    def of(self, kind: type, since: int = 0) -> list[MediaEvent]:
        return [e for e in self.seen[since:] if isinstance(e, kind)]


@dataclass
class Call:
    v: Visitor
    hub: MediaHub
    relay: HubRelay
    events: HubEvents


@asynccontextmanager
async def media_call(scripted: ScriptedServer, settings: MediaSettings, **kw: object) -> AsyncIterator[Call]:
    """Agent a1 invites v1 (who accepts by policy) and its hub offers."""
    v = Visitor(scripted.url, "v1", timeout=5.0, on_invite="accept", media=settings, **kw)  # type: ignore[arg-type]
    await v.connect()
    source = open_source(settings, "a1", rgb=BLUE)
    hub = MediaHub(settings, call_id="c1", local="a1", source=source)
    events = HubEvents()
    hub.events.subscribe(events)
    relay: HubRelay | None = None
    try:
        await scripted.call("c1", "invited", agentName="a1", role="visitor")
        await v.wait_for(CallAction)
        relay = HubRelay(scripted, hub, "v1", "c1")
        yield Call(v, hub, relay, events)
        assert relay.errors == []
    finally:
        if relay is not None:
            await relay.close()
        await v.aclose()
        await hub.close()
        source.stop()


async def test_the_visitor_answers_the_hubs_offer_and_sends_its_pattern(
    scripted: ScriptedServer, media_settings: MediaSettings
) -> None:
    async with media_call(scripted, media_settings) as c:
        connected = await c.v.wait_for(MediaStatus, lambda e: e.status == "connected")
        assert connected == MediaStatus("c1", "connected", "a1")
        assert MediaStatus("c1", "answered", "a1") in c.v.timeline

        first = await c.relay.side.next_frame()  # at the agent: the visitor's camera, decoded
        assert near(sample_rgb(first), colour_for("v1"))  # type: ignore[arg-type]
        later = await c.relay.side.next_frame()
        assert read_counter(later) > read_counter(first)  # type: ignore[arg-type]
        assert isinstance(await c.relay.side.next_frame("v1", "mic"), AudioFrame)

        assert c.v.media is not None
        at_visitor = await c.v.media.peer.next_frame("a1")  # and the agent's camera at the visitor
        assert near(sample_rgb(at_visitor), BLUE)  # type: ignore[arg-type]
        await c.v.wait_for(MediaTrack, lambda e: (e.member, e.role) == ("a1", "mic"))
        assert MediaTrack("c1", "a1", "camera", True) in c.v.timeline


async def test_the_call_ending_closes_the_media_in_bounded_time(
    scripted: ScriptedServer, media_settings: MediaSettings
) -> None:
    async with media_call(scripted, media_settings) as c:
        await c.v.wait_for(MediaStatus, lambda e: e.status == "connected")
        member = c.v.media
        assert member is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        await scripted.call("c1", "ended", by="a1", reason="agent hung up")
        await c.v.wait_for(MediaStatus, lambda e: e.status == "closed")
        assert loop.time() - started < 2 * media_settings.close_timeout + 1
        assert c.v.media is None and member.peer.closed
        assert member.source.video.readyState == "ended" and member.source.audio.readyState == "ended"
        assert await c.v.wait_for(CallUpdate, lambda e: e.what == "ended")


async def test_share_request_opens_a_screen_and_stop_share_closes_it(
    scripted: ScriptedServer, media_settings: MediaSettings
) -> None:
    async with media_call(scripted, media_settings) as c:
        await c.v.wait_for(MediaStatus, lambda e: e.status == "connected")
        await scripted.push("shareRequest", {"callId": "c1", "agentName": "a1"})
        assert (await scripted.next_request("shareAnswer"))["params"] == {"callId": "c1", "answer": "open"}
        added = await c.events.wait_for(TrackAdded, member="v1", role="screen")
        assert isinstance(added, TrackAdded)
        screen = await c.relay.side.next_frame("v1", "screen")  # the synthetic screen, at the agent
        assert sample_rgb(screen) != sample_rgb(await c.relay.side.next_frame("v1", "camera"))  # type: ignore[arg-type]
        assert c.v.media is not None and c.v.media.sharing

        await scripted.push("shareRequest", {"callId": "c1"})  # asked again while on: still open
        assert (await scripted.next_request("shareAnswer"))["params"]["answer"] == "open"

        await c.v.stop_share()
        assert (await scripted.next_request("shareAnswer"))["params"] == {"callId": "c1", "answer": "close"}
        await c.events.wait_for(TrackRemoved, member="v1", role="screen")
        assert not c.v.media.sharing
        assert [e.answer for e in c.v.timeline if isinstance(e, ShareAnswer)] == ["open", "open", "close"]
        await c.relay.side.next_frame("v1", "camera")  # the camera goes on


async def test_a_paused_camera_is_one_stream_offline_at_the_hub(
    scripted: ScriptedServer, media_settings: MediaSettings
) -> None:
    # a threshold well above what a loaded test machine stalls a loop for
    settings = replace(media_settings, offline_threshold=0.5, watchdog_interval=0.05)
    threshold = settings.offline_threshold
    async with media_call(scripted, settings) as c:
        await c.relay.side.next_frame()
        c.v.pause_video(threshold / 4)  # shorter than the threshold: nothing
        await c.v.wait_for(MediaStatus, lambda e: e.status == "resumed")
        for _ in range(int(settings.fps * threshold * 2)):  # frames for twice the threshold
            await c.relay.side.next_frame()
        assert c.events.of(StreamOffline) == []

        since = len(c.events.seen)
        c.v.pause_video(threshold * 3)  # the visitor stops sending video for a while
        offline = await c.events.wait_for(StreamOffline, since=since)
        online = await c.events.wait_for(StreamOnline, since=since)
        assert isinstance(offline, StreamOffline) and isinstance(online, StreamOnline)
        assert (offline.call_id, offline.member) == ("c1", "v1")
        assert online.offline_for > 2 * threshold
        for _ in range(3):
            await c.relay.side.next_frame()
        assert len(c.events.of(StreamOffline, since)) == 1 and len(c.events.of(StreamOnline, since)) == 1
        paused = [e for e in c.v.timeline if isinstance(e, MediaStatus) and e.status in ("paused", "resumed")]
        assert [e.status for e in paused] == ["paused", "resumed", "paused", "resumed"]


async def test_a_photo_whose_upload_fails_is_answered_with_the_reason(
    scripted: ScriptedServer, media_settings: MediaSettings
) -> None:
    # the scripted server speaks WebSocket only: the HTTP upload fails as an absent endpoint would
    async with media_call(scripted, media_settings) as c:
        await c.relay.side.next_frame()
        await scripted.push("photoRequest", {"callId": "c1", "requestId": "p1", "agentName": "a1"})
        req = await scripted.next_request("photoAnswer")
        assert req["params"]["callId"] == "c1" and req["params"]["requestId"] == "p1"
        assert req["params"]["answer"] == "error"
        assert req["params"]["reason"].startswith("upload failed")
        assert len(req["params"]["reason"]) <= 128
        answer = await c.v.wait_for(PhotoAnswer)
        assert answer.answer == "error"


async def test_a_media_file_as_the_visitors_camera(
    scripted: ScriptedServer, media_settings: MediaSettings, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.webm"
    write_clip(clip, 480, 360)
    settings = replace(media_settings, source=f"file:{clip}")
    async with media_call(scripted, settings) as c:
        frame = await c.relay.side.next_frame()
        assert (frame.width, frame.height) == (320, 240) and near(sample_rgb(frame), ORANGE, 25)  # type: ignore[union-attr, arg-type]
        with pytest.raises(MediaError, match="synthetic source only"):
            c.v.pause_video(1.0)  # a file or a device cannot be paused
        assert c.v.media is not None
        assert (await c.v.media.take_photo()).width == 480  # a still at the file's own size
