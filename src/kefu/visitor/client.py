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
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Coroutine
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
from kefu.protocol.wire import Json

from .events import (
    CallAction,
    Disconnected,
    Invitation,
    Problem,
    VisitorEvent,
)
from .link import Link, LinkClosed
from .media import CallMedia
from .pushes import CallPushes, VisitorCall, VisitorCallProgress

__all__ = ["INVITE_POLICIES", "InvitePolicy", "Visitor", "VisitorCall", "VisitorCallProgress", "ws_url"]

log = logging.getLogger(__name__)

InvitePolicy = Literal["accept", "refuse", "ignore", "manual"]
INVITE_POLICIES: tuple[InvitePolicy, ...] = ("accept", "refuse", "ignore", "manual")

E = TypeVar("E")


def ws_url(server: str, path: str) -> str:
    """``http://host:port`` (or ``ws://…``) → ``ws://host:port/path``."""
    base = server.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    return base + path


class Visitor(CallPushes):
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
