"""The media of one call in the plugin, by the agent's part in it (see :mod:`kefu.plugin.media`).

- :class:`RelayCall`: the primary agent in ``media: "hub"`` — its plugin relays,
  holding a :class:`~kefu.media.MediaHub` with a peer connection per member;
- :class:`MemberCall`: an invited third agent, answering the relay's offers;
- :class:`SfuCall`: any agent in ``media: "sfu"``, publishing to the media server.

Each does its work one job at a time on a task of its own (:class:`CallMediaBase`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from kefu.media import (
    Image,
    MediaError,
    MediaEvent,
    MediaHub,
    MediaMember,
    MediaPeer,
    MediaSettings,
    NegotiationNeeded,
    NoFrameError,
    Recorder,
    SfuMember,
    StreamOffline,
    StreamOnline,
    TrackAdded,
    TrackRemoved,
    open_source,
)
from kefu.media.frames import encode_jpeg_async
from kefu.media.tracks import Label, Role
from kefu.protocol import ApiError, ErrorCode, event_message
from kefu.protocol.mirror import CallView
from kefu.protocol.supervise import audience_of
from kefu.protocol.wire import Json

from .uploads import RecordingUpload, ServerApi

__all__ = ["CallMediaBase", "MediaHost", "MediaOwner", "MemberCall", "RelayCall", "SfuCall"]

log = logging.getLogger("kefu.plugin.media")

Job = Callable[[], Awaitable[None]]


class MediaHost(Protocol):
    """What the media part needs from the plugin."""

    def send_signal(self, call_id: str, kind: str, name: str, data: Json) -> Awaitable[None]: ...

    def broadcast(self, msg: Json) -> None: ...

    def share_changed(self, call_id: str, on: bool, why: str) -> None: ...

    def media_failed(self, call_id: str, kind: str, name: str, reason: str) -> Awaitable[None]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class MediaOwner(Protocol):
    """What a call's media needs of :class:`~kefu.plugin.media.PluginMedia`."""

    host: MediaHost
    settings: MediaSettings
    connect_timeout: float
    api: ServerApi

    def kind_of(self, call_id: str, name: str) -> str | None: ...

    def recording_path(self, call_id: str) -> Path: ...


