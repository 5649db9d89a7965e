"""Received audio decoded only while something asks for it (``audio_on_demand``, the SFU
mode's subscriptions: D49), two peer connections on 127.0.0.1: the packets arrive either
way; the frames only when awaited; the former way (every frame decoded) beside it."""

from __future__ import annotations

import pytest
from av import AudioFrame

from kefu.media import MediaSettings
from tests.media.conftest import a_second_of, sending_pair

pytestmark = pytest.mark.media


async def test_audio_is_decoded_only_while_asked_for(settings: MediaSettings) -> None:
    async with sending_pair(settings, audio_on_demand=True) as b:
        await a_second_of(b, "camera")
        mic = b.received_track("a", "mic")
        assert mic is not None and mic.frames == 0  # nobody asked: nothing decoded
        assert (await b.stats()).packets_received["audio"] > 0  # yet received
        sound = await b.next_frame("a", "mic")  # asked: decoded at once (Opus needs no key frame)
        assert isinstance(sound, AudioFrame) and sound.sample_rate == 48_000
        asked = mic.frames
        await a_second_of(b, "camera")
        assert mic.frames - asked <= 3, mic.frames - asked  # no more asked: (almost) none decoded


async def test_every_frame_decoded_the_former_way(settings: MediaSettings) -> None:
    async with sending_pair(settings, audio_on_demand=False) as b:
        await a_second_of(b, "camera")
        mic = b.received_track("a", "mic")
        assert mic is not None and mic.frames > 10
