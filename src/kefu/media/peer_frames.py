"""What a :class:`~kefu.media.peer.MediaPeer` has received: its tracks and their frames.

The peer keeps, per received track (by mid), the latest decoded frame
(:class:`~kefu.media.peer_state.ReceivedTrack`), the callers waiting for the
next frame of a member's track, and the frame listeners; this base class is
the read side of that state (the peer's receive loop writes it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from av import VideoFrame
from av.frame import Frame

from .errors import NoFrameError
from .frames import Image, RgbImage, encode_jpeg_async, to_rgb
from .peer_state import FrameListener, ReceivedTrack
from .settings import MediaSettings
from .tracks import Label, Role

__all__ = ["ReceivedFrames"]


class ReceivedFrames:
    """The received tracks of a peer and their latest frames (the peer fills them in)."""

    settings: MediaSettings
    remote: str
    _received: dict[str, ReceivedTrack]
    _waiters: dict[tuple[str, str], list[asyncio.Future[Frame]]]
    _listeners: list[FrameListener]

    def add_frame_listener(self, listener: FrameListener) -> Callable[[], None]:
        """Call ``listener(label, frame, time)`` for every received frame."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @property
    def received(self) -> tuple[ReceivedTrack, ...]:
        return tuple(self._received.values())

    def received_track(self, member: str | None = None, role: Role = "camera") -> ReceivedTrack | None:
        who = member if member is not None else self.remote
        return next((r for r in self._received.values() if r.label == Label(who, role)), None)

    async def next_frame(
        self, member: str | None = None, role: Role = "camera", within: float = 5.0
    ) -> Frame:
        """The next frame of ``member``'s ``role`` track (the remote member's camera by default)."""
        who = member if member is not None else self.remote
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((who, role), []).append(fut)
        try:
            return await asyncio.wait_for(fut, within)
        except TimeoutError:
            raise NoFrameError(f"no {role} frame from {who} within {within} s") from None

    def latest_frame(self, member: str | None = None, role: Role = "camera") -> VideoFrame:
        """The latest decoded video frame of ``member``'s ``role`` track."""
        rec = self.received_track(member, role)
        if rec is None or not isinstance(rec.latest, VideoFrame):
            who = member if member is not None else self.remote
            raise NoFrameError(f"no {role} video from {who} yet")
        return rec.latest

    def latest_rgb(self, member: str | None = None, role: Role = "camera") -> RgbImage:
        """:meth:`latest_frame` as packed RGB (for the window)."""
        return to_rgb(self.latest_frame(member, role))

    async def snapshot(self, member: str | None = None) -> Image:
        """snapshot (SPEC §4.4): a JPEG of ``member``'s latest camera frame."""
        return await encode_jpeg_async(self.latest_frame(member), self.settings.jpeg_quality)
