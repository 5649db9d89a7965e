"""Two peer connections on 127.0.0.1: video both ways checked by content,
audio flowing, snapshot, photo, and the frames the window paints."""

from __future__ import annotations

import base64
import io

import pytest
from av import AudioFrame, VideoFrame
from PIL import Image as PILImage

from kefu.media import MediaSettings, NoFrameError, read_counter, sample_rgb
from kefu.media.pattern import sample_box

from .conftest import BLUE, GREEN, call, near

pytestmark = pytest.mark.media


async def test_each_side_receives_the_others_video_and_audio(settings: MediaSettings) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        hub_side, member = c.hub.peer("v1"), c.members["v1"]

        first = await hub_side.next_frame()
        assert isinstance(first, VideoFrame) and (first.width, first.height) == (320, 240)
        assert near(sample_rgb(first), GREEN)  # the visitor's pattern, decoded from VP8
        later = await hub_side.next_frame()
        assert read_counter(later) > read_counter(first)
        # what arrives is what was sent, not older than a second
        sent = member.source.video.counter  # type: ignore[attr-defined]
        assert sent - settings.fps <= read_counter(later) <= sent

        at_member = await member.peer.next_frame()
        assert near(sample_rgb(at_member), BLUE)
        assert read_counter(await member.peer.next_frame()) > read_counter(at_member)

        sound = await hub_side.next_frame("v1", "mic")
        assert isinstance(sound, AudioFrame) and sound.sample_rate == 48_000
        assert isinstance(await member.peer.next_frame("agent", "mic"), AudioFrame)
        stats = await hub_side.stats()
        assert stats.packets_received["audio"] > 0 and stats.packets_received["video"] > 0
        assert stats.packets_sent["audio"] > 0 and stats.packets_sent["video"] > 0
        assert (await member.peer.stats()).packets_received["audio"] > 0
        assert hub_side.received_track("v1", "mic").samples > 0  # type: ignore[union-attr]


async def test_snapshot_is_a_jpeg_of_the_visitors_latest_frame(settings: MediaSettings) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        with pytest.raises(NoFrameError):
            await c.hub.snapshot("v1")  # nothing received yet: the spec's "no_media"
        await c.hub.peer("v1").next_frame()
        shot = await c.hub.snapshot("v1")
        image = PILImage.open(io.BytesIO(shot.jpeg))
        assert image.format == "JPEG" and image.size == (shot.width, shot.height) == (320, 240)
        box = image.convert("RGB").crop(sample_box(320, 240)).resize((1, 1)).getpixel((0, 0))
        assert near(box, GREEN)  # type: ignore[arg-type]
        payload = shot.to_payload()
        assert base64.b64decode(payload["base64"]) == shot.jpeg
        assert (payload["width"], payload["height"]) == (320, 240)


async def test_take_photo_is_a_full_resolution_still(settings: MediaSettings) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        member = c.members["v1"]
        await c.hub.peer("v1").next_frame()  # the camera runs
        photo = await member.take_photo()
        image = PILImage.open(io.BytesIO(photo.jpeg))
        assert image.format == "JPEG" and image.size == (1280, 720)  # not the 320x240 we send
        frame = VideoFrame.from_image(image.convert("RGB"))
        assert near(sample_rgb(frame), GREEN)
        assert 0 <= read_counter(frame) <= member.source.video.counter  # type: ignore[attr-defined]


async def test_the_window_gets_each_members_latest_frame_as_rgb(settings: MediaSettings) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        await c.hub.peer("v1").next_frame()
        rgb = c.hub.latest_rgb("v1")
        assert (rgb.width, rgb.height) == (320, 240)
        assert rgb.stride >= 3 * 320 and len(rgb.data) == rgb.stride * rgb.height
        x, y = 160, 190  # inside the pattern's flat colour
        pixel = tuple(rgb.data[y * rgb.stride + 3 * x : y * rgb.stride + 3 * x + 3])
        assert near(pixel, GREEN)  # type: ignore[arg-type]
        own = c.hub.latest_frame("agent")  # the self view
        assert near(sample_rgb(own), BLUE)
        with pytest.raises(NoFrameError):
            c.hub.latest_frame("v1", "screen")
