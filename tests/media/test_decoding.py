"""Received audio decoded only while something asks for it (``audio_on_demand``, the SFU
mode's subscriptions: D49), two peer connections on 127.0.0.1: the packets arrive either
way; the frames only when awaited; the former way (every frame decoded) beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from av import AudioFrame

from kefu.media import MediaPeer, MediaSettings
from kefu.media.signal import DirectLink
from kefu.media.source import open_source

pytestmark = pytest.mark.media

VIDEO_FRAMES = 15  # a second of video at 15 fps: audio sent meanwhile (50 frames a second)


@asynccontextmanager
async def pair(settings: MediaSettings, *, on_demand: bool) -> AsyncIterator[MediaPeer]:
    """``a`` sends its camera and microphone to the returned receiver ``b``."""
    source = open_source(settings, "a")
    a = MediaPeer(settings, local="a", remote="b", offerer=True)
    b = MediaPeer(settings, local="b", remote="a", offerer=False, audio_on_demand=on_demand)
    a.send(source.video, "camera")
    a.send(source.audio, "mic")
    link = DirectLink(a, b)
    try:
        yield b
    finally:
        await link.close()
        await a.close()
        await b.close()
        source.stop()


async def _video_for_a_while(b: MediaPeer) -> None:
    for _ in range(VIDEO_FRAMES):
        await b.next_frame("a", "camera")


async def test_audio_is_decoded_only_while_asked_for(settings: MediaSettings) -> None:
    async with pair(settings, on_demand=True) as b:
        await _video_for_a_while(b)
        mic = b.received_track("a", "mic")
        assert mic is not None and mic.frames == 0  # nobody asked: nothing decoded
        assert (await b.stats()).packets_received["audio"] > 0  # yet received
        sound = await b.next_frame("a", "mic")  # asked: decoded at once (Opus needs no key frame)
        assert isinstance(sound, AudioFrame) and sound.sample_rate == 48_000
        asked = mic.frames
        await _video_for_a_while(b)
        assert mic.frames - asked <= 3, mic.frames - asked  # no more asked: (almost) none decoded


async def test_every_frame_decoded_the_former_way(settings: MediaSettings) -> None:
    async with pair(settings, on_demand=False) as b:
        await _video_for_a_while(b)
        mic = b.received_track("a", "mic")
        assert mic is not None and mic.frames > 10
