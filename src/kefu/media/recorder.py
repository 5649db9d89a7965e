"""Recording a call to WebM (VP8 / Opus), delivered in chunks during the call.

Theory of operation
-------------------
A bank's "dual recording" keeps both directions of every call. The
:class:`Recorder` takes a fixed set of tracks (each member's camera and
microphone), one WebM stream each, titled ``<member> <role>``.

* **Off the event loop.** The loop only copies references: a consumer task
  per track reads frames (through the call's ``MediaRelay``) and puts them,
  stamped with their arrival time, on a bounded queue. One worker thread
  scales, encodes (libvpx realtime, libopus) and muxes. If the worker falls
  behind, frames are dropped and counted, never queued without bound.
  (aiortc's ``MediaRecorder`` encodes on the loop and loses the video track
  when audio arrives first.)
* **One clock.** Every stream is timed by arrival on the same clock, so the
  streams stay in sync; audio is timed by its samples and re-anchored to the
  clock after a gap.
* **Chunks during the call.** The muxer writes a cluster at least every
  ``record_chunk_seconds``; each write reaches the local file and becomes a
  :class:`RecordingChunk` ``(offset, data)``. While recording, chunks are
  appends; at the end the muxer goes back and fills in the header (duration,
  seek index), so the last few chunks have earlier offsets. Whoever stores the
  chunks writes each at its offset; a crash loses at most the cluster being
  built (about one chunk interval), and the chunks so far make a playable
  file. The result carries the SHA-256 of the whole file.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler

from .errors import MediaError
from .settings import MediaSettings
from .tracks import Label

__all__ = ["ChunkListener", "Recorder", "RecordingChunk", "RecordingResult"]

log = logging.getLogger(__name__)

_AUDIO_RATE = 48_000
_OPUS_FRAME = 960
_GAP = 0.25  # seconds of audio missing before the stream is re-anchored to the clock
_QUEUE = 600  # frames waiting for the worker


@dataclass(frozen=True, slots=True)
class RecordingChunk:
    """Bytes of the WebM file at ``offset``: store them there."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RecordingResult:
    path: Path
    size: int
    sha256: str
    duration: float  # seconds, the last timestamp written
    streams: tuple[str, ...]  # stream titles, in file order
    chunks: int
    dropped: int  # frames the worker could not keep up with


ChunkListener = Callable[[RecordingChunk], None]


class _ChunkFile:
    """The muxer's output: a real file, and every contiguous run of writes as a chunk."""

    def __init__(self, path: Path, emit: Callable[[RecordingChunk], None]) -> None:
        self._f = path.open("w+b")
        self._emit = emit
        self._pos = 0
        self._start = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        if self._buf and self._start + len(self._buf) != self._pos:
            self.flush_chunk()
        if not self._buf:
            self._start = self._pos
        self._f.write(data)
        self._buf += data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.flush_chunk()
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def flush_chunk(self) -> None:
        if self._buf:
            self._emit(RecordingChunk(self._start, bytes(self._buf)))
            self._buf = bytearray()

    def close(self) -> None:
        self.flush_chunk()
        self._f.close()


class _AudioTimer:
    """Audio timestamps from sample counts, re-anchored to the clock after a gap."""

    def __init__(self) -> None:
        self.fifo = AudioFifo()
        self.resampler = AudioResampler(format="s16", layout="stereo", rate=_AUDIO_RATE)
        self.base: int | None = None  # pts of the fifo's first sample

    def push(self, frame: AudioFrame, at: float) -> list[AudioFrame]:
        out: list[AudioFrame] = []
        for f in self.resampler.resample(frame):
            start = int(at * _AUDIO_RATE) - f.samples
            if self.base is None:
                self.base = max(0, start)
            expected = self.base + self.fifo.samples
            if start - expected > _GAP * _AUDIO_RATE:
                out += self._drain(pad=True)
                self.base = start
            if f is frame:  # the relay's frame, shared with the senders: never stamp it
                f = _audio_copy(f)
            f.pts = None
            self.fifo.write(f)
            out += self._drain(pad=False)
        return out

    def _drain(self, pad: bool) -> list[AudioFrame]:
        out = []
        if pad and self.fifo.samples % _OPUS_FRAME:
            missing = _OPUS_FRAME - self.fifo.samples % _OPUS_FRAME
            silence = AudioFrame(format="s16", layout="stereo", samples=missing)
            silence.sample_rate = _AUDIO_RATE
            for p in silence.planes:
                p.update(bytes(p.buffer_size))
            self.fifo.write(silence)
        while self.fifo.samples >= _OPUS_FRAME:
            f = self.fifo.read(_OPUS_FRAME)
            assert f is not None and self.base is not None
            f.pts = self.base
            f.time_base = fractions.Fraction(1, _AUDIO_RATE)
            self.base += _OPUS_FRAME
            out.append(f)
        return out


