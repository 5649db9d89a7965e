"""A supervisor's side of a call with the hub (issue 20): it receives every
member's media through one connection to the primary agent's hub, and sends
its microphone only while it whispers or barges (the hub decides who gets it,
:meth:`kefu.media.MediaHub.set_audience`). It never sends video.

Like :class:`~kefu.media.MediaMember` it answers the hub's offers and asks for
a renegotiation when what it sends changes (:meth:`speak`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from av import VideoFrame

from .events import Emitter
from .peer import MediaPeer
from .settings import MediaSettings
from .source import MediaSource, open_source
from .tracks import Role

__all__ = ["SupervisorMember"]


class SupervisorMember:
    """``local`` (a supervisor) in a call whose hub is ``hub``; silent until :meth:`speak`."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        local: str,
        hub: str,
        call_id: str = "",
        source: MediaSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.source = source if source is not None else open_source(settings, local)
        self._own_source = source is None
        self.peer = MediaPeer(settings, local=local, remote=hub, offerer=False, call_id=call_id, clock=clock)

    @property
    def events(self) -> Emitter:
        return self.peer.events

    @property
    def speaking(self) -> bool:
        return bool(self.peer.sending)

    def speak(self, on: bool) -> None:
        """Send the microphone (whisper, barge) or stop sending it (monitor); a change
        emits NegotiationNeeded (a ``renegotiate`` request to the hub)."""
        if on and not self.speaking:
            self.peer.send(self.source.audio, "mic")
        elif not on and self.speaking:
            self.peer.unsend(self.local, "mic")

    async def negotiate(self) -> dict[str, Any] | None:
        return await self.peer.negotiate()

    async def handle(self, message: object) -> dict[str, Any] | None:
        return await self.peer.handle(message)

    def latest_frame(self, member: str | None = None, role: Role = "camera") -> VideoFrame:
        return self.peer.latest_frame(member, role)

    async def close(self) -> None:
        await self.peer.close()
        if self._own_source:
            self.source.stop()
