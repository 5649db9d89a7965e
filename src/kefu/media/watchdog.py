"""The frame watchdog behind ``visitorStreamOffline`` (SPEC §2, v1216).

WebRTC says nothing when a sender simply stops: frames stop, and a killed
peer reads as ``closed`` only after about 30 s. So the receiver watches its
decoded frames itself. This class is the pure part: time comes in as
arguments, events come out as values; :class:`~kefu.media.peer.MediaPeer`
feeds it frames and polls it on a timer.

Rules: a member's stream is watched from its first frame ("has stopped"
presumes it ran; connecting takes a while and is not an outage); no frame
for *more than* ``threshold`` seconds is one outage, reported once by
:meth:`poll` with how long it has lasted; the next frame ends it and
:meth:`frame` reports that (an addition: ``StreamOnline``). A gap of at most
``threshold`` reports nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .events import Emitter, StreamOffline, StreamOnline

__all__ = ["FrameWatchdog"]


@dataclass(slots=True)
class _Watch:
    last: float | None = None  # time of the last frame; None before the first
    offline: bool = False


class FrameWatchdog:
    def __init__(self, call_id: str, threshold: float) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.call_id = call_id
        self.threshold = threshold
        self._members: dict[str, _Watch] = {}

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._members)

    def is_offline(self, member: str) -> bool:
        w = self._members.get(member)
        return w is not None and w.offline

    def watch(self, member: str) -> None:
        """Watch ``member`` (again), from its next frame."""
        self._members[member] = _Watch()

    def unwatch(self, member: str) -> None:
        self._members.pop(member, None)

    def frame(self, member: str, now: float) -> StreamOnline | None:
        """A frame of ``member`` arrived at ``now``."""
        w = self._members.get(member)
        if w is None:
            w = self._members[member] = _Watch()
        event = None
        if w.offline and w.last is not None:
            event = StreamOnline(self.call_id, member, now - w.last)
            w.offline = False
        w.last = now if w.last is None else max(w.last, now)
        return event

    def poll(self, now: float) -> list[StreamOffline]:
        """Outages that began since the last poll."""
        events = []
        for member, w in self._members.items():
            if w.last is None:
                continue
            gap = now - w.last
            if not w.offline and gap > self.threshold:
                w.offline = True
                events.append(StreamOffline(self.call_id, member, gap))
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`poll` could report an outage."""
        times = [
            w.last + self.threshold for w in self._members.values() if not w.offline and w.last is not None
        ]
        return min(times) if times else None


async def run_watchdog(
    watchdog: FrameWatchdog, events: Emitter, interval: float, clock: Callable[[], float]
) -> None:
    """Poll ``watchdog`` every ``interval`` seconds and emit its events."""
    while True:
        await asyncio.sleep(interval)
        for event in watchdog.poll(clock()):
            events.emit(event)