class CallMediaBase:
    """One call's media: a queue of jobs run in order on a task of its own."""

    def __init__(self, owner: MediaOwner, call_id: str) -> None:
        self.owner = owner
        self.call_id = call_id
        self.closed = False
        self._jobs: asyncio.Queue[Job | None] = asyncio.Queue()
        self._task = owner.host.spawn(self._run())

    def do(self, job: Job) -> None:
        if not self.closed:
            self._jobs.put_nowait(job)

    async def settled(self) -> None:
        """Until the jobs queued so far are done (offers sent, members added or removed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def mark() -> None:
            done.set_result(None)

        if self.closed:
            await asyncio.shield(self._task)
            return
        self.do(mark)
        await done

    async def _run(self) -> None:
        while True:
            job = await self._jobs.get()
            if job is None:
                return
            try:
                await job()
            except ApiError as exc:  # MediaError, NegotiationError, an upstream error
                log.warning("call %s: media: %s %s", self.call_id, exc.code.value, exc.msg)
            except Exception:
                log.exception("call %s: media job failed", self.call_id)

    def close(self) -> asyncio.Task[Any]:
        """Close after the jobs queued so far; the task that does it."""
        if not self.closed:
            self.closed = True
            self._jobs.put_nowait(self._shutdown)
            self._jobs.put_nowait(None)
        return self._task

    async def _shutdown(self) -> None:
        raise NotImplementedError

    def _stream_event(self, event: StreamOffline | StreamOnline) -> None:
        name = "visitorStreamOffline" if isinstance(event, StreamOffline) else "visitorStreamOnline"
        payload = event.to_payload()
        payload["memberKind"] = self.owner.kind_of(self.call_id, event.member)
        self.owner.host.broadcast(event_message(name, payload))


class RelayCall(CallMediaBase):
    """The primary agent's media in one call (the hub)."""

    def __init__(self, owner: MediaOwner, call_id: str, me: str) -> None:
        super().__init__(owner, call_id)
        settings = owner.settings
        self.source = open_source(settings, me)
        self.hub = MediaHub(settings, call_id=call_id, local=me, source=self.source)
        self.hub.events.subscribe(self._on_event)
        self.kinds: dict[str, str] = {}  # member name → kind, as the hub addresses them
        self.recorder: Recorder | None = None
        self.upload: RecordingUpload | None = None
        self.started = time.monotonic()  # the call connected for this plugin
        self._record_due = False
        self._watch: dict[str, asyncio.Task[Any]] = {}  # member → its connection's watcher
        self._consulted: str | None = None  # the agent of a consult transfer (issue 20)
        #: the call came to this agent by a transfer (issue 20): this hub records the next part
        #: of the call's recording (the server numbers the parts by hub, D51; docs/calls.md)
        self.transferred_in = False

    # --- members

    def sync(self, view: CallView) -> None:
        """Peers for the joined members, none for those who left; a consult transfer's
        visitors on hold, kept apart from the consulted agent (issue 20, D32)."""
        t = view.transfer
        consulted = t.get("to") if t is not None and t.get("kind") == "consult" else None
        for _kind, visitor in view.joined("visitor"):
            if isinstance(consulted, str):
                self.hub.keep_apart(consulted, visitor, True)
            elif self._consulted is not None:
                self.hub.keep_apart(self._consulted, visitor, False)
            self.hub.hold(visitor, consulted is not None)
        self._consulted = consulted if isinstance(consulted, str) else None
        joined = {name: kind for kind, name in view.joined() if name != self.hub.local}
        # issue 20: a supervisor is a member of the hub; its audio reaches its mode's audience
        joined.update((name, "agent") for name in view.supervisors if name != self.hub.local)
        everyone = [n for _k, n in view.joined()]
        for name, mode in view.supervisors.items():
            heard = audience_of(mode, view.primary, everyone, view.supervisors)
            self.do(functools.partial(self._audience, name, heard))
        for name, kind in joined.items():
            if name not in self.kinds:
                self.kinds[name] = kind
                self.do(functools.partial(self._add, name))
        for name in [n for n in self.kinds if n not in joined]:
            del self.kinds[name]
            self.do(functools.partial(self._remove, name))

    async def _add(self, name: str) -> None:
        if name in self.hub.members or name not in self.kinds:
            return
        peer = self.hub.add_member(name)  # emits NegotiationNeeded: the offer goes out then
        self._watch[name] = self.owner.host.spawn(self._watch_connection(name, peer))

    async def _audience(self, name: str, heard: frozenset[str]) -> None:
        self.hub.set_audience(name, heard)

    async def _remove(self, name: str) -> None:
        watch = self._watch.pop(name, None)
        if watch is not None:
            watch.cancel()
        await self.hub.remove_member(name)

    async def _watch_connection(self, name: str, peer: MediaPeer) -> None:
        """Reliability F15: media that does not connect within the bound (or whose
        ICE fails) is reported to the server, which ends the member's part of the
        call with ``media_unreachable`` (never a silent call)."""
        timeout = self.owner.connect_timeout
        try:
            await peer.wait_connected(timeout)
        except MediaError as exc:
            if peer.closed or self.closed:
                return
            kind = self.kinds.get(name)
            if kind is None:
                return
            log.warning(
                "call %s: the media with %s %s did not connect: %s", self.call_id, kind, name, exc.msg
            )
            reason = (
                "ice failed"
                if exc.code is ErrorCode.media_unreachable
                else f"not connected within {timeout:g} s"
            )
            await self.owner.host.media_failed(self.call_id, kind, name, reason)
            return
        log.info("call %s: media with %s connected (%s)", self.call_id, name, _route(peer))

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self.do(lambda: self._negotiate(event.peer))
        elif isinstance(event, StreamOffline | StreamOnline):
            self._stream_event(event)
        elif isinstance(event, TrackAdded):
            if event.role == "screen":
                self.owner.host.share_changed(self.call_id, True, "track")
            elif self.owner.settings.record and not self._record_due and self.recorder is None:
                # the first member's camera and mic come in one exchange: record them both
                self._record_due = True
                self.do(self._start_recording)
        elif isinstance(event, TrackRemoved) and event.role == "screen":
            self.owner.host.share_changed(self.call_id, False, "track")

    async def _negotiate(self, name: str) -> None:
        kind = self.kinds.get(name)
        if kind is None or name not in self.hub.members:
            return
        message = await self.hub.peer(name).negotiate()
        if message is not None:
            await self.owner.host.send_signal(self.call_id, kind, name, message)

    async def handle(self, kind: str, name: str, data: object) -> None:
        if self.kinds.get(name) != kind or name not in self.hub.members:
            log.warning(
                "call %s: signalling from %s %s, not a member of the hub: dropped", self.call_id, kind, name
            )
            return
        reply = await self.hub.peer(name).handle(data)
        if reply is not None:
            await self.owner.host.send_signal(self.call_id, kind, name, reply)

    # --- snapshot, recording

    async def snapshot(self, member: str) -> Image:
        return await self.hub.snapshot(member)

    async def _start_recording(self) -> None:
        """Record the agent's camera and mic and the first member's (the tracks
        there are now: a member who joins later is not in the file).

        The file's time zero is when the call connected for this plugin (the
        hub was made), not when the first member's media arrived: the
        recording's timeline is the call's, and its duration the call's."""
        if self.recorder is not None or self.closed:
            return
        tracks: list[tuple[Label, Any]] = [
            (Label(self.hub.local, "camera"), self.source.video),
            (Label(self.hub.local, "mic"), self.source.audio),
        ]
        for name in self.hub.members:
            for rec in self.hub.peer(name).received:
                if rec.label.role in ("camera", "mic"):
                    tracks.append((rec.label, rec.track))
        path = self.owner.recording_path(self.call_id)
        self.upload = RecordingUpload(self.owner.api, self.call_id)
        started = self.started
        readings = 0

        def clock() -> float:
            nonlocal readings
            readings += 1  # the recorder's first reading is its time zero
            return started if readings == 1 else time.monotonic()

        try:
            self.recorder = Recorder(
                path,
                self.owner.settings,
                tracks,
                relay=self.hub.relay,
                clock=clock,
                on_chunk=self.upload.chunk,
            )
        except MediaError:
            await self.upload.abort()
            self.upload = None
            raise
        log.info("call %s: recording to %s", self.call_id, path)

    async def _shutdown(self) -> None:
        for watch in self._watch.values():
            watch.cancel()
        self._watch.clear()
        recorder, upload = self.recorder, self.upload
        result = None
        if recorder is not None:
            try:
                result = await recorder.stop()
            except MediaError as exc:
                log.warning("call %s: the recording failed: %s", self.call_id, exc.msg)
        try:
            await self.hub.close()
        except Exception:  # the upload below must still finish
            log.exception("call %s: closing the media failed", self.call_id)
        self.source.stop()
        if upload is not None:
            stored = await upload.finish(result.size if result is not None else None)
            if stored is not None and result is not None and stored.get("sha256") == result.sha256:
                log.info("call %s: recording stored on the server (%d bytes)", self.call_id, result.size)
                result.path.unlink(missing_ok=True)  # the server has it: keep no copy here
            elif result is not None:
                log.warning(
                    "call %s: the server's copy of the recording is not complete; kept at %s",
                    self.call_id,
                    result.path,
                )


