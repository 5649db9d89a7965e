"""A member's media in the SFU mode: one publisher, one subscription per other member.

Theory of operation
-------------------
In the SFU mode (docs/media.md §4b) every member — the agents' plugins and
the visitors alike — sends its camera and microphone once, to the media
server, and receives each other member's from it. :class:`SfuMember` holds:

- one **publisher** :class:`~kefu.media.peer.MediaPeer` (``remote`` "sfu",
  the offerer, its tracks ``sendonly``): when it emits
  :class:`NegotiationNeeded`, :meth:`negotiate` gives the offer to send to
  the sfu, whose answer goes to :meth:`handle`;
- one **subscription** per other member's feed (``recvonly``, the answerer):
  the server's offer ``{type: offer, sdp, feed}`` makes it and
  :meth:`handle` returns the answer (with the same ``feed``); ``{type:
  leave, feed}`` closes it.

A screen share (inviteShare) is a second video track of the publisher
(:meth:`start_share`): the renegotiated offer goes to the sfu, which adds it
to the member's feed and offers it again to every subscriber, who sees a
``screen`` track come (:class:`TrackAdded`) as from the hub.

The subscriptions share one relay and one frame watchdog, so
``visitorStreamOffline`` works as with the hub; their events come out of
:attr:`events` (:class:`TrackAdded` names the feed's member). The wire forms
are :mod:`kefu.protocol.sfu`'s; the server relays them to Janus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiortc.contrib.media import MediaRelay
from av import VideoFrame

from kefu.protocol import ApiError
from kefu.protocol.errors import ErrorCode
from kefu.protocol.sfu import decode_feed, feed_ref

from .errors import MediaError, NegotiationError, NoFrameError
from .events import Emitter, MediaEvent, NegotiationNeeded
from .frames import Image, RgbImage, encode_jpeg_async, to_rgb
from .peer import MediaPeer, run_watchdog
from .settings import MediaSettings
from .source import MediaSource, open_source
from .tracks import PatternVideoTrack, Role, track_label
from .watchdog import FrameWatchdog

__all__ = ["SFU_NAME", "SfuMember"]

SFU_NAME = "sfu"
Feed = tuple[str, str]  # (kind, name)


class SfuMember:
    """``local``'s media in a call whose media goes through the media server."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        local: str,
        call_id: str = "",
        source: MediaSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        publish: tuple[Role, ...] = ("camera", "mic"),
    ) -> None:
        """``publish``: what it publishes from the start (a supervisor: nothing, then
        its microphone while it speaks, :meth:`speak`)."""
        self.settings = settings
        self.local = local
        self.call_id = call_id
        self.clock = clock
        self.source = source if source is not None else open_source(settings, local)
        self._own_source = source is None
        self.relay = MediaRelay()
        self.events = Emitter()
        self.watchdog = FrameWatchdog(call_id, settings.offline_threshold)
        self.publisher = MediaPeer(
            settings,
            local=local,
            remote=SFU_NAME,
            offerer=True,
            call_id=call_id,
            relay=self.relay,
            watchdog=self.watchdog,
            send_only=True,
            encode_video_on_loop=True,  # one encoder for the camera: on the loop (D64)
            clock=clock,
        )
        self.publisher.events.subscribe(self.events.emit)
        if "camera" in publish:
            self.publisher.send(self.source.video, "camera")
        if "mic" in publish:
            self.publisher.send(self.source.audio, "mic")
        self.subscriptions: dict[Feed, MediaPeer] = {}
        self._screen: PatternVideoTrack | None = None
        self._closed = False
        self._watchdog_task = asyncio.ensure_future(
            run_watchdog(self.watchdog, self.events, settings.check_interval, clock)
        )

    def speak(self, on: bool) -> None:
        """Publish the microphone, or stop publishing it (a new offer either way)."""
        sending = track_label(self.local, "mic") in self.publisher.sending
        if on and not sending:
            self.publisher.send(self.source.audio, "mic")
        elif not on and sending:
            self.publisher.unsend(self.local, "mic")

    # ------------------------------------------------------------ signalling
    async def negotiate(self) -> dict[str, Any] | None:
        """The publisher's offer to send to the sfu, when one is due (after ``NegotiationNeeded``)."""
        if self._closed:
            return None
        return await self.publisher.negotiate()

    async def handle(self, message: object) -> dict[str, Any] | None:
        """A message from the sfu; returns the reply to send it, if any.

        A bad message raises :class:`~kefu.media.NegotiationError` and changes nothing."""
        if self._closed:
            raise NegotiationError("the call's media is closed", code=ErrorCode.invalid_state)
        if not isinstance(message, dict):
            raise NegotiationError("a signalling message is a JSON object", code=ErrorCode.bad_request)
        kind = message.get("type")
        if "feed" not in message:
            if kind != "answer":
                raise NegotiationError(
                    "from the sfu without a feed: only the publisher's answer", code=ErrorCode.bad_request
                )
            return await self.publisher.handle(message)
        try:
            feed = decode_feed(message["feed"])
        except ApiError as exc:
            raise NegotiationError(exc.msg, code=ErrorCode.bad_request) from None
        if kind == "leave":
            if set(message) != {"type", "feed"}:
                raise NegotiationError("leave: {type, feed}", code=ErrorCode.bad_request)
            await self.drop(feed)
            return None
        if kind != "offer":
            raise NegotiationError("from the sfu with a feed: offer or leave", code=ErrorCode.bad_request)
        if feed[1] == self.local:
            raise NegotiationError("an offer of this member's own feed", code=ErrorCode.bad_request)
        body = {k: v for k, v in message.items() if k != "feed"}
        peer = self.subscriptions.get(feed)
        made = peer is None
        if peer is None:
            peer = MediaPeer(
                self.settings,
                local=self.local,
                remote=feed[1],
                offerer=False,
                call_id=self.call_id,
                relay=self.relay,
                watchdog=self.watchdog,
                trust_labels=False,  # the feed's tracks are its member's
                dtls_server=self.settings.sfu_dtls_passive,  # Janus starts DTLS with the answer (D45)
                audio_on_demand=self.settings.sfu_audio_on_demand,  # nobody plays it (D49)
                video_on_demand=self.settings.sfu_video_on_demand,  # no window shows it (D55)
                estimate_bandwidth=self.settings.sfu_estimate_bandwidth,  # Janus ignores it (D56)
                clock=self.clock,
            )
            peer.events.subscribe(self._subscription_event)
        try:
            answer = await peer.handle(body)
        except BaseException:
            if made:
                await peer.close()
            raise
        if made:
            self.subscriptions[feed] = peer
        assert answer is not None
        return {**answer, "feed": feed_ref(*feed)}

    def _subscription_event(self, event: MediaEvent) -> None:
        if not isinstance(event, NegotiationNeeded):  # a subscription never sends
            self.events.emit(event)

    async def drop(self, feed: Feed) -> None:
        """Close the subscription to ``feed`` (its member left)."""
        peer = self.subscriptions.pop(feed, None)
        if peer is not None:
            self.watchdog.unwatch(feed[1])
            await peer.close()

    # ------------------------------------------------------------ frames
    def subscription(self, member: str) -> MediaPeer:
        peer = next((p for (_k, n), p in self.subscriptions.items() if n == member), None)
        if peer is None:
            raise NoFrameError(f"no media of {member} yet")
        return peer

    peer = subscription  # as MediaHub.peer: the window reads tiles the same way

    @property
    def members(self) -> tuple[str, ...]:
        """The members whose media this member receives."""
        return tuple(n for _k, n in self.subscriptions)

    def latest_frame(self, member: str, role: Role = "camera") -> VideoFrame:
        """The latest frame of ``member``'s ``role`` video; the local member's is the self view."""
        if member == self.local:
            frame = self.source.latest_frame if role == "camera" else None
            if frame is None:
                raise NoFrameError(f"no {role} frame of {member} yet")
            return frame
        return self.subscription(member).latest_frame(member, role)

    def latest_rgb(self, member: str, role: Role = "camera") -> RgbImage:
        return to_rgb(self.latest_frame(member, role))

    async def current_frame(self, member: str) -> VideoFrame:
        """``member``'s camera now: the latest decoded frame, or, when its video is decoded only
        on demand (D55), the next one (decoding turned on until it comes from a key frame)."""
        if member != self.local:
            peer = self.subscription(member)
            rec = peer.received_track(member, "camera")
            if rec is not None and rec.on_demand:
                frame = await peer.next_frame(member, "camera", within=self.settings.sfu_video_wake)
                assert isinstance(frame, VideoFrame)
                return frame
        return self.latest_frame(member)

    async def snapshot(self, member: str) -> Image:
        """snapshot (SPEC §4.4): a JPEG of ``member``'s latest received camera frame."""
        return await encode_jpeg_async(await self.current_frame(member), self.settings.jpeg_quality)

    async def take_photo(self) -> Image:
        return await self.source.capture_still()

    # ------------------------------------------------------------ screen share
    @property
    def sharing(self) -> bool:
        return self._screen is not None

    def start_share(self) -> None:
        """inviteShare accepted: publish a screen (a synthetic one from Python) as a second
        video track. Emits NegotiationNeeded (a new offer to the sfu)."""
        if self._closed:
            raise MediaError("the call's media is closed", code=ErrorCode.invalid_state)
        if self._screen is not None:
            raise MediaError("the screen is already shared")
        self._screen = self.source.screen_track()
        self.publisher.send(self._screen, "screen")

    def stop_share(self) -> None:
        """Close the screen share (the subscribers see the track go after renegotiation)."""
        if self._screen is None:
            return
        self.publisher.unsend(self.local, "screen")
        self._screen.stop()
        self._screen = None

    # ------------------------------------------------------------ life
    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close the publisher and every subscription (each bounded by ``close_timeout``)."""
        if self._closed:
            return
        self._closed = True
        if self._screen is not None:
            self._screen.stop()
            self._screen = None
        peers = [self.publisher, *self.subscriptions.values()]
        self.subscriptions.clear()
        await asyncio.gather(*(p.close() for p in peers))
        self._watchdog_task.cancel()
        await asyncio.gather(self._watchdog_task, return_exceptions=True)
        if self._own_source:
            self.source.stop()
