"""Media tracks: the synthetic camera, screen and tone; wrappers; track labels.

Every video track here yields ``yuv420p`` frames: a
:class:`~aiortc.contrib.media.MediaRelay` hands one frame to several
encoders, and a frame in another format crashes the process there, so
sources convert once (:class:`NormalisedVideoTrack`).

A track's ``id`` travels in the SDP (``a=msid``), and aiortc gives the
receiver's track the same id. We use it as a label, ``kefu.<role>.<member>``
(:func:`track_label`), so that a receiver knows whose camera, microphone or
screen each incoming track is, also when the hub forwards it.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import math
import re
import struct
from dataclasses import dataclass
from typing import Literal

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from av.frame import Frame

from .errors import MediaError
from .pattern import PatternPainter

__all__ = [
    "ROLES",
    "Label",
    "LabelledTrack",
    "NormalisedVideoTrack",
    "PatternVideoTrack",
    "Role",
    "ToneAudioTrack",
    "parse_track_label",
    "track_label",
]

Role = Literal["camera", "mic", "screen"]
ROLES: tuple[Role, ...] = ("camera", "mic", "screen")
KIND_OF_ROLE: dict[Role, str] = {"camera": "video", "mic": "audio", "screen": "video"}

VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020
AUDIO_SAMPLES = int(AUDIO_RATE * AUDIO_PTIME)

_RAW_MEMBER = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_LABEL = 64  # RFC 8830: msid-id is at most 64 token characters


@dataclass(frozen=True, slots=True)
class Label:
    """Whose track it is, and which of theirs."""

    member: str
    role: Role

    @property
    def kind(self) -> str:
        return KIND_OF_ROLE[self.role]


def track_label(member: str, role: Role) -> str:
    """The track id for ``member``'s ``role`` track (a valid SDP msid token)."""
    if role not in ROLES:
        raise MediaError(f"track role {role!r}: one of {', '.join(ROLES)}")
    if _RAW_MEMBER.match(member):
        token = member
    else:
        token = "~" + base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")
    label = f"kefu.{role}.{token}"
    if len(label) > _MAX_LABEL:
        raise MediaError(
            f"member name {member!r} is too long for a track label (at most ~45 ASCII characters)"
        )
    return label


def parse_track_label(track_id: str | None) -> Label | None:
    """The :class:`Label` of a track id made by :func:`track_label`, else ``None``."""
    if not track_id:
        return None
    prefix, _, rest = track_id.partition(".")
    role, _, token = rest.partition(".")
    if prefix != "kefu" or role not in ROLES or not token:
        return None
    if token.startswith("~"):
        body = token[1:]
        try:
            member = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if not member:
            return None
    elif _RAW_MEMBER.match(token):
        member = token
    else:
        return None
    return Label(member, role)


class _PacedTrack(MediaStreamTrack):
    """A local track that yields a frame every ``period`` seconds of the loop's
    clock and can be paused (no frames at all, as when a camera stalls)."""

    def __init__(self, period: float, track_id: str | None) -> None:
        super().__init__()
        if track_id is not None:
            self._id = track_id
        self._period = period
        self._running = asyncio.Event()
        self._running.set()
        self._start: float | None = None
        self._count = 0  # frames yielded
        self.latest: Frame | None = None

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        """Stop yielding frames until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        super().stop()
        self._running.set()  # wake a paused recv so it raises

    async def _tick(self) -> float:
        """Wait for the next frame's time; returns the loop time to stamp it with."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._running.is_set():
            await self._running.wait()
            if self.readyState != "live":
                raise MediaStreamError
            self._start = None  # after a pause, restart the pace from now
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now - self._count * self._period
        due = self._start + self._count * self._period
        if now - due > self._period:  # fell behind (a busy loop): skip, do not burst
            self._start = now - self._count * self._period
            due = now
        if due > now:
            await asyncio.sleep(due - now)
        if self.readyState != "live":
            raise MediaStreamError
        self._count += 1
        return loop.time()


class PatternVideoTrack(_PacedTrack):
    """The synthetic camera (or screen): a painted pattern with a frame counter."""

    kind = "video"

    def __init__(self, painter: PatternPainter, fps: int, *, track_id: str | None = None) -> None:
        super().__init__(1 / fps, track_id)
        self.painter = painter
        self._epoch: float | None = None

    @property
    def counter(self) -> int:
        """The counter of the last frame yielded."""
        return self._count - 1

    async def recv(self) -> Frame:
        now = await self._tick()
        if self._epoch is None:
            self._epoch = now
        frame = self.painter.paint(self._count - 1)
        frame.pts = int((now - self._epoch) * VIDEO_CLOCK)
        frame.time_base = VIDEO_TIME_BASE
        self.latest = frame
        return frame


class ToneAudioTrack(_PacedTrack):
    """A sine tone, 48 kHz mono, 20 ms frames. ``frequency`` is a multiple of
    50 Hz so that every frame holds whole periods and one buffer serves all."""

    kind = "audio"

    def __init__(self, frequency: int = 400, *, amplitude: float = 0.2, track_id: str | None = None) -> None:
        super().__init__(AUDIO_PTIME, track_id)
        if frequency <= 0 or frequency % 50 or frequency >= AUDIO_RATE // 2:
            raise MediaError("tone frequency: a multiple of 50 Hz below 24 kHz")
        self.frequency = frequency
        peak = int(32767 * amplitude)
        self._pcm = b"".join(
            struct.pack("<h", int(peak * math.sin(2 * math.pi * frequency * i / AUDIO_RATE)))
            for i in range(AUDIO_SAMPLES)
        )

    async def recv(self) -> Frame:
        await self._tick()
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = AUDIO_RATE
        frame.pts = (self._count - 1) * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.latest = frame
        return frame


class LabelledTrack(MediaStreamTrack):
    """``inner`` under another id (a :func:`track_label`); stopping it stops ``inner``."""

    def __init__(self, inner: MediaStreamTrack, label: str) -> None:
        super().__init__()
        self.kind = inner.kind
        self._id = label
        self.inner = inner
        #: on hold (issue 20): ``inner``'s frames are read and dropped, none is sent, so
        #: nothing piles up in a relay's buffer; the far end keeps its last frame
        self.held = False

    async def recv(self) -> Frame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self.inner.recv()
            assert isinstance(frame, Frame)
            if not self.held:
                return frame

    def stop(self) -> None:
        super().stop()
        self.inner.stop()


class NormalisedVideoTrack(MediaStreamTrack):
    """A device's or file's video, scaled to ``width`` x ``height`` ``yuv420p``
    once, here; keeps the last frame at the input's own resolution for stills."""

    kind = "video"

    def __init__(
        self, inner: MediaStreamTrack, width: int, height: int, *, track_id: str | None = None
    ) -> None:
        super().__init__()
        if track_id is not None:
            self._id = track_id
        self.inner = inner
        self.width, self.height = width, height
        self.latest: VideoFrame | None = None
        self.latest_native: VideoFrame | None = None

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        native = await self.inner.recv()
        assert isinstance(native, VideoFrame)
        self.latest_native = native
        if native.format.name == "yuv420p" and (native.width, native.height) == (self.width, self.height):
            frame = native
        else:
            frame = native.reformat(width=self.width, height=self.height, format="yuv420p")
            frame.pts, frame.time_base = native.pts, native.time_base
        self.latest = frame
        return frame

    def stop(self) -> None:
        super().stop()
        self.inner.stop()