class MemberCall(CallMediaBase):
    """An invited agent's media in a call led by another agent's hub."""

    def __init__(self, owner: MediaOwner, call_id: str, me: str, primary: str) -> None:
        super().__init__(owner, call_id)
        self.me = me
        self.primary = primary
        self.member: MediaMember | None = None
        self._has_member = asyncio.Event()
        self._watch: asyncio.Task[Any] | None = None

    async def _watch_connection(self, peer: MediaPeer) -> None:
        """An invited agent's own media to the hub: reported like the hub's (F15)."""
        timeout = self.owner.connect_timeout
        try:
            await peer.wait_connected(timeout)
        except MediaError as exc:
            if peer.closed or self.closed:
                return
            log.warning("call %s: the media with the hub did not connect: %s", self.call_id, exc.msg)
            await self.owner.host.media_failed(self.call_id, "agent", self.me, exc.msg)

    async def wait_member(self) -> MediaMember:
        """The media member, once the hub's first offer made it."""
        await self._has_member.wait()
        assert self.member is not None
        return self.member

    async def handle(self, kind: str, name: str, data: object) -> None:
        if kind != "agent" or name != self.primary:
            log.warning("call %s: signalling from %s %s, not the hub: dropped", self.call_id, kind, name)
            return
        if self.member is None:
            self.member = MediaMember(
                self.owner.settings, local=self.me, hub=self.primary, call_id=self.call_id
            )
            self.member.events.subscribe(self._on_event)
            self._has_member.set()
            self._watch = self.owner.host.spawn(self._watch_connection(self.member.peer))
        reply = await self.member.handle(data)
        if reply is not None:
            await self.owner.host.send_signal(self.call_id, "agent", self.primary, reply)

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self.do(self._negotiate)
        elif isinstance(event, StreamOffline | StreamOnline):
            self._stream_event(event)

    async def _negotiate(self) -> None:
        if self.member is None:
            return
        message = await self.member.negotiate()
        if message is not None:
            await self.owner.host.send_signal(self.call_id, "agent", self.primary, message)

    async def snapshot(self, member: str) -> Image:
        if self.member is None:
            raise NoFrameError(f"no video from {member} yet")
        return await encode_jpeg_async(self.member.latest_frame(member), self.owner.settings.jpeg_quality)

    async def _shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.member is not None:
            await self.member.close()


