"""The agent's media in its calls: WebRTC with :mod:`kefu.media` (DESIGN §6).

Theory of operation
-------------------
The plugin follows the server's ``event``/``call`` pushes (docs/calls.md):

- as the call's **primary agent** it is the hub (:class:`HubCall`, a
  :class:`~kefu.media.MediaHub`): for every other member that is ``joined``
  it makes a peer connection and offers (``signal`` upstream to ``{kind,
  name}``); it closes the peer of a member who left, and everything when the
  call ends. The hub forwards each member's audio and video to the others,
  watches every member's camera (``visitorStreamOffline``) and records the
  call, uploading the recording in chunks as it is made;
- as an **invited third agent** it is a member (:class:`MemberCall`, a
  :class:`~kefu.media.MediaMember`) that answers the hub's offers;
- in the **SFU mode** (the call's ``media`` is ``"sfu"``, docs/media.md §4b)
  every agent of the call, primary or not, is an :class:`SfuCall` (a
  :class:`~kefu.media.SfuMember`): it publishes its camera and microphone
  once to the media server (``signal`` to ``{kind: "sfu", name: "sfu"}``)
  and answers the server's offer of each other member's feed; snapshots and
  the window's tiles come from those subscriptions. The call is not recorded
  by the plugin in this mode.

The server's ``signal`` pushes go to the call's object. Each call does its
work (offers, answers, closing) in order, one job at a time, on a task of
its own, so a slow negotiation never holds the plugin's other work. A
failure of one call's media is logged (and the SDKs hear nothing but what
the media could not do); the call's signalling goes on regardless.

Media events reach the SDKs as ``initInnerCallBack`` pushes:
``visitorStreamOffline`` (SPEC §2, v1216: no frame of a member's camera for
more than the threshold, once per outage) and ``visitorStreamOnline`` (an
addition: the frames are back).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from kefu.media import (
    IceServer,
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
from kefu.paths import open_private, private_dir
from kefu.protocol import ApiError, ErrorCode, event_message
from kefu.protocol.mirror import CallView
from kefu.protocol.supervise import audience_of
from kefu.protocol.wire import Json

from .uploads import RecordingUpload, ServerApi

__all__ = ["CallMediaBase", "HubCall", "MediaHost", "MemberCall", "PluginMedia", "SfuCall"]

log = logging.getLogger("kefu.plugin.media")

Job = Callable[[], Awaitable[None]]


class MediaHost(Protocol):
    """What the media part needs from the plugin."""

    def send_signal(self, call_id: str, kind: str, name: str, data: Json) -> Awaitable[None]: ...

    def broadcast(self, msg: Json) -> None: ...

    def share_changed(self, call_id: str, on: bool, why: str) -> None: ...

    def media_failed(self, call_id: str, kind: str, name: str, reason: str) -> Awaitable[None]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class CallMediaBase:
    """One call's media: a queue of jobs run in order on a task of its own."""

    def __init__(self, owner: PluginMedia, call_id: str) -> None:
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

    async def handle(self, kind: str, name: str, data: object) -> None:
        """A ``signal`` push from ``kind`` ``name`` for this call's media."""
        raise NotImplementedError

    async def snapshot(self, member: str) -> Image:
        raise NotImplementedError

    def _stream_event(self, event: StreamOffline | StreamOnline) -> None:
        name = "visitorStreamOffline" if isinstance(event, StreamOffline) else "visitorStreamOnline"
        payload = event.to_payload()
        payload["memberKind"] = self.owner.kind_of(self.call_id, event.member)
        self.owner.host.broadcast(event_message(name, payload))


class HubCall(CallMediaBase):
    """The primary agent's media in one call (the hub)."""

    def __init__(self, owner: PluginMedia, call_id: str, me: str) -> None:
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

    # --- members

    def sync(self, view: CallView) -> None:
        """Peers for the joined members, none for those who left."""
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

    def __init__(self, owner: PluginMedia, call_id: str, me: str, primary: str) -> None:
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
        owner: PluginMedia,
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


