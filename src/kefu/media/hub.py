"""The primary agent's media in one call: the hub (DESIGN §6, embedded default).

The hub holds one :class:`~kefu.media.peer.MediaPeer` per remote member and
is the offerer on each. It sends the agent's camera and microphone to every
member and forwards each member's tracks (camera, microphone, screen) to
the others through one :class:`~aiortc.contrib.media.MediaRelay`: the relay
reads each incoming track once and hands its frames to every consumer, and
each forwarded stream costs one more encode. Frames of the relay are
``yuv420p`` (decoded VP8, or converted once at our sources).

All members' camera video feeds one frame watchdog (``visitorStreamOffline``),
and the hub can record the call (:meth:`start_recording`).

A member may have an **audience** (:meth:`set_audience`, a supervisor in the
call: :mod:`kefu.protocol.supervise`): its tracks go only to the members
named, the agent itself always receives them. The others' tracks go to
everyone, the member with an audience too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc.contrib.media import MediaRelay
from av import VideoFrame

from .errors import MediaError, NoFrameError
from .events import Emitter, MediaEvent, TrackAdded, TrackRemoved
from .frames import Image, RgbImage, encode_jpeg_async, to_rgb
from .peer import MediaPeer, run_watchdog
from .recorder import ChunkListener, Recorder
from .settings import MediaSettings
from .source import MediaSource
from .tracks import ROLES, Label, Role, track_label
from .watchdog import FrameWatchdog

__all__ = ["MediaHub"]

log = logging.getLogger(__name__)


class MediaHub:
    """One call's media on the primary agent's side."""

    def __init__(
        self,
        settings: MediaSettings,
        *,
        call_id: str,
        local: str,
        source: MediaSource | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.call_id = call_id
        self.local = local
        self.source = source
        self.clock = clock
        self.relay = MediaRelay()
        self.events = Emitter()
        self.watchdog = FrameWatchdog(call_id, settings.offline_threshold)
        self._peers: dict[str, MediaPeer] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._audience: dict[str, frozenset[str]] = {}  # member → who receives its tracks
        self._recorders: list[Recorder] = []
        self._apart: set[frozenset[str]] = set()  # pairs of members whose media is not forwarded
        self._held: set[str] = set()  # members on hold: sent nothing (issue 20)
        self._closed = False
        self._watchdog_task = asyncio.ensure_future(
            run_watchdog(self.watchdog, self.events, settings.check_interval, clock)
        )

    # ------------------------------------------------------------ members
    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def peer(self, member: str) -> MediaPeer:
        try:
            return self._peers[member]
        except KeyError:
            raise MediaError(f"{member} is not in call {self.call_id}") from None

    def keep_apart(self, a: str, b: str, on: bool = True) -> None:
        """Forward nothing between members ``a`` and ``b`` (a consult transfer, issue 20: the
        consulted agent and the visitor on hold), or again (``on=False``). It applies to what
        is forwarded from then on: set it before either joins the hub."""
        if on:
            self._apart.add(frozenset((a, b)))
        else:
            self._apart.discard(frozenset((a, b)))

    def hold(self, member: str, on: bool) -> None:
        """Put ``member`` on hold (or take it off): nothing is sent to it, its connection
        stays (issue 20); a member added later on hold starts so."""
        if on:
            self._held.add(member)
        else:
            self._held.discard(member)
        peer = self._peers.get(member)
        if peer is not None:
            _hold(peer, on)

    def is_held(self, member: str) -> bool:
        return member in self._held

    def add_member(self, member: str) -> MediaPeer:
        """A peer connection to ``member``, sending the agent's media and every
        other member's. It emits NegotiationNeeded: send ``negotiate()``'s offer."""
        if self._closed:
            raise MediaError(f"call {self.call_id} is closed")
        if member in self._peers or member == self.local:
            raise MediaError(f"{member} is already in call {self.call_id}")
        peer = MediaPeer(
            self.settings,
            local=self.local,
            remote=member,
            offerer=True,
            call_id=self.call_id,
            relay=self.relay,
            watchdog=self.watchdog,
            trust_labels=False,  # a member speaks for itself only
            clock=self.clock,
        )
        self._peers[member] = peer
        self._unsubscribe[member] = peer.events.subscribe(lambda e: self._on_peer_event(peer, e))
        if self.source is not None:
            peer.send(self.source.video, "camera")
            peer.send(self.source.audio, "mic")
        for other in self._peers.values():
            if other is not peer:
                for rec in other.received:
                    if self._reaches(rec.label.member, member):
                        peer.send(rec.track, rec.label.role, member=rec.label.member)
        _hold(peer, member in self._held)
        return peer

    def _reaches(self, owner: str, member: str) -> bool:
        """Whether ``owner``'s tracks go to ``member``: its audience (a supervisor's, D35),
        and not a pair kept apart (a consult transfer, D32)."""
        audience = self._audience.get(owner)
        apart = frozenset((owner, member)) in self._apart
        return owner != member and not apart and (audience is None or member in audience)

    def set_audience(self, owner: str, audience: frozenset[str] | None) -> None:
        """Forward ``owner``'s tracks only to ``audience`` (``None``: to every member)
        from now on: the members no longer in it stop receiving them, those new in it
        start (each change a renegotiation of that member's connection)."""
        if audience is None:
            self._audience.pop(owner, None)
        else:
            self._audience[owner] = audience
        source = self._peers.get(owner)
        tracks = source.received if source is not None else ()
        for other in self._peers.values():
            if other is source:
                continue
            sending = set(other.sending)
            for rec in tracks:
                if rec.label.member != owner:
                    continue
                label = track_label(owner, rec.label.role)
                if self._reaches(owner, other.remote) and label not in sending:
                    other.send(rec.track, rec.label.role, member=owner)
                elif not self._reaches(owner, other.remote) and label in sending:
                    other.unsend(owner, rec.label.role)
            _hold(other, other.remote in self._held)

    async def remove_member(self, member: str) -> None:
        """Close ``member``'s connection and stop forwarding its tracks."""
        peer = self._peers.pop(member, None)
        if peer is None:
            return
        self._unsubscribe.pop(member)()
        self._audience.pop(member, None)
        for other in self._peers.values():
            for role in ROLES:
                other.unsend(member, role)
        self.watchdog.unwatch(member)
        await peer.close()

    def _on_peer_event(self, peer: MediaPeer, event: MediaEvent) -> None:
        if isinstance(event, TrackAdded):
            rec = peer.received_track(event.member, event.role)  # type: ignore[arg-type]
            if rec is not None:
                for other in self._peers.values():
                    if other is not peer and self._reaches(rec.label.member, other.remote):
                        other.unsend(rec.label.member, rec.label.role)  # a re-labelled track replaces
                        other.send(rec.track, rec.label.role, member=rec.label.member)
                        _hold(other, other.remote in self._held)
        elif isinstance(event, TrackRemoved):
            for other in self._peers.values():
                if other is not peer:
                    other.unsend(event.member, event.role)  # type: ignore[arg-type]
        self.events.emit(event)

    # ------------------------------------------------------------ frames
    def latest_frame(self, member: str, role: Role = "camera") -> VideoFrame:
        """The latest frame of ``member``'s ``role`` video; the local member's is the self view."""
        if member == self.local:
            frame = self.source.latest_frame if self.source is not None and role == "camera" else None
            if frame is None:
                raise NoFrameError(f"no {role} frame of {member} yet")
            return frame
        return self.peer(member).latest_frame(member, role)

    def latest_rgb(self, member: str, role: Role = "camera") -> RgbImage:
        return to_rgb(self.latest_frame(member, role))

    async def snapshot(self, member: str) -> Image:
        """snapshot (SPEC §4.4): a JPEG of ``member``'s latest received camera frame."""
        return await encode_jpeg_async(self.latest_frame(member), self.settings.jpeg_quality)

    # ------------------------------------------------------------ recording
    def start_recording(self, path: Path, *, on_chunk: ChunkListener | None = None) -> Recorder:
        """Record the call, both directions (the agent's camera and microphone and
        every member's), to WebM at ``path``. The tracks are those present now."""
        tracks: list[tuple[Label, Any]] = []
        if self.source is not None:
            tracks += [
                (Label(self.local, "camera"), self.source.video),
                (Label(self.local, "mic"), self.source.audio),
            ]
        for peer in self._peers.values():
            for rec in peer.received:
                if rec.label.role in ("camera", "mic"):
                    tracks.append((rec.label, rec.track))
        recorder = Recorder(
            path, self.settings, tracks, relay=self.relay, clock=self.clock, on_chunk=on_chunk
        )
        self._recorders.append(recorder)
        return recorder

    # ------------------------------------------------------------ life
    async def close(self) -> None:
        """Stop recordings and close every connection (each bounded by ``close_timeout``)."""
        if self._closed:
            return
        self._closed = True
        for recorder in self._recorders:
            if not recorder.stopped:
                try:
                    await recorder.stop()
                except MediaError:
                    log.exception("recording of call %s failed", self.call_id)
        for unsubscribe in self._unsubscribe.values():
            unsubscribe()
        peers = list(self._peers.values())
        self._peers.clear()
        await asyncio.gather(*(p.close() for p in peers))
        self._watchdog_task.cancel()
        await asyncio.gather(self._watchdog_task, return_exceptions=True)


def _hold(peer: MediaPeer, on: bool) -> None:
    """Every track ``peer`` sends reads its source and drops the frames while ``on`` (issue 20,
    D32): no renegotiation. Applied again after each track the hub sends it."""
    for sent in peer._sent:  # MediaPeer.hold, once peer.py has room under the line limit
        sent.track.held = on