class Recorder:
    """Records ``tracks`` to WebM at ``path`` from now until :meth:`stop`."""

    def __init__(
        self,
        path: Path,
        settings: MediaSettings,
        tracks: Sequence[tuple[Label, MediaStreamTrack]],
        *,
        relay: MediaRelay,
        clock: Callable[[], float] = time.monotonic,
        on_chunk: ChunkListener | None = None,
    ) -> None:
        if not tracks:
            raise MediaError("nothing to record: the call has no tracks yet")
        self.path = Path(path)
        self.settings = settings
        self.labels = tuple(label for label, _ in tracks)
        self.clock = clock
        self._loop = asyncio.get_running_loop()
        self._on_chunk = on_chunk
        self._chunks: asyncio.Queue[RecordingChunk | None] = asyncio.Queue()
        self._work: queue.Queue[tuple[int, Any, float] | None] = queue.Queue(maxsize=_QUEUE)
        self._dropped = 0
        self._chunk_count = 0
        self._t0 = clock()
        self._stopped = False
        self._done: asyncio.Future[RecordingResult] = self._loop.create_future()
        self._proxies = [relay.subscribe(track, buffered=track.kind == "audio") for _, track in tracks]
        self._kinds = [track.kind for _, track in tracks]
        self._tasks = [asyncio.ensure_future(self._consume(i, p)) for i, p in enumerate(self._proxies)]
        self._thread = threading.Thread(
            target=self._worker, name=f"kefu-recorder-{self.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def dropped(self) -> int:
        return self._dropped

    async def _consume(self, index: int, proxy: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await proxy.recv()
            except MediaStreamError:
                return
            try:
                self._work.put_nowait((index, frame, self.clock() - self._t0))
            except queue.Full:
                self._dropped += 1

    # ------------------------------------------------------------ worker thread
    def _deliver(self, chunk: RecordingChunk | None) -> None:
        """On the loop: hand a chunk (or the end) to the listener or the iterator."""
        if chunk is not None:
            self._chunk_count += 1
            if self._on_chunk is not None:
                try:
                    self._on_chunk(chunk)
                except Exception:
                    log.exception("recording chunk listener failed")
                return
        self._chunks.put_nowait(chunk)

    def _worker(self) -> None:
        try:
            result = self._record()
        except Exception as exc:  # reported to stop()
            log.exception("recording to %s failed", self.path)
            error = MediaError(f"recording to {self.path} failed: {exc}")
            self._loop.call_soon_threadsafe(self._finish, None, error)
        else:
            self._loop.call_soon_threadsafe(self._finish, result, None)

    def _finish(self, result: RecordingResult | None, error: MediaError | None) -> None:
        self._deliver(None)
        if not self._done.done():
            if error is not None:
                self._done.set_exception(error)
            else:
                assert result is not None
                self._done.set_result(result)

    def _record(self) -> RecordingResult:
        s = self.settings

        def emit(chunk: RecordingChunk) -> None:
            self._loop.call_soon_threadsafe(self._deliver, chunk)

        out = _ChunkFile(self.path, emit)
        container = av.open(
            out,
            "w",
            format="webm",
            options={
                "cluster_time_limit": str(int(s.record_chunk_seconds * 1000)),
                "max_interleave_delta": str(int(s.record_chunk_seconds * 1_000_000)),
                "flush_packets": "1",  # hand each finished cluster to the file at once
            },
        )
        streams: list[Any] = []
        timers: list[_AudioTimer | None] = []
        last_pts: list[int] = []
        st: Any
        for label, kind in zip(self.labels, self._kinds, strict=True):
            if kind == "video":
                st = container.add_stream(
                    "libvpx",
                    rate=s.fps,
                    options={"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
                )
                st.width, st.height, st.pix_fmt = s.video_width, s.video_height, "yuv420p"
                st.bit_rate = s.record_video_bitrate
                st.codec_context.time_base = fractions.Fraction(1, 1000)
                st.codec_context.gop_size = s.fps * 2
                st.codec_context.thread_count = 1  # libvpx's threads cost more than they give here
                timers.append(None)
            else:
                st = container.add_stream("libopus", rate=_AUDIO_RATE)
                st.layout = "stereo"
                st.bit_rate = 48_000
                timers.append(_AudioTimer())
            st.metadata["title"] = f"{label.member} {label.role}"
            streams.append(st)
            last_pts.append(-1)
        duration = 0.0
        try:
            while True:
                item = self._work.get()
                if item is None:
                    break
                index, frame, at = item
                st = streams[index]
                if isinstance(frame, VideoFrame):
                    if (frame.width, frame.height, frame.format.name) != (st.width, st.height, "yuv420p"):
                        copy = frame.reformat(width=st.width, height=st.height, format="yuv420p")
                    else:
                        copy = _video_copy(frame)
                    pts = max(int(at * 1000), last_pts[index] + 1)
                    last_pts[index] = pts
                    copy.pts, copy.time_base = pts, fractions.Fraction(1, 1000)
                    container.mux(st.encode(copy))
                    duration = max(duration, pts / 1000)
                    out.flush_chunk()
                elif isinstance(frame, AudioFrame):
                    timer = timers[index]
                    assert timer is not None
                    for chunk in timer.push(frame, at):
                        container.mux(st.encode(chunk))
                        duration = max(duration, ((chunk.pts or 0) + chunk.samples) / _AUDIO_RATE)
                    out.flush_chunk()
        finally:
            for st in streams:
                try:
                    container.mux(st.encode(None))
                except av.FFmpegError:
                    log.debug("flushing %s failed", st)
            container.close()
            out.close()
        data_hash = hashlib.sha256()
        size = 0
        with self.path.open("rb") as done:
            while block := done.read(1 << 20):
                data_hash.update(block)
                size += len(block)
        titles = tuple(f"{label.member} {label.role}" for label in self.labels)
        return RecordingResult(self.path, size, data_hash.hexdigest(), duration, titles, 0, self._dropped)

    # ------------------------------------------------------------ the caller's side
    async def chunks(self) -> AsyncIterator[RecordingChunk]:
        """Every chunk, in order, until the recording is finished (when no
        ``on_chunk`` listener was given)."""
        if self._on_chunk is not None:
            raise MediaError("this recorder delivers its chunks to on_chunk")
        while True:
            chunk = await self._chunks.get()
            if chunk is None:
                return
            yield chunk

    async def stop(self) -> RecordingResult:
        """Stop, finish the file, and return its size, checksum and duration."""
        if not self._stopped:
            self._stopped = True
            for task in self._tasks:
                task.cancel()
            for proxy in self._proxies:
                proxy.stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.to_thread(self._work.put, None)
        result = await self._done
        return RecordingResult(
            result.path,
            result.size,
            result.sha256,
            result.duration,
            result.streams,
            self._chunk_count,
            self._dropped,
        )


def _audio_copy(frame: AudioFrame) -> AudioFrame:
    copy = AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
    copy.sample_rate = frame.sample_rate
    for dst, src in zip(copy.planes, frame.planes, strict=True):
        dst.update(bytes(src)[: dst.buffer_size])
    return copy


def _video_copy(frame: VideoFrame) -> VideoFrame:
    """A frame the encoder may stamp: the relay's frame is shared with other
    encoders, so its pts is not ours to change."""
    copy = VideoFrame(frame.width, frame.height, "yuv420p")
    for dst, src in zip(copy.planes, frame.planes, strict=True):
        if dst.line_size == src.line_size:
            dst.update(bytes(src))
        else:
            width = dst.width
            rows = [
                bytes(memoryview(src)[i * src.line_size : i * src.line_size + width])
                for i in range(src.height)
            ]
            pad = bytes(dst.line_size - width)
            dst.update(b"".join(r + pad for r in rows))
    return copy
