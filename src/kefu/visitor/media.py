"""One call's media on the visitor's side: a :class:`kefu.media.MediaMember`
whose signalling travels through the visitor socket.

The hub (the primary agent's plugin) makes every offer; :meth:`CallMedia.handle`
applies each signalling message it sends and returns the answer to the hub
(``signal`` to the ``from`` member, docs/calls.md). When the member needs a
new offer (its screen share started or stopped) it emits
``NegotiationNeeded`` and a ``renegotiate`` request goes to the hub the same
way. Everything else — camera, microphone, tone, screen — is
:mod:`kefu.media`'s.

In the SFU mode (the call's ``media`` is ``"sfu"``, docs/media.md §4b) the
member is a :class:`kefu.media.SfuMember` instead: it publishes its camera and
microphone to the media server (``signal`` to ``{kind: "sfu", name: "sfu"}``)
as soon as the call is joined and answers the server's offer of each other
member's feed. A screen share is a second track of its publisher (a new
offer to the media server), as it is a second track to the hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from kefu.media import (
    Image,
    MediaError,
    MediaEvent,
    MediaMember,
    MediaSettings,
    NegotiationNeeded,
    SfuMember,
    TrackAdded,
    TrackRemoved,
)
from kefu.media.tracks import PatternVideoTrack
from kefu.protocol import ApiError

from .events import MediaStatus, MediaTrack, Problem, VisitorEvent

__all__ = ["CallMedia"]

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


class CallMedia:
    """``local``'s media in call ``call_id`` with the hub ``hub`` (an agent), or
    through the media server when ``hub`` is ``"sfu"``."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        local: str,
        hub: str,
        call_id: str,
        send: Send,
        emit: Callable[[VisitorEvent], None],
        connect_timeout: float = 10.0,
        report_failure: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.call_id = call_id
        self.connect_timeout = connect_timeout
        self._report_failure = report_failure
        self._send = send
        self._emit = emit
        self.sfu = hub == "sfu"
        self.member: MediaMember | SfuMember = (
            SfuMember(settings, local=local, call_id=call_id)
            if self.sfu
            else MediaMember(settings, local=local, hub=hub, call_id=call_id)
        )
        self._unsubscribe = self.member.events.subscribe(self._on_event)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watching = False
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ signalling
    async def handle(self, data: object) -> None:
        """Apply a signalling message from the hub and send back the reply, if
        any. A bad message raises :class:`~kefu.media.NegotiationError`."""
        reply = await self.member.handle(data)
        # the hub's offer, or (SFU) the media server's answer to this member's publisher
        first = "answer" if self.sfu and isinstance(data, dict) and "feed" not in data else "offer"
        if isinstance(data, dict) and data.get("type") == first:
            self._emit(MediaStatus(self.call_id, "answered", self.hub))
            if not self._watching:
                self._watching = True
                self._spawn(self._watch_connection())
        if reply is not None:
            await self._send(reply)

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self._spawn(self._negotiate())
        elif isinstance(event, TrackAdded | TrackRemoved):
            self._emit(MediaTrack(self.call_id, event.member, event.role, isinstance(event, TrackAdded)))

    async def _negotiate(self) -> None:
        try:
            message = await self.member.negotiate()
            if message is not None:
                await self._send(message)
        except (ApiError, ConnectionError, TimeoutError) as exc:
            self._problem("asking the hub for a new offer", exc)

    async def _watch_connection(self) -> None:
        try:
            peer = self.member.publisher if isinstance(self.member, SfuMember) else self.member.peer
            await peer.wait_connected(self.connect_timeout)
        except MediaError as exc:
            self._emit(MediaStatus(self.call_id, "error", exc.msg))
            if self._report_failure is not None and not self._closed:
                # reliability F15: the server ends our part of the call (media_unreachable)
                try:
                    await self._report_failure(exc.msg)
                except (ApiError, ConnectionError, TimeoutError) as report_exc:
                    self._problem("reporting the media failure", report_exc)
            return
        self._emit(MediaStatus(self.call_id, "connected", self.hub))

    # ------------------------------------------------------------ camera
    async def take_photo(self) -> Image:
        """takePhoto: a JPEG still of the camera at full resolution."""
        return await self.member.take_photo()

    @property
    def sharing(self) -> bool:
        return self.member.sharing

    def start_share(self) -> None:
        self.member.start_share()

    def stop_share(self) -> None:
        self.member.stop_share()

    def _camera(self) -> PatternVideoTrack:
        track = self.member.source.video
        if not isinstance(track, PatternVideoTrack):
            raise MediaError("pausing the camera works with the synthetic source only (source 'pattern')")
        return track

    @property
    def video_paused(self) -> bool:
        track = self.member.source.video
        return isinstance(track, PatternVideoTrack) and track.paused

    def pause_video(self, seconds: float | None = None) -> None:
        """Send no camera frames (as a stalled camera) for ``seconds``, or until
        :meth:`resume_video`. The hub reports stream-offline after its threshold."""
        if seconds is not None and seconds <= 0:
            raise MediaError("pause the camera for a positive number of seconds")
        track = self._camera()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        track.pause()
        self._emit(
            MediaStatus(self.call_id, "paused", "until resumed" if seconds is None else f"{seconds:g} s")
        )
        if seconds is not None:
            self._resume = asyncio.get_running_loop().call_later(seconds, self.resume_video)

    def resume_video(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        track = self._camera()
        if track.paused and not self._closed:
            track.resume()
            self._emit(MediaStatus(self.call_id, "resumed"))

    # ------------------------------------------------------------ life
    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close the connection and the camera, bounded by the settings' ``close_timeout``.

        Closing runs to its end even when the caller is cancelled; a later call
        waits for the same closing."""
        self._closed = True
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            # MediaPeer.close is bounded by close_timeout already; this bounds the rest
            await asyncio.wait_for(self.member.close(), self.settings.close_timeout * 2)
        except TimeoutError:
            log.warning("closing the media of call %s took too long; left behind", self.call_id)
        self._emit(MediaStatus(self.call_id, "closed"))

    def _problem(self, what: str, exc: BaseException) -> None:
        code = exc.code.value if isinstance(exc, ApiError) else type(exc).__name__
        msg = exc.msg if isinstance(exc, ApiError) else str(exc)
        log.warning("call %s: %s failed: %s %s", self.call_id, what, code, msg)
        self._emit(Problem(what, code, msg))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