def _route(peer: MediaPeer) -> str:
    route = peer.route()
    return "through the relay" if route is not None and "relay" in route else f"route {route}"


class SfuCall(CallMediaBase):
    """An agent's media in a call through the media server (SFU mode)."""

    def __init__(
        self,
        owner: MediaOwner,
        call_id: str,
        me: str,
        *,
        primary: bool,
        publish: tuple[Role, ...] = ("camera", "mic"),
    ) -> None:
        super().__init__(owner, call_id)
        self.primary = primary
        self.member = SfuMember(owner.settings, local=me, call_id=call_id, publish=publish)
        self.member.events.subscribe(self._on_event)

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self.do(self._negotiate)
        elif isinstance(event, StreamOffline | StreamOnline):
            self._stream_event(event)
        elif isinstance(event, TrackAdded | TrackRemoved) and event.role == "screen" and self.primary:
            self.owner.host.share_changed(self.call_id, isinstance(event, TrackAdded), "track")

    async def _negotiate(self) -> None:
        message = await self.member.negotiate()
        if message is not None:
            await self.owner.host.send_signal(self.call_id, "sfu", "sfu", message)

    async def speak(self, on: bool) -> None:
        """A supervisor's microphone published (whisper, barge) or not (monitor)."""
        self.member.speak(on)

    async def handle(self, kind: str, name: str, data: object) -> None:
        if kind != "sfu":
            log.warning("call %s: signalling from %s %s in the SFU mode: dropped", self.call_id, kind, name)
            return
        reply = await self.member.handle(data)
        if reply is not None:
            await self.owner.host.send_signal(self.call_id, "sfu", "sfu", reply)

    async def snapshot(self, member: str) -> Image:
        return await self.member.snapshot(member)

    async def _shutdown(self) -> None:
        await self.member.close()
