"""Dual recording: a ~2 s call to WebM (VP8 / Opus) in a worker thread,
delivered in chunks during the call; ffprobe reads the result."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import av
import pytest

from kefu.media import MediaSettings, RecordingChunk

from .conftest import GREEN, call

pytestmark = pytest.mark.media

CALL_SECONDS = 2.0


def assemble(chunks: list[RecordingChunk], path: Path) -> bytes:
    """What a store does with the chunks: write each at its offset."""
    with path.open("w+b") as f:
        for chunk in chunks:
            f.seek(chunk.offset)
            f.write(chunk.data)
    return path.read_bytes()


def ffprobe(path: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def decoded_video_seconds(path: Path) -> float:
    """Decode the first video stream to its end; the last frame's time."""
    last = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is not None:
                last = max(last, frame.time)
    return last


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe: apt-get install -y ffmpeg")
async def test_a_call_is_recorded_to_webm_in_chunks_during_the_call(
    settings: MediaSettings, tmp_path: Path
) -> None:
    s = replace(settings, record_chunk_seconds=0.5)
    async with call(s, ("v1", GREEN)) as c:
        await c.hub.peer("v1").next_frame("v1", "camera")
        await c.hub.peer("v1").next_frame("v1", "mic")
        loop = asyncio.get_running_loop()
        chunks: list[RecordingChunk] = []
        media_arrived = asyncio.Event()

        def on_chunk(chunk: RecordingChunk) -> None:
            chunks.append(chunk)
            if chunk.offset > 0:  # beyond the header: a cluster of media
                media_arrived.set()

        recorder = c.hub.start_recording(tmp_path / "call.webm", on_chunk=on_chunk)
        started = loop.time()
        await asyncio.wait_for(media_arrived.wait(), CALL_SECONDS)
        during = loop.time() - started
        partial = tmp_path / "partial.webm"
        assemble(list(chunks), partial)
        assert during < CALL_SECONDS and not recorder.stopped
        assert 0 < decoded_video_seconds(partial) <= during  # playable up to that point
        assert ffprobe(partial)["format"]["format_name"] == "matroska,webm"

        await asyncio.sleep(started + CALL_SECONDS - loop.time())  # the rest of the call
        elapsed = loop.time() - started  # the call ends here
        result = await recorder.stop()

    # the file: WebM, the agent's and the visitor's video and audio
    probe = ffprobe(result.path)
    assert probe["format"]["format_name"] == "matroska,webm"
    kinds = sorted((st["codec_type"], st["codec_name"]) for st in probe["streams"])
    assert kinds == [("audio", "opus"), ("audio", "opus"), ("video", "vp8"), ("video", "vp8")]
    titles = sorted(st["tags"]["title"] for st in probe["streams"])
    assert titles == ["agent camera", "agent mic", "v1 camera", "v1 mic"]
    assert abs(float(probe["format"]["duration"]) - elapsed) < 0.5
    assert abs(result.duration - elapsed) < 0.5
    # the chunks rebuild the file exactly, and the checksum is the file's
    rebuilt = assemble(chunks, tmp_path / "rebuilt.webm")
    assert rebuilt == result.path.read_bytes() and result.size == len(rebuilt)
    assert result.sha256 == hashlib.sha256(rebuilt).hexdigest()
    assert result.chunks == len(chunks) >= 3 and result.dropped == 0
    assert decoded_video_seconds(result.path) > CALL_SECONDS - 0.5


async def test_chunks_can_be_read_as_an_async_iterator(settings: MediaSettings, tmp_path: Path) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        await c.hub.peer("v1").next_frame()
        recorder = c.hub.start_recording(tmp_path / "call.webm")
        got: list[RecordingChunk] = []

        async def upload() -> None:
            async for chunk in recorder.chunks():
                got.append(chunk)

        uploader = asyncio.ensure_future(upload())
        for _ in range(10):
            await c.hub.peer("v1").next_frame()
        result = await recorder.stop()
        await asyncio.wait_for(uploader, 5)
    assert got and got[0].offset == 0
    assert assemble(got, tmp_path / "rebuilt.webm") == result.path.read_bytes()
