"""A member's side of a call with the hub: the Python visitor (or an invited
agent's Python client). One peer connection to the hub, which makes the
offers (see :mod:`kefu.media.peer`); the member asks for renegotiation.

It also holds what only the member can do with its own camera: take a photo
at full resolution (takePhoto, SPEC §4.4) and share its screen (inviteShare,
SPEC §4.5) as a second video track on the same connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from av import VideoFrame

from .errors import MediaError
from .events import Emitter
from .frames import Image
from .peer import MediaPeer
from .settings import MediaSettings
from .source import MediaSource, open_source
from .tracks import PatternVideoTrack, Role, track_label

__all__ = ["MediaMember"]


class MediaMember:
    """``local``'s media in a call whose hub is ``hub`` (the primary agent)."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        local: str,
        hub: str,
        call_id: str = "",
        source: MediaSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        send: tuple[Role, ...] = ("camera", "mic"),
    ) -> None:
        """``send``: what it sends from the start (a supervisor, issue 20: nothing, then its
        microphone while it whispers or barges, :meth:`speak`; the hub decides who gets it)."""
        self.settings = settings
        self.local = local
        self.source = source if source is not None else open_source(settings, local)
        self._own_source = source is None
        self.peer = MediaPeer(settings, local=local, remote=hub, offerer=False, call_id=call_id, clock=clock)
        if "camera" in send:
            self.peer.send(self.source.video, "camera")
        if "mic" in send:
            self.peer.send(self.source.audio, "mic")
        self._screen: PatternVideoTrack | None = None

    @property
    def events(self) -> Emitter:
        return self.peer.events

    async def negotiate(self) -> dict[str, Any] | None:
        return await self.peer.negotiate()

    async def handle(self, message: object) -> dict[str, Any] | None:
        return await self.peer.handle(message)

    def speak(self, on: bool) -> None:
        """Send the microphone, or stop sending it; a change emits NegotiationNeeded (a
        ``renegotiate`` request to the hub): the same connection, no re-join."""
        sending = track_label(self.local, "mic") in self.peer.sending
        if on and not sending:
            self.peer.send(self.source.audio, "mic")
        elif not on and sending:
            self.peer.unsend(self.local, "mic")

    async def take_photo(self) -> Image:
        """takePhoto: a JPEG still of this member's camera at its full resolution."""
        return await self.source.capture_still()

    @property
    def sharing(self) -> bool:
        return self._screen is not None

    def start_share(self) -> None:
        """inviteShare accepted: send a screen (a synthetic one from Python) as a
        second video track. Emits NegotiationNeeded (a ``renegotiate`` request)."""
        if self._screen is not None:
            raise MediaError("the screen is already shared")
        self._screen = self.source.screen_track()
        self.peer.send(self._screen, "screen")

    def stop_share(self) -> None:
        """Close the screen share (the hub sees the track go after renegotiation)."""
        if self._screen is None:
            return
        self.peer.unsend(self.local, "screen")
        self._screen.stop()
        self._screen = None

    def latest_frame(self, member: str | None = None, role: Role = "camera") -> VideoFrame:
        """The latest frame of ``member`` (the hub's agent by default; others through it)."""
        return self.peer.latest_frame(member, role)

    async def close(self) -> None:
        if self._screen is not None:
            self._screen.stop()
        await self.peer.close()
        if self._own_source:
            self.source.stop()
