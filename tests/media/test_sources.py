"""Sources: a media file as the camera, devices that are not there, the
synthetic screen, and the pattern's own checks."""

from __future__ import annotations

import fractions
import io
from dataclasses import replace
from pathlib import Path

import av
import pytest
from PIL import Image as PILImage

from kefu.media import (
    DirectLink,
    MediaError,
    MediaMember,
    MediaSettings,
    PatternPainter,
    open_source,
    read_counter,
    sample_rgb,
)
from kefu.media.pattern import COLOURS, SCREEN_RGB, colour_for

from .conftest import GREEN, call, near

ORANGE = (230, 120, 20)


def write_clip(path: Path, width: int, height: int, seconds: float = 1.0) -> None:
    """A small VP8 + Opus WebM of an orange pattern."""
    painter = PatternPainter(width, height, ORANGE)
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=15)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1
        audio = out.add_stream("libopus", rate=48_000)
        audio.layout = "stereo"
        for i in range(int(15 * seconds)):
            frame = painter.paint(i)
            frame.pts, frame.time_base = i, fractions.Fraction(1, 15)
            out.mux(video.encode(frame))
        for i in range(int(50 * seconds)):
            sound = av.AudioFrame(format="s16", layout="stereo", samples=960)
            sound.sample_rate = 48_000
            sound.planes[0].update(bytes(960 * 4))
            sound.pts, sound.time_base = i * 960, fractions.Fraction(1, 48_000)
            out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


@pytest.mark.media
async def test_a_media_file_is_the_visitors_camera(settings: MediaSettings, tmp_path: Path) -> None:
    clip = tmp_path / "clip.webm"
    write_clip(clip, 480, 360)
    s = replace(settings, source=f"file:{clip}")
    async with call(settings) as c:
        member = MediaMember(s, local="v1", hub="agent")  # its own source, from the settings
        c.members["v1"] = member
        c.links["v1"] = DirectLink(c.hub.add_member("v1"), member.peer)
        frame = await c.hub.peer("v1").next_frame()
        assert (frame.width, frame.height) == (320, 240)  # scaled to the video size at the source
        assert near(sample_rgb(frame), ORANGE, 25)
        await c.hub.peer("v1").next_frame("v1", "mic")  # the file's audio
        photo = await member.take_photo()  # a still at the file's own resolution
        assert PILImage.open(io.BytesIO(photo.jpeg)).size == (480, 360)


def test_sources_that_cannot_open_say_what_to_do(settings: MediaSettings, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        replace(settings, source=f"file:{tmp_path / 'missing.webm'}")
    with pytest.raises(MediaError, match="pattern"):
        replace(settings, source="webcam")
    s = replace(settings, source="device:/dev/video-kefu-test-absent")
    with pytest.raises(MediaError, match="cannot open the camera"):
        open_source(s, "v1")
    if not any("pulse" in name for name in av.formats_available):  # PyAV's wheels have none
        with pytest.raises(MediaError, match="alsa:pulse"):
            open_source(replace(s, audio_input="pulse:default"), "v1")
    not_media = tmp_path / "notes.txt"
    not_media.write_text("not a video")
    with pytest.raises(MediaError, match="cannot open the media file"):
        open_source(replace(settings, source=f"file:{not_media}"), "v1")


async def test_the_pattern_source_and_its_screen(settings: MediaSettings) -> None:
    source = open_source(settings, "v1", rgb=GREEN)
    try:
        frames = [await source.video.recv() for _ in range(3)]
        assert [read_counter(f) for f in frames] == [0, 1, 2]  # type: ignore[arg-type]
        assert all(f.format.name == "yuv420p" for f in frames)  # type: ignore[attr-defined]
        assert frames[1].pts > frames[0].pts  # type: ignore[operator]
        sound = await source.audio.recv()
        assert sound.samples == 960 and sound.sample_rate == 48_000  # type: ignore[attr-defined]
        screen = source.screen_track()
        shot = await screen.recv()
        assert near(sample_rgb(shot), SCREEN_RGB, 30)  # type: ignore[arg-type]
        assert screen.id == "kefu.screen.v1" and source.video.id == "kefu.camera.v1"
    finally:
        source.stop()
    with pytest.raises(Exception):  # noqa: B017 - aiortc's MediaStreamError once stopped
        await source.video.recv()


def test_the_counter_survives_vp8() -> None:
    painter = PatternPainter(320, 240, COLOURS[0])
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"  # type: ignore[attr-defined]
    encoder.bit_rate = 300_000
    encoder.time_base = fractions.Fraction(1, 15)
    decoder = av.CodecContext.create("libvpx", "r")
    values = [0, 1, 7, 12345, 2**20 - 1]
    decoded = []
    for i, value in enumerate(values):
        frame = painter.paint(value)
        frame.pts = i
        for packet in encoder.encode(frame):  # type: ignore[attr-defined]
            decoded += decoder.decode(packet)  # type: ignore[attr-defined]
    for packet in encoder.encode(None):  # type: ignore[attr-defined]
        decoded += decoder.decode(packet)  # type: ignore[attr-defined]
    assert [read_counter(f) for f in decoded] == values
    assert all(near(sample_rgb(f), COLOURS[0]) for f in decoded)


def test_members_get_distinct_stable_colours() -> None:
    assert colour_for("v1") == colour_for("v1")
    assert len({colour_for(name) for name in ("a", "b", "c", "d", "e", "f")}) > 1
    with pytest.raises(ValueError):
        PatternPainter(321, 240, COLOURS[0])
