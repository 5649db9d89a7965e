"""What a visitor does with the server's call pushes, in order, on one worker
(docs/calls.md; :mod:`kefu.visitor.client` has the whole story).

:class:`CallPushes` is the part of :class:`~kefu.visitor.client.Visitor` that
acts on ``call``, ``signal``, ``shareRequest`` and ``photoRequest`` pushes:
join or answer a call, open its media on the first offer, share the screen,
take and upload a photo. It uses the visitor's link, settings and events
(declared below, set by :class:`~kefu.visitor.client.Visitor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl as ssl_module
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from kefu.media import IceServer, MediaError, MediaSettings
from kefu.protocol import ApiError, ErrorCode, KefuError
from kefu.protocol.call import CallNotice
from kefu.protocol.sfu import SFU
from kefu.protocol.wire import Json

from .events import (
    CALL_PUSHES,
    CallAction,
    CallActionKind,
    Invitation,
    PhotoAnswer,
    ShareAnswer,
    VisitorEvent,
    from_push,
)
from .link import Link
from .media import CallMedia
from .photo import http_client, upload_photo

__all__ = ["CallPushes", "VisitorCall", "VisitorCallProgress"]

log = logging.getLogger("kefu.visitor.client")

#: Where the visitor's own call stands (not :class:`kefu.protocol.CallPhase`, the server's view of a call).
VisitorCallProgress = Literal["requesting", "ringing", "joining", "accepting", "connected"]

_REASON_MAX = 128  # photoAnswer / shareAnswer reason: at most 128 characters


@dataclass
class VisitorCall:
    """The call the visitor is in, has asked for, or is accepting."""

    call_id: str | None  # None while requestVideo has not been answered
    origin: Literal["request", "invitation"]
    phase: VisitorCallProgress
    agent_name: str | None = None
    others: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) joined besides us
    media: CallMedia | None = None


class CallPushes:
    """The call-push worker of a :class:`~kefu.visitor.client.Visitor` (see the module's docstring)."""

    # set by Visitor.__init__
    name: str
    server: str
    visitor_key: str | None
    timeout: float
    ssl: ssl_module.SSLContext | None
    on_invite: str
    allow_photo: bool
    allow_share: bool
    media_settings: MediaSettings
    media_timeout: float
    ice_servers: tuple[IceServer, ...]
    link: Link
    call: VisitorCall | None
    _pending: dict[str, Invitation]
    _invitations: asyncio.Queue[Invitation | None]
    _work: asyncio.Queue[Json]
    _worker: asyncio.Task[None] | None
    _medias: set[CallMedia]
    _http: httpx.AsyncClient | None
    _lock: asyncio.Lock
    _closed: bool

    if TYPE_CHECKING:

        def _emit(self, event: VisitorEvent) -> None: ...
        def _problem(self, what: str, exc: BaseException) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

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
        what, call = CallNotice.of(p.get("what")), self.call
        agent = p.get("agentName") if isinstance(p.get("agentName"), str) else None
        role = p.get("role") if isinstance(p.get("role"), str) else None
        if what is CallNotice.ringing:
            if call is None:  # requested on the link directly
                self.call = VisitorCall(call_id, "request", "ringing", agent)
            elif call.origin == "request" and call.call_id in (None, call_id):
                call.call_id, call.agent_name = call_id, agent
                if call.phase == "requesting":
                    call.phase = "ringing"
        elif what is CallNotice.invited:
            await self._on_invited(Invitation(call_id, agent, role), call)
        elif what is CallNotice.accepted:
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
        elif what in (CallNotice.cancelled, CallNotice.ended):
            self._pending.pop(call_id, None)
            await self._end_call(call_id)
        elif (
            what in (CallNotice.transferred, CallNotice.queued)
            and call is not None
            and call.call_id == call_id
        ):
            await self._transferred(call, agent)  # queued: no agent's media until one picks up (D50)
        elif (
            what in (CallNotice.memberJoined, CallNotice.memberLeft)
            and call is not None
            and call.call_id == call_id
        ):
            kind, name = p.get("kind"), p.get("name")
            if isinstance(kind, str) and isinstance(name, str):
                if what is CallNotice.memberJoined:
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