class PluginMedia:
    """Every call's media of the plugin's agent (see the module's docstring)."""

    def __init__(
        self,
        host: MediaHost,
        settings: MediaSettings,
        api: ServerApi,
        data_dir: Path,
        *,
        connect_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.base = settings  # as configured (its own --ice-server)
        self.settings = settings  # for the next peer: the server's ICE servers added
        self.connect_timeout = connect_timeout
        self.api = api
        self.data_dir = data_dir
        self.calls: dict[str, CallMediaBase] = {}
        self._views: dict[str, CallView] = {}
        self._closing: set[asyncio.Task[Any]] = set()

    def use_ice_servers(self, servers: tuple[IceServer, ...]) -> None:
        """The server's ICE servers (TURN with a fresh credential) for the peers
        made from now on, before the plugin's own (DESIGN §6: none hard-coded)."""
        self.settings = dataclasses.replace(self.base, ice_servers=(*servers, *self.base.ice_servers))

    def recording_path(self, call_id: str) -> Path:
        """The call's recording file, made empty and the user's alone (0600 in a 0700 folder)."""
        folder = private_dir(self.data_dir / "recordings")
        path = folder / f"{call_id}.webm"
        os.close(open_private(path, os.O_WRONLY))
        return path

    def kind_of(self, call_id: str, name: str) -> str | None:
        view = self._views.get(call_id)
        if view is None:
            return None
        return next((k for k, n in view.joined() if n == name), None)

    def on_call(self, me: str, view: CallView) -> None:
        """A ``call`` push: follow the call's members."""
        call = self.calls.get(view.call_id)
        mine = view.status_of("agent", me) == "joined"
        if me in view.supervisors and not view.ended:  # issue 20: a supervisor helping in the call
            from .supervising import follow  # it builds on this module's CallMediaBase

            follow(self, me, view)
            return
        if view.ended or not mine:
            self._views.pop(view.call_id, None)
            if call is not None:
                self._close(view.call_id)
            return
        self._views[view.call_id] = view
        if view.media == "sfu":
            if call is None:
                try:
                    self.calls[view.call_id] = SfuCall(self, view.call_id, me, primary=view.primary == me)
                except MediaError as exc:
                    log.error("call %s: no media: %s", view.call_id, exc.msg)
            return
        if view.primary == me:
            if call is None:
                if not [n for _k, n in view.joined() if n != me]:
                    return  # nobody to send to yet (ringing, calling out)
                try:
                    call = HubCall(self, view.call_id, me)
                except MediaError as exc:
                    log.error("call %s: no media: %s", view.call_id, exc.msg)
                    return
                self.calls[view.call_id] = call
            if isinstance(call, HubCall):
                call.sync(view)
        elif call is None:
            self.calls[view.call_id] = MemberCall(self, view.call_id, me, view.primary)

    def on_signal(self, payload: Json) -> None:
        """A ``signal`` push: to the call's hub or member, in order."""
        call_id, sender, data = payload.get("callId"), payload.get("from"), payload.get("data")
        if not isinstance(call_id, str) or not isinstance(sender, dict):
            log.warning("a signal push without callId or from: dropped")
            return
        kind, name = sender.get("kind"), sender.get("name")
        call = self.calls.get(call_id)
        if call is None or not isinstance(kind, str) or not isinstance(name, str):
            log.warning("signalling for call %s, which has no media here: dropped", call_id)
            return
        call.do(lambda: call.handle(kind, name, data))

    async def snapshot(self, view: CallView) -> Image:
        """snapshot (SPEC §4.4): a JPEG of the first visitor's latest received frame."""
        visitor = view.first_visitor
        call = self.calls.get(view.call_id)
        if visitor is None:
            raise ApiError("no visitor is in the call", code=ErrorCode.not_in_call)
        if call is None:
            raise NoFrameError(f"no video from {visitor} yet")
        return await call.snapshot(visitor)

    def _close(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            task = call.close()
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every call's media (the plugin stops, or the agent logs out)."""
        for call_id in list(self.calls):
            self._close(call_id)
        self._views.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def wait_closed(self, call_id: str | None = None) -> None:
        """Until the media of ended calls is closed (recordings finished and uploaded)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
