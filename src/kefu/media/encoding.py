"""The frames we send encoded on the event loop, not handed to aiortc's thread pool.

aiortc's ``RTCRtpSender`` hands every frame to a thread of the loop's default
executor to be encoded (``run_in_executor``) and waits on the loop for the
result: two thread wake-ups a frame (the worker's, then the loop's), measured
at 116–149 µs of CPU each time on this machine — about what encoding a 20 ms
Opus frame costs (≈ 170 µs), 50 times a second for a microphone.
:func:`encode_on_loop` gives one sender a loop whose executor is the loop
itself: the sender's own code runs unchanged (its encoder, the audio level of
each frame, key frames asked for by the receiver, the bit rate the receiver's
REMB sets), the encoding simply happens where the frame was read. A video
frame larger than :data:`MAX_PIXELS_ON_LOOP` (a screen share, a camera set to
720p or more) still goes to the pool: its encode is long enough to hold up the
loop's audio and signalling, and in a thread it overlaps the loop on another core.
docs/decisions.md D64.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiortc import RTCRtpSender
from av import VideoFrame

__all__ = ["MAX_PIXELS_ON_LOOP", "encode_on_loop", "encodes_on_loop"]

#: The largest video frame encoded on the loop: 640x480, VP8's 1–2 ms (D64's latency figures);
#: a larger one is encoded in aiortc's pool, as before.
MAX_PIXELS_ON_LOOP = 640 * 480

T = TypeVar("T")

_LOOP = "_RTCRtpSender__loop"  # aiortc 1.x: the loop whose executor encodes the sender's frames


class _OnLoop:
    """An event loop, as a sender sees it, whose executor is the loop: ``fn`` runs at once
    (a video frame over :data:`MAX_PIXELS_ON_LOOP`: in the loop's pool, as before)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run_in_executor(self, executor: Any, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if args and isinstance(args[0], VideoFrame) and args[0].width * args[0].height > MAX_PIXELS_ON_LOOP:
            return self.loop.run_in_executor(executor, fn, *args)
        future: asyncio.Future[T] = self.loop.create_future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # the sender sees the encoder's error as from the pool
            future.set_exception(exc)
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


def encode_on_loop(sender: RTCRtpSender) -> bool:
    """``sender`` encodes its frames on the event loop (idempotent); whether it could (an
    aiortc without that attribute encodes in its pool, as before)."""
    loop = getattr(sender, _LOOP, None)
    if loop is None:
        return False
    if not isinstance(loop, _OnLoop):
        setattr(sender, _LOOP, _OnLoop(loop))
    return True


def encodes_on_loop(sender: RTCRtpSender) -> bool:
    """Whether :func:`encode_on_loop` was applied to ``sender``."""
    return isinstance(getattr(sender, _LOOP, None), _OnLoop)
