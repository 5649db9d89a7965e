"""One WebRTC peer connection between a local member and one remote member.

Theory of operation
-------------------
A :class:`MediaPeer` wraps an aiortc ``RTCPeerConnection``. It sends tracks
(:meth:`send` / :meth:`unsend`), receives the remote member's tracks, knows
whose each incoming track is from its label (:func:`~kefu.media.tracks.track_label`),
keeps the latest decoded frame of each (read through :class:`~kefu.media.peer_frames.ReceivedFrames`), feeds the frame watchdog, and counts
audio.

**Signalling** is a few opaque JSON objects that the caller carries to the
other side (the server relays them untouched)::

    {"type": "offer", "sdp": "..."}          the offerer's description
    {"type": "answer", "sdp": "..."}         the answer to it
    {"type": "renegotiate", "send": {"video": 1, "audio": 0}}
                                             the answerer asks for an offer with
                                             room for new tracks it wants to send
    {"type": "candidate", "candidate": "candidate:...", "sdpMid": "0",
     "sdpMLineIndex": 0}                     a trickled ICE candidate (browsers)

The driver is two calls: when the peer emits :class:`NegotiationNeeded`,
call :meth:`negotiate` and send what it returns; for every message received,
call :meth:`handle` and send what it returns (if anything). aiortc gathers
all candidates before it returns a description, so the candidates travel
inside the SDP; ``candidate`` messages are only needed from browsers.

**One offerer.** aiortc has no rollback, so two aiortc peers that offer at
the same time (glare) would both be stuck. So one side is the offerer (the
hub: the agent's plugin) and makes every offer; the other side never offers:
it asks with ``renegotiate`` and binds its new tracks to the free slots
(m-lines the offerer can receive on) of the next offer. A browser, which can
roll back, may still send offers: they are accepted when the connection is
stable, and refused (:class:`NegotiationError`) during our own offer, which
makes the hub the "impolite" side of WebRTC's perfect negotiation.

aiortc ends a sender's loop when its track ends, so a transceiver that has
sent once is never given a new track: a new track gets a new m-line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from av import AudioFrame
from av.frame import Frame

from kefu.protocol.errors import ErrorCode

from . import audio_level, opus
from .decoding import decode_on_demand
from .encoding import encode_on_loop
from .errors import NegotiationError
from .events import Emitter, NegotiationNeeded, TrackAdded, TrackRemoved
from .ice import host_addresses, rtc_configuration
from .peer_frames import ReceivedFrames
from .peer_state import (
    FrameListener,
    PeerStats,
    ReceivedTrack,
    SentTrack,
    bind_pending,
    label_of_track,
    read_stats,
    selected_route,
)
from .settings import MediaSettings
from .signal_checks import ABS_SEND_TIME, decode_signal, parse_candidate, parse_sdp, without_extension
from .ssrc import route_ssrcs
from .tracks import KIND_OF_ROLE, Label, LabelledTrack, Role, track_label
from .watchdog import FrameWatchdog, run_watchdog

__all__ = ["MediaPeer", "PeerStats", "ReceivedTrack", "run_watchdog"]

log = logging.getLogger(__name__)


class MediaPeer(ReceivedFrames):
    """A peer connection from ``local`` to ``remote`` (see the module's docstring)."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        local: str,
        remote: str,
        offerer: bool,
        call_id: str = "",
        relay: MediaRelay | None = None,
        watchdog: FrameWatchdog | None = None,
        trust_labels: bool = True,
        send_only: bool = False,
        dtls_server: bool = False,
        audio_on_demand: bool = False,
        video_on_demand: bool = False,
        estimate_bandwidth: bool = True,
        encode_video_on_loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.local = local
        self.remote = remote
        self.offerer = offerer
        self.call_id = call_id
        self.relay = relay if relay is not None else MediaRelay()
        self.events = Emitter()
        self.clock = clock
        self._trust_labels = trust_labels
        self._send_only = send_only  # a publisher to the media server receives nothing
        # answer a=setup:passive: the offerer (Janus) starts DTLS once it has our answer (D45)
        self._dtls_server = dtls_server
        self._audio_on_demand = audio_on_demand
        self._video_on_demand = video_on_demand
        # False: offers are answered without abs-send-time, so no REMB is computed per packet (D56)
        self._estimate_bandwidth = estimate_bandwidth
        # the kinds whose frames are encoded on the loop: audio, and video where one encoder
        # serves the camera (the SFU's publisher; a hub encodes it once per member: threads) (D64)
        wanted = {"audio", "video"} if encode_video_on_loop else {"audio"}
        self._encode_on_loop = wanted & set(settings.encode_on_loop)
        audio_level.install()  # the level of each sent audio frame, in C (D57)
        opus.install()  # the microphone in mono Opus, as browsers send it (D63)
        config = rtc_configuration(settings)
        config.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        self.pc = RTCPeerConnection(config)
        self._lock = asyncio.Lock()
        self._sent: list[SentTrack] = []
        self._burnt: set[RTCRtpTransceiver] = set()  # sent once: never reused
        self._received: dict[str, ReceivedTrack] = {}  # by mid
        self._waiters: dict[tuple[str, str], list[asyncio.Future[Frame]]] = {}
        self._listeners: list[FrameListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty = False  # local changes the other side has not seen
        self._outstanding = False  # answerer: a renegotiate request not yet served
        self._seen_offer = False
        self._emit_scheduled = False
        self._closed = False
        self._connected = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._own_watchdog = watchdog is None
        self.watchdog = (
            watchdog if watchdog is not None else FrameWatchdog(call_id, settings.offline_threshold)
        )
        self.pc.on("connectionstatechange", self._on_connection_state)
        if self._own_watchdog:
            self._spawn(run_watchdog(self.watchdog, self.events, settings.check_interval, clock))

    # ------------------------------------------------------------ sending
    def send(self, track: MediaStreamTrack, role: Role, *, member: str | None = None) -> str:
        """Send ``track`` (``member``'s ``role``; ``member`` defaults to the local
        member) to the remote member. Returns its label."""
        self._assert_open()
        who = member if member is not None else self.local
        if KIND_OF_ROLE[role] != track.kind:
            raise ValueError(f"a {role} track must be {KIND_OF_ROLE[role]}, not {track.kind}")
        label = track_label(who, role)
        if any(s.label == label for s in self._sent):
            raise ValueError(f"{label} is already sent to {self.remote}")
        proxy = self.relay.subscribe(track, buffered=track.kind == "audio")
        both = who == self.local and not self._send_only
        sent = SentTrack(label, LabelledTrack(proxy, label), "sendrecv" if both else "sendonly")
        if self.offerer:
            sent.transceiver = self.pc.addTransceiver(sent.track, direction=sent.direction)
        self._sent.append(sent)
        self._encode_sent_on_loop()
        self._changed()
        return label

    def unsend(self, member: str, role: Role) -> bool:
        """Stop sending ``member``'s ``role`` track. Returns whether it was sent."""
        label = track_label(member, role)
        sent = next((s for s in self._sent if s.label == label), None)
        if sent is None:
            return False
        self._sent.remove(sent)
        t = sent.transceiver
        if t is not None:
            t.sender.replaceTrack(None)
            t.direction = "recvonly" if t.direction in ("sendrecv", "recvonly") else "inactive"
            self._burnt.add(t)
        sent.track.stop()
        self._changed()
        return True

    def _encode_sent_on_loop(self) -> None:
        """Our senders of the kinds chosen at the start encode on the loop, not in a thread (D64)."""
        for s in self._sent:
            if s.transceiver is not None and s.track.kind in self._encode_on_loop:
                encode_on_loop(s.transceiver.sender)

    @property
    def sending(self) -> tuple[str, ...]:
        """Labels of the tracks sent (or waiting for a slot)."""
        return tuple(s.label for s in self._sent)

    # ------------------------------------------------------------ signalling
    async def negotiate(self) -> dict[str, Any] | None:
        """Now: an offer (offerer), a ``renegotiate`` request (answerer), or ``None``."""
        self._assert_open()
        async with self._lock:
            if not self._dirty:
                return None
            if self.offerer:
                if self.pc.signalingState != "stable":
                    return None  # offered again once the answer is in
                self._dirty = False
                return await self._offer()
            if self._outstanding:
                return None
            counts = {"video": 0, "audio": 0}
            for s in self._sent:
                if s.transceiver is None:
                    counts[s.track.kind] += 1
            self._dirty = False
            self._outstanding = True
            return {"type": "renegotiate", "send": counts}

    async def handle(self, message: object) -> dict[str, Any] | None:
        """Apply a signalling message from the other side; returns the reply to
        send back, if any. A bad message raises :class:`NegotiationError` and
        changes nothing."""
        self._assert_open()
        kind, body = decode_signal(message)
        if kind == "offer":
            return await self._accept_offer(body["sdp"])
        if kind == "answer":
            await self._accept_answer(body["sdp"])
            return None
        if kind == "renegotiate":
            return await self._renegotiate(body["send"])
        await self._add_candidate(body)
        return None

    async def _offer(self) -> dict[str, Any]:
        offer = await self.pc.createOffer()
        with host_addresses(self.settings.host_addresses):
            await self.pc.setLocalDescription(offer)
        return {"type": "offer", "sdp": self.pc.localDescription.sdp}

    async def _accept_offer(self, sdp: str) -> dict[str, Any]:
        async with self._lock:
            if self.pc.signalingState != "stable":
                raise NegotiationError(
                    f"an offer from {self.remote} while our own offer is out (glare); it is ignored",
                    code=ErrorCode.invalid_state,
                )
            description = parse_sdp(sdp)
            if not self._estimate_bandwidth:
                sdp = without_extension(sdp, ABS_SEND_TIME)
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            except Exception as exc:
                raise NegotiationError(f"offer refused: {exc}", code=ErrorCode.bad_request) from exc
            self._seen_offer = True
            self._outstanding = False
            bind_pending(self.pc, self._sent, self._burnt, description)
            self._encode_sent_on_loop()
            answer = await self.pc.createAnswer()
            if self._dtls_server:
                answer = RTCSessionDescription(
                    answer.sdp.replace("a=setup:active", "a=setup:passive"), "answer"
                )
            with host_addresses(self.settings.host_addresses):
                await self.pc.setLocalDescription(answer)
            self._reconcile()
            if any(s.transceiver is None for s in self._sent):
                self._dirty = True
            self._schedule_emit()
            return {"type": "answer", "sdp": self.pc.localDescription.sdp}

    async def _accept_answer(self, sdp: str) -> None:
        async with self._lock:
            if self.pc.signalingState != "have-local-offer":
                raise NegotiationError(
                    f"an answer from {self.remote} but no offer is out", code=ErrorCode.invalid_state
                )
            parse_sdp(sdp)
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
            except Exception as exc:
                raise NegotiationError(f"answer refused: {exc}", code=ErrorCode.bad_request) from exc
            self._reconcile()
            self._schedule_emit()

    async def _renegotiate(self, send: dict[str, int]) -> dict[str, Any] | None:
        if not self.offerer:
            raise NegotiationError("renegotiate goes to the offerer", code=ErrorCode.invalid_state)
        for kind, count in send.items():
            for _ in range(count):
                self.pc.addTransceiver(kind, direction="recvonly")
        self._dirty = True
        if self.pc.signalingState == "stable":
            return await self.negotiate()
        return None

    async def _add_candidate(self, body: dict[str, Any]) -> None:
        await self.pc.addIceCandidate(parse_candidate(body))  # None: the end of candidates

    def _changed(self) -> None:
        self._dirty = True
        self._schedule_emit()

    def _schedule_emit(self) -> None:
        if not self._emit_scheduled and not self._closed:
            self._emit_scheduled = True
            asyncio.get_running_loop().call_soon(self._maybe_emit)

    def _maybe_emit(self) -> None:
        self._emit_scheduled = False
        if self._closed or not self._dirty:
            return
        if self.offerer and self.pc.signalingState == "stable":
            self.events.emit(NegotiationNeeded(self.remote))
        elif not self.offerer and self._seen_offer and not self._outstanding:
            self.events.emit(NegotiationNeeded(self.remote))

    # ------------------------------------------------------------ receiving
    def _reconcile(self) -> None:
        """After an exchange: start reading tracks the remote now sends, stop
        reading those it stopped."""
        remote = self.pc.remoteDescription
        if remote is None:
            return
        description = SessionDescription.parse(remote.sdp)
        ids = {m.rtp.muxId: description.webrtc_track_id(m) for m in description.media}
        by_mid = {m.rtp.muxId: m for m in description.media}
        for t in self.pc.getTransceivers():
            if t.mid is None:
                continue
            receiving = t.currentDirection in ("recvonly", "sendrecv") and t.receiver.track is not None
            if receiving and t.mid in by_mid:
                route_ssrcs(t, by_mid[t.mid])  # an m-line used again (kefu.media.ssrc)
            current = self._received.get(t.mid)
            label = (
                label_of_track(ids.get(t.mid), t.kind, t.mid, self.remote, self._trust_labels, self._received)
                if receiving
                else None
            )
            if current is not None and (not receiving or current.label != label):
                self._stop_received(current)
            if receiving and label is not None and (current is None or current.label != label):
                self._start_received(label, t.mid, t.receiver.track)

    def _start_received(self, label: Label, mid: str, track: MediaStreamTrack) -> None:
        rec = ReceivedTrack(label, mid, track)
        rec.proxy = self.relay.subscribe(track, buffered=track.kind == "audio")
        self._received[mid] = rec
        if label.role == "camera":
            self.watchdog.watch(label.member)
        rec.task = self._spawn(self._consume(rec))
        key = (label.member, label.role)
        if self._audio_on_demand and track.kind == "audio":  # decoded when asked for (D49)
            decode_on_demand(self.pc, mid, lambda: bool(self._listeners or self._waiters.get(key)))
        elif self._video_on_demand and track.kind == "video":  # the same, from a key frame (D55)
            rec.on_demand = decode_on_demand(
                self.pc,
                mid,
                lambda: bool(self._listeners or self._waiters.get(key)),
                skipped=lambda: self._video_arrived(rec, self.clock()),
                key_frames=True,
            )
        self.events.emit(TrackAdded(self.remote, label.member, label.role, track.kind))

    def _stop_received(self, rec: ReceivedTrack) -> None:
        self._received.pop(rec.mid, None)
        if rec.task is not None:
            rec.task.cancel()
        if rec.proxy is not None:
            rec.proxy.stop()
        if rec.label.role == "camera" and not any(r.label == rec.label for r in self._received.values()):
            self.watchdog.unwatch(rec.label.member)
        self.events.emit(TrackRemoved(self.remote, rec.label.member, rec.label.role, rec.track.kind))

    async def _consume(self, rec: ReceivedTrack) -> None:
        assert rec.proxy is not None
        while True:
            try:
                frame = await rec.proxy.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, Frame)
            now = self.clock()
            rec.frames += 1
            rec.latest = frame
            rec.last_time = now
            if isinstance(frame, AudioFrame):
                rec.samples += frame.samples
            else:
                self._video_arrived(rec, now)
            waiters = self._waiters.pop((rec.label.member, rec.label.role), None)
            if waiters is not None:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(frame)
            for listener in list(self._listeners):
                try:
                    listener(rec.label, frame, now)
                except Exception:
                    log.exception("frame listener failed")

    def _video_arrived(self, rec: ReceivedTrack, now: float) -> None:
        """A frame of ``rec``'s video arrived (decoded, or counted undecoded: D55)."""
        rec.last_time = now
        rec.arrived += 1
        if rec.label.role == "camera" and self._received.get(rec.mid) is rec:
            online = self.watchdog.frame(rec.label.member, now)
            if online is not None:
                self.events.emit(online)

    # ------------------------------------------------------------ state
    async def stats(self) -> PeerStats:
        return await read_stats(self.pc)

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    async def wait_connected(self, within: float = 10.0) -> None:
        """Until the media is connected. Raises :class:`NegotiationError`:
        ``media_unreachable`` when ICE failed (no candidate pair works) or
        ``timeout`` when not connected within ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not self._connected.is_set():
                    if self.pc.connectionState == "failed":
                        raise NegotiationError(
                            f"no network path to {self.remote}: ICE failed", code=ErrorCode.media_unreachable
                        )
                    await self._state_changed.wait()
        except TimeoutError:
            raise NegotiationError(
                f"no connection to {self.remote} within {within} s (state {self.connection_state})",
                code=ErrorCode.timeout,
            ) from None

    def route(self) -> tuple[str, str] | None:
        """The candidate types (``host``, ``srflx``, ``relay``) of the pair the
        media flows on, local then remote; ``None`` before ICE chose one."""
        return selected_route(self.pc)

    def _on_connection_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close the connection (bounded by ``close_timeout``: a crashed peer can hang it)."""
        if self._closed:
            return
        self._closed = True
        for rec in list(self._received.values()):
            self._stop_received(rec)
        for sent in self._sent:
            sent.track.stop()
        self._sent.clear()
        for task in list(self._tasks):
            task.cancel()
        for waiters in self._waiters.values():
            for fut in waiters:
                fut.cancel()
        try:
            await asyncio.wait_for(self.pc.close(), self.settings.close_timeout)
        except TimeoutError:
            log.warning(
                "closing the connection to %s took over %s s; left behind",
                self.remote,
                self.settings.close_timeout,
            )
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _assert_open(self) -> None:
        if self._closed:
            raise NegotiationError(f"the connection to {self.remote} is closed", code=ErrorCode.invalid_state)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
