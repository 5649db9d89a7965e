"""``kefu.visitor.Visitor``: a visitor, in Python, for tests, demos and load.

::

    async with Visitor("http://127.0.0.1:8600", "v1", on_invite="accept") as v:
        await v.send_message("hello")           # opens a session, queued
        await v.wait_for(SessionAssigned)
        call_id = await v.request_video()       # the agent rings; on pickup we join
        await v.wait_for(MediaStatus, lambda e: e.status == "connected")
        await v.hangup()

Theory of operation
-------------------
The visitor keeps its ``visitorKey`` (the server gives it on the first
``hello``) and the last push ``seq``, so :meth:`Visitor.reconnect` comes back
as the same visitor and gets exactly the pushes it missed.

Every push goes two ways: into the raw inbox (:meth:`Visitor.next_event`,
unchanged JSON) and, as a typed event (:mod:`kefu.visitor.events`), into the
visitor's :attr:`~Visitor.timeline`, which :meth:`Visitor.events` iterates
from the start. The call pushes (``call``, ``signal``, ``shareRequest``,
``photoRequest``) also go to one worker task that acts on them in order, as a
real visitor's page would (docs/calls.md):

- ``invited``: answered ``busy`` when the visitor is already in a call (or
  has asked for one); else by the ``on_invite`` policy — ``accept``,
  ``refuse``, ``ignore`` (let it ring) or ``manual`` (the caller decides, with
  :meth:`next_invitation` and :meth:`accept` / :meth:`refuse`);
- ``accepted`` (the agent picked up our request): ``joinCall``;
- ``signal`` from the hub: applied to the call's :class:`~kefu.media.MediaMember`
  (made on the first offer), the answer sent back to the ``from`` member;
- ``shareRequest``: a synthetic screen and ``shareAnswer open`` (``refuse``
  when shares are off); :meth:`stop_share` sends ``close``;
- ``photoRequest``: a full-resolution still, uploaded over HTTP
  (:mod:`kefu.visitor.photo`); ``photoAnswer disabled`` when photos are off,
  ``error`` with the reason when the capture or the upload fails;
- ``cancelled`` / ``ended``: the media is closed (bounded).

The worker and the public call methods take turns on one lock, so the
visitor's idea of its call changes in the order things happened. Whatever
the worker could not do becomes a :class:`~kefu.visitor.events.Problem`
event (and a log line); the worker goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from kefu.media import (
    IceServer,
    MediaError,
    MediaMember,
    MediaSettings,
    SfuMember,
    default_host_addresses,
    ice_servers_from_wire,
)
from kefu.protocol import ApiError, ErrorCode, KefuError
from kefu.protocol.sfu import SFU
from kefu.protocol.wire import Json

from .events import (
    CALL_PUSHES,
    CallAction,
    CallActionKind,
    Disconnected,
    Invitation,
    PhotoAnswer,
    Problem,
    ShareAnswer,
    VisitorEvent,
    from_push,
)
from .link import Link, LinkClosed
from .media import CallMedia
from .photo import http_client, upload_photo

__all__ = ["INVITE_POLICIES", "InvitePolicy", "Visitor", "VisitorCall", "ws_url"]

log = logging.getLogger(__name__)

InvitePolicy = Literal["accept", "refuse", "ignore", "manual"]
INVITE_POLICIES: tuple[InvitePolicy, ...] = ("accept", "refuse", "ignore", "manual")
CallPhase = Literal["requesting", "ringing", "joining", "accepting", "connected"]

E = TypeVar("E")

_REASON_MAX = 128  # photoAnswer / shareAnswer reason: at most 128 characters


def ws_url(server: str, path: str) -> str:
    """``http://host:port`` (or ``ws://…``) → ``ws://host:port/path``."""
    base = server.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    return base + path


