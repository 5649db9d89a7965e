"""Received video decoded only while something asks for it (``video_on_demand``, the SFU
mode's subscriptions without a window: D55), two peer connections on 127.0.0.1: the video's
frames reach the frame watchdog undecoded; a frame asked for is decoded from a key frame the
receiver asks the sender for (an RTCP PLI); the former way (every frame decoded) beside it."""

from __future__ import annotations

import pytest
from av import VideoFrame

from kefu.media import MediaSettings
from kefu.media.decoding import is_key_frame
from tests.media.conftest import a_second_of, sending_pair

pytestmark = pytest.mark.media


def test_a_vp8_key_frame_is_told_by_its_frame_tag() -> None:
    assert is_key_frame("VP8", bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])) is True  # bit 0 clear
    assert is_key_frame("vp8", bytes([0x11, 0x02, 0x00])) is False  # an interframe
    assert is_key_frame("VP8", b"") is False  # nothing to decode from
    assert is_key_frame("H264", b"\x00\x00\x00\x01\x65") is None  # not told here: decoded as it comes


async def test_video_is_decoded_only_while_asked_for_yet_watched(settings: MediaSettings) -> None:
    async with sending_pair(settings, video_on_demand=True) as b:
        await a_second_of(b, "mic")
        camera = b.received_track("a", "camera")
        assert camera is not None and camera.on_demand
        assert camera.frames == 0  # nobody asked: nothing decoded
        assert (await b.stats()).packets_received["video"] > 0  # yet received
        # the watchdog saw the video arrive: its last frame is recent, no outage is due
        assert b.watchdog.members == ("a",)
        assert camera.last_time is not None and b.clock() - camera.last_time < 0.5
        assert b.watchdog.poll(b.clock() + settings.offline_threshold - 0.5) == []
        # asked: decoded from a key frame (a PLI to the sender: its stream is mid-way now)
        frame = await b.next_frame("a", "camera")
        assert isinstance(frame, VideoFrame) and (frame.width, frame.height) == (320, 240)
        asked = camera.frames
        await a_second_of(b, "mic")
        assert camera.frames - asked <= 3, camera.frames - asked  # no more asked: (almost) none
        again = await b.next_frame("a", "camera")  # after a pause again: a new key frame
        assert isinstance(again, VideoFrame)


async def test_every_video_frame_decoded_the_former_way(settings: MediaSettings) -> None:
    async with sending_pair(settings, video_on_demand=False) as b:
        await a_second_of(b, "mic")
        camera = b.received_track("a", "camera")
        assert camera is not None and not camera.on_demand and camera.frames > 5