@dataclass
class VisitorCall:
    """The call the visitor is in, has asked for, or is accepting."""

    call_id: str | None  # None while requestVideo has not been answered
    origin: Literal["request", "invitation"]
    phase: CallPhase
    agent_name: str | None = None
    others: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) joined besides us
    media: CallMedia | None = None


class Visitor:
    """Visitor ``name`` of the kefu server at ``server`` (see the module's docstring).

    ``timeout`` bounds every request's reply and every wait of its own;
    ``on_invite`` is what it answers an agent's invitation; ``allow_photo`` and
    ``allow_share`` are the page's settings; ``media`` says where its camera and
    microphone come from (the synthetic pattern by default) and ``media_timeout``
    how long its media connection may take to come up; ``ssl`` the TLS context of an
    ``https://`` server (:func:`kefu.tls.client_context` of a bank's own CA), None:
    the system's CAs."""

    def __init__(
        self,
        server: str,
        name: str,
        *,
        visitor_key: str | None = None,
        timeout: float = 10.0,
        on_invite: InvitePolicy = "manual",
        allow_photo: bool = True,
        allow_share: bool = True,
        media: MediaSettings | None = None,
        media_timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        if on_invite not in INVITE_POLICIES:
            raise ValueError(f"on_invite: one of {', '.join(INVITE_POLICIES)}, not {on_invite!r}")
        self.server = server
        self.name = name
        self.visitor_key = visitor_key
        self.visitor_id: str | None = None
        self.session: Json | None = None  # the open session the last hello reported
        self.timeout = timeout
        self.on_invite: InvitePolicy = on_invite
        self.allow_photo = allow_photo
        self.allow_share = allow_share
        # host candidates where the server can be reached from: loopback only for a loopback server
        self.media_settings = (
            media if media is not None else MediaSettings(host_addresses=default_host_addresses(server))
        )
        self.ice_servers: tuple[IceServer, ...] = ()  # the server's (TURN), renewed at iceRenewIn
        self._ice_renewal: asyncio.TimerHandle | None = None
        self.media_timeout = media_timeout
        self.ssl = ssl
        self.link = Link(ws_url(server, "/ws/visitor"), timeout=timeout, ssl=ssl)
        self.call: VisitorCall | None = None
        self.timeline: list[VisitorEvent] = []  # every event, in order
        self._grown = asyncio.Event()
        self._pending: dict[str, Invitation] = {}  # invitations not answered yet
        self._invitations: asyncio.Queue[Invitation | None] = asyncio.Queue()
        self._work: asyncio.Queue[Json] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._medias: set[CallMedia] = set()  # open, until closed
        self._http: httpx.AsyncClient | None = None  # photo uploads, made on the first
        self._lock = asyncio.Lock()
        self._closed = False
        self._finished = False  # closed, and the last event emitted
        self.link.on_push(self._on_push)
        self.link.on_close(lambda code, reason: self._emit(Disconnected(code, reason)))

    @property
    def last_seq(self) -> int:
        return self.link.last_seq

    # ------------------------------------------------------------ connection and chat
    async def connect(self) -> Json:
        """Open the socket and say hello; return the hello payload."""
        if self._closed:
            raise RuntimeError("this Visitor is closed; make a new one")
        await self.link.connect()
        params: dict[str, Any] = {"name": self.name, "lastSeq": self.link.last_seq}
        if self.visitor_key is not None:
            params["visitorKey"] = self.visitor_key
        try:
            payload: Json = (await self.link.call("hello", params))["payload"]
        except BaseException:
            await self.link.disconnect()
            raise
        self.visitor_id = payload["visitorId"]
        self.visitor_key = payload["visitorKey"]
        self.session = payload["session"]
        self._use_ice(payload)
        return payload

    def _use_ice(self, payload: Json) -> None:
        """The server's ``iceServers`` for the next call's media; asked again
        (``iceServers``) after ``iceRenewIn`` seconds."""
        try:
            self.ice_servers = ice_servers_from_wire(payload.get("iceServers"))
        except MediaError as exc:
            self._problem("using the server's iceServers", exc)
        if self._ice_renewal is not None:
            self._ice_renewal.cancel()
            self._ice_renewal = None
        renew_in = payload.get("iceRenewIn")
        if isinstance(renew_in, int | float) and renew_in > 0 and not self._closed:
            self._ice_renewal = asyncio.get_running_loop().call_later(
                renew_in, lambda: self._spawn(self._renew_ice(float(renew_in)))
            )

    async def _renew_ice(self, renew_in: float) -> None:
        try:
            self._use_ice((await self.link.call("iceServers"))["payload"])
        except (KefuError, ConnectionError, TimeoutError, LinkClosed) as exc:
            self._problem("renewing the TURN credential", exc)
            if self.link.connected and not self._closed:
                self._ice_renewal = asyncio.get_running_loop().call_later(
                    max(1.0, renew_in / 10), lambda: self._spawn(self._renew_ice(renew_in))
                )

    async def reconnect(self) -> Json:
        """Connect again as the same visitor, resuming after the last push seen."""
        return await self.connect()

    async def send_message(self, text: str, client_msg_id: str | None = None) -> Json:
        """Send a chat message (the first opens a session); return the server's answer."""
        params: dict[str, Any] = {"text": text}
        if client_msg_id is not None:
            params["clientMsgId"] = client_msg_id
        payload: Json = (await self.link.call("sendMessage", params))["payload"]
        return payload

    async def close_session(self) -> Json:
        payload: Json = (await self.link.call("closeSession"))["payload"]
        return payload

    async def ping(self) -> Json:
        return await self.link.call("ping")

    async def next_event(self, sub_mark: str | None = None) -> Json:
        """The next raw push (``queue``, ``sessionAssigned``, ``message``, ``call`` …),
        waiting at most the visitor's ``timeout``."""
        return await self.link.next_event(sub_mark)

    async def disconnect(self) -> None:
        """Close the socket, keeping the visitor's session (and any call's media)."""
        await self.link.disconnect()

    # ------------------------------------------------------------ events
    async def events(self) -> AsyncIterator[VisitorEvent]:
        """Every event of this visitor from the first, then as they come; ends
        when the visitor is closed. Each iteration has its own position."""
        i = 0
        while True:
            while i < len(self.timeline):
                yield self.timeline[i]
                i += 1
            if self._finished:
                return
            await self._grown.wait()

    async def wait_for(
        self, kind: type[E], where: Callable[[E], bool] | None = None, *, within: float | None = None
    ) -> E:
        """The first event of the timeline (past or coming) of type ``kind`` that
        passes ``where``; waits at most ``within`` (default: the visitor's timeout)."""
        async with asyncio.timeout(self.timeout if within is None else within):
            async for ev in self.events():
                if isinstance(ev, kind) and (where is None or where(ev)):
                    return ev
        raise RuntimeError(f"the visitor closed before a {kind.__name__} came")

    def _emit(self, event: VisitorEvent) -> None:
        self.timeline.append(event)
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    def _problem(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, KefuError):
            code, msg = exc.code.value, exc.msg
        else:
            code, msg = type(exc).__name__, str(exc)
        log.warning("visitor %s: %s failed: %s %s", self.name, what, code, msg)
        self._emit(Problem(what, code, msg))

    # ------------------------------------------------------------ calls: the caller's side
    @property
    def media(self) -> MediaMember | SfuMember | None:
        """The current call's media member (frames of the others, the camera), if any."""
        if self.call is None or self.call.media is None:
            return None
        return self.call.media.member

    @property
    def in_call(self) -> bool:
        return self.call is not None

    async def request_video(self) -> str:
        """Ask for video in the open session: its agent rings. Returns the call id.
        When the agent picks up, the visitor joins by itself."""
        async with self._lock:
            if self.call is not None:
                raise ApiError(
                    f"already in call {self.call.call_id}; hang up first", code=ErrorCode.invalid_state
                )
            call = self.call = VisitorCall(None, "request", "requesting")
            try:
                reply = await self.link.call("requestVideo")
            except BaseException:
                self.call = None
                raise
            call_id = str(reply["payload"]["callId"])
            call.call_id = call_id
            call.phase = "ringing"
            self._emit(CallAction(call_id, "requested"))
            return call_id

    async def next_invitation(self, within: float | None = None) -> Invitation:
        """The next invitation that arrived (in order; each is given once), waiting
        at most ``within`` (default: the visitor's timeout)."""
        async with asyncio.timeout(self.timeout if within is None else within):
            inv = await self._invitations.get()
        if inv is None:
            raise RuntimeError("the visitor is closed")
        return inv

    async def invitations(self) -> AsyncIterator[Invitation]:
        """Invitations as they arrive (a busy answer's too), until the visitor is closed."""
        while True:
            inv = await self._invitations.get()
            if inv is None:
                return
            yield inv

    @property
    def pending_invitations(self) -> tuple[Invitation, ...]:
        """Invitations still ringing that the visitor has not answered."""
        return tuple(self._pending.values())

    async def accept(self, call_id: str) -> None:
        """Accept an invitation: the visitor is in the call (the hub's offer follows)."""
        async with self._lock:
            await self._accept(call_id, auto=False)

    async def refuse(self, call_id: str) -> None:
        """Refuse an invitation."""
        async with self._lock:
            await self._answer(call_id, "refuse", "refused", auto=False)

    async def hangup(self) -> str:
        """Hang up the current call (or withdraw the video request); returns its id."""
        async with self._lock:
            call = self.call
            if call is None or call.call_id is None:
                raise ApiError("not in a call", code=ErrorCode.not_in_call)
            try:
                await self.link.call("hangup", {"callId": call.call_id})
            finally:
                # also when the server says the call is gone: locally it is over
                await self._end_call(call.call_id)
            self._emit(CallAction(call.call_id, "hungUp"))
            return call.call_id

    async def stop_share(self) -> None:
        """Stop sharing the screen (``shareAnswer close``)."""
        async with self._lock:
            call = self.call
            if call is None or call.media is None or not call.media.sharing or call.call_id is None:
                raise ApiError("the screen is not shared", code=ErrorCode.invalid_state)
            call.media.stop_share()
            await self._share_answer(call.call_id, "close")

    def pause_video(self, seconds: float | None = None) -> None:
        """Send no camera frames for ``seconds`` (or until :meth:`resume_video`), as
        a stalled camera: the agent's side reports ``visitorStreamOffline`` after 3 s."""
        self._call_media().pause_video(seconds)

    def resume_video(self) -> None:
        self._call_media().resume_video()

    def _call_media(self) -> CallMedia:
        if self.call is None or self.call.media is None:
            raise ApiError("no call media yet: nothing to pause", code=ErrorCode.not_in_call)
        return self.call.media

    # ------------------------------------------------------------ calls: the worker
    def _on_push(self, msg: Json) -> None:
        event = from_push(msg)
        if event is not None:
            self._emit(event)
        if msg.get("subMark") in CALL_PUSHES and not self._closed:
            self._work.put_nowait(msg)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._work_loop(), name="kefu-visitor")

    async def _work_loop(self) -> None:
        while True:
            msg = await self._work.get()
            what = f"{msg.get('subMark')} push"
            try:
                async with self._lock:
                    await self._dispatch(msg)
            except (KefuError, ConnectionError, TimeoutError) as exc:
                self._problem(what, exc)
            except Exception as exc:  # the worker must outlive any one push
                log.exception("visitor %s: handling a %s failed", self.name, what)
                self._problem(what, exc)
            finally:
                self._work.task_done()

    async def settled(self, within: float | None = None) -> None:
        """Wait until the visitor has acted on every call push received so far
        (at most ``within``, default: the visitor's timeout)."""
        async with asyncio.timeout(self.timeout if within is None else within):
            await self._work.join()

    async def _dispatch(self, msg: Json) -> None:
        sub = msg.get("subMark")
        p = msg.get("payload")
        p = p if isinstance(p, dict) else {}
        call_id = p.get("callId")
        if not isinstance(call_id, str) or not call_id:
            raise ApiError(f"a {sub} push without a callId", code=ErrorCode.bad_request)
        if sub == "call":
            await self._on_call(call_id, p)
        elif sub == "signal":
            await self._on_signal(call_id, p)
        elif sub == "shareRequest":
            await self._on_share_request(call_id)
        elif sub == "photoRequest":
            request_id = p.get("requestId")
            if not isinstance(request_id, str) or not request_id:
                raise ApiError("a photoRequest without a requestId", code=ErrorCode.bad_request)
            await self._on_photo_request(call_id, request_id)

    async def _on_call(self, call_id: str, p: Json) -> None:
        what, call = p.get("what"), self.call
        agent = p.get("agentName") if isinstance(p.get("agentName"), str) else None
        role = p.get("role") if isinstance(p.get("role"), str) else None
        if what == "ringing":
            if call is None:  # requested on the link directly
                self.call = VisitorCall(call_id, "request", "ringing", agent)
            elif call.origin == "request" and call.call_id in (None, call_id):
                call.call_id, call.agent_name = call_id, agent
                if call.phase == "requesting":
                    call.phase = "ringing"
        elif what == "invited":
            await self._on_invited(Invitation(call_id, agent, role), call)
        elif what == "accepted":
            if call is not None and call.call_id not in (None, call_id):
                raise ApiError(
                    f"accepted for call {call_id} while in call {call.call_id}", code=ErrorCode.invalid_state
                )
            if call is None:
                call = self.call = VisitorCall(call_id, "request", "joining", agent)
            call.call_id, call.phase = call_id, "joining"
            call.agent_name = agent or call.agent_name
            try:
                joined = await self.link.call("joinCall", {"callId": call_id})
            except BaseException:
                await self._end_call(call_id)  # the call is not ours any more
                raise
            call.phase = "connected"
            self._publish(call, joined)
            self._emit(CallAction(call_id, "joined", auto=True))
        elif what in ("cancelled", "ended"):
            self._pending.pop(call_id, None)
            await self._end_call(call_id)
        elif what == "transferred" and call is not None and call.call_id == call_id:
            await self._transferred(call, agent)
        elif what in ("memberJoined", "memberLeft") and call is not None and call.call_id == call_id:
            kind, name = p.get("kind"), p.get("name")
            if isinstance(kind, str) and isinstance(name, str):
                if what == "memberJoined":
                    call.others.add((kind, name))
                else:
                    call.others.discard((kind, name))

    async def _on_invited(self, inv: Invitation, call: VisitorCall | None) -> None:
        if call is not None and call.call_id == inv.call_id:
            return  # already ours
        if call is not None:
            # docs/calls.md: a visitor already in a call answers a new invitation with busy
            self._invitations.put_nowait(inv)
            await self._answer(inv.call_id, "busy", "busy", auto=True)
            return
        self._pending[inv.call_id] = inv
        self._invitations.put_nowait(inv)
        if self.on_invite == "accept":
            await self._accept(inv.call_id, auto=True)
        elif self.on_invite == "refuse":
            await self._answer(inv.call_id, "refuse", "refused", auto=True)
        elif self.on_invite == "ignore":
            self._emit(CallAction(inv.call_id, "ignored", auto=True))

    async def _accept(self, call_id: str, *, auto: bool) -> None:
        if self.call is not None:
            raise ApiError(
                f"already in call {self.call.call_id}; hang up first", code=ErrorCode.invalid_state
            )
        inv = self._pending.pop(call_id, None)
        call = self.call = VisitorCall(call_id, "invitation", "accepting", inv.agent_name if inv else None)
        try:
            answered = await self.link.call("answerCall", {"callId": call_id, "answer": "accept"})
        except BaseException:
            if self.call is call:
                self.call = None
            raise
        call.phase = "connected"
        self._publish(call, answered)
        self._emit(CallAction(call_id, "accepted", auto=auto))

    def _publish(self, call: VisitorCall, reply: Json) -> None:
        """SFU mode (the reply's ``media``): publish to the media server once joined."""
        payload = reply.get("payload")
        if isinstance(payload, dict) and payload.get("media") == "sfu" and call.media is None:
            assert call.call_id is not None
            call.media = self._open_media(call.call_id, "sfu")

    async def _answer(self, call_id: str, answer: str, action: CallActionKind, *, auto: bool) -> None:
        await self.link.call("answerCall", {"callId": call_id, "answer": answer})
        self._pending.pop(call_id, None)
        self._emit(CallAction(call_id, action, auto=auto))

    async def _transferred(self, call: VisitorCall, agent: str | None) -> None:
        """The call went to another agent (issue 20). In the hub mode the hub moves to its
        plugin (D30): the old media closes and the new agent's first offer opens the next.
        In the SFU mode the media server stays; the agents' feeds come and go."""
        call.agent_name = agent or call.agent_name
        media = call.media
        if media is not None and not media.sfu:
            call.media = None
            await media.close()
            self._medias.discard(media)

    async def _end_call(self, call_id: str) -> None:
        call = self.call
        if call is None or call.call_id != call_id:
            return
        self.call = None
        if call.media is not None:
            await call.media.close()
            self._medias.discard(call.media)

    async def _on_signal(self, call_id: str, p: Json) -> None:
        call = self.call
        if call is None or call.call_id != call_id:
            raise ApiError(
                f"signalling for call {call_id}, which this visitor is not in", code=ErrorCode.no_such_call
            )
        sender = p.get("from")
        if sender == SFU:
            # SFU mode: the media server's answers and offers (the media opened when joined)
            if call.media is None:  # before the answerCall/joinCall reply was read
                call.media = self._open_media(call_id, "sfu")
            elif not call.media.sfu:
                raise ApiError(
                    "signalling from the media server in a call without it", code=ErrorCode.forbidden
                )
            await call.media.handle(p.get("data"))
            return
        if (
            not isinstance(sender, dict)
            or sender.get("kind") != "agent"
            or not isinstance(sender.get("name"), str)
        ):
            raise ApiError("signalling must come from the call's agent (the hub)", code=ErrorCode.forbidden)
        hub: str = sender["name"]
        if call.media is None:
            if call.agent_name is not None and hub != call.agent_name:
                raise ApiError(f"signalling from {hub}, not from the call's agent", code=ErrorCode.forbidden)
            call.media = self._open_media(call_id, hub)
        elif hub != call.media.hub:
            raise ApiError(
                f"signalling from {hub}, not from the hub {call.media.hub}", code=ErrorCode.forbidden
            )
        await call.media.handle(p.get("data"))

    def _open_media(self, call_id: str, hub: str) -> CallMedia:
        to = SFU if hub == "sfu" else {"kind": "agent", "name": hub}

        async def send(data: dict[str, Any]) -> None:
            await self.link.call("signal", {"callId": call_id, "to": to, "data": data})

        async def failed(reason: str) -> None:
            await self.link.call("mediaFailed", {"callId": call_id, "reason": reason[:_REASON_MAX]})

        settings = self.media_settings
        if self.ice_servers:
            settings = dataclasses.replace(settings, ice_servers=(*self.ice_servers, *settings.ice_servers))
        media = CallMedia(
            settings,
            local=self.name,
            hub=hub,
            call_id=call_id,
            send=send,
            emit=self._emit,
            connect_timeout=self.media_timeout,
            report_failure=failed,
        )
        self._medias.add(media)
        return media

    async def _on_share_request(self, call_id: str) -> None:
        call = self.call
        if not self.allow_share:
            await self._share_answer(call_id, "refuse")
        elif call is None or call.call_id != call_id:
            await self._share_answer(call_id, "error", "not in this call")
        elif call.media is None:
            await self._share_answer(call_id, "error", "no media connection yet")
        else:
            if not call.media.sharing:
                try:
                    call.media.start_share()
                except MediaError as exc:
                    await self._share_answer(call_id, "error", exc.msg)
                    return
            await self._share_answer(call_id, "open")

    async def _share_answer(self, call_id: str, answer: str, reason: str | None = None) -> None:
        params: dict[str, Any] = {"callId": call_id, "answer": answer}
        if reason is not None:
            params["reason"] = reason[:_REASON_MAX]
        await self.link.call("shareAnswer", params)
        self._emit(ShareAnswer(call_id, answer, reason))

    async def _on_photo_request(self, call_id: str, request_id: str) -> None:
        call = self.call
        if not self.allow_photo:
            await self._photo_answer(call_id, request_id, "disabled")
        elif call is None or call.call_id != call_id:
            await self._photo_answer(call_id, request_id, "error", "not in this call")
        elif call.media is None:
            await self._photo_answer(call_id, request_id, "error", "no camera running yet")
        else:
            # capture and upload off the worker: signalling must not wait for HTTP
            self._spawn(self._photo(call.media, call_id, request_id))

    async def _photo(self, media: CallMedia, call_id: str, request_id: str) -> None:
        try:
            try:
                image = await media.take_photo()
                assert self.visitor_key is not None
                if self._http is None:
                    self._http = http_client(self.timeout, self.ssl)
                answer = await upload_photo(
                    self._http,
                    self.server,
                    name=self.name,
                    key=self.visitor_key,
                    call_id=call_id,
                    request_id=request_id,
                    jpeg=image.jpeg,
                )
            except ApiError as exc:
                await self._photo_answer(call_id, request_id, "error", exc.msg)
                return
            artifact = answer.get("artifactId")
            self._emit(
                PhotoAnswer(
                    call_id,
                    request_id,
                    "uploaded",
                    artifact_id=artifact if isinstance(artifact, str) else None,
                    width=image.width,
                    height=image.height,
                    size=len(image.jpeg),
                )
            )
        except (KefuError, ConnectionError, TimeoutError) as exc:
            self._problem(f"photo {request_id}", exc)

    async def _photo_answer(
        self, call_id: str, request_id: str, answer: str, reason: str | None = None
    ) -> None:
        params: dict[str, Any] = {"callId": call_id, "requestId": request_id, "answer": answer}
        if reason is not None:
            params["reason"] = reason[:_REASON_MAX]
        await self.link.call("photoAnswer", params)
        self._emit(PhotoAnswer(call_id, request_id, answer, reason))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ life
    async def leave(self, *, close_session: bool = False) -> None:
        """Leave as a person would: hang up any call, optionally close the
        session, and close the connection."""
        try:
            with contextlib.suppress(TimeoutError):
                await self.settled()  # act on what has come first (the call may be over already)
            if self.call is not None and self.call.call_id is not None and self.link.connected:
                try:
                    await self.hangup()
                except (ApiError, LinkClosed, TimeoutError) as exc:
                    self._problem("hanging up", exc)
            if close_session and self.link.connected:
                await self.close_session()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the call's media (bounded) and the connection. The visitor cannot be reused."""
        if self._closed:
            await self.link.disconnect()
            return
        self._closed = True
        if self._ice_renewal is not None:
            self._ice_renewal.cancel()
        tasks = [t for t in (self._worker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.call = None
        # also a media whose closing the cancelled worker left half-way
        await asyncio.gather(*(m.close() for m in self._medias))
        await self.link.disconnect()
        if self._http is not None:
            await self._http.aclose()
        self._invitations.put_nowait(None)
        self._finished = True
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def __aenter__(self) -> Visitor:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
