"""The two sockets: ``/ws/agent`` (the plugin) and ``/ws/visitor``.

Theory of operation
-------------------
The handler's task reads: every frame is rate-limited, size-checked and
decoded by :func:`kefu.protocol.wire.decode_request` against the socket's API;
a bad one is answered with an error in the spec's form and the connection
stays up. The :class:`~kefu.server.outbox.Outbox` writes: replies and pushes
go through one bounded queue, sent by a task of its own while the queue is not
empty, so they leave in order, and pushes leave strictly in ``seq`` order.

Until the first message (``auth`` / ``hello``) succeeds, only that message is
accepted; without it within ``auth_timeout`` the connection closes with 1008.
Limits: more than ``rate_limit_messages`` per ``rate_limit_window`` →
``rate_limited`` (with ``retryAfter``), and past ``rate_limit_strikes`` such
answers in one window, close 1008. A text over ``max_message_bytes`` →
``too_large``; the ``oversize_strikes``-th closes with 1009 (frames over
``transport_max_bytes`` are cut by the WebSocket library with 1009). A binary
frame → ``binary_frame``. A slow reader whose queue overflows is closed with
1008; it resumes from its last ``seq`` when it reconnects. An agent's socket
closes with 4003 when its login ends (:mod:`kefu.server.logins`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from starlette.websockets import WebSocket, WebSocketState

from kefu.protocol import ApiError, ErrorCode, InvalidTransition, ProtocolError
from kefu.protocol.agent_api import AGENT_API, AuthParams
from kefu.protocol.call import MemberKind
from kefu.protocol.machine import Event, Flow
from kefu.protocol.plugin_api import (
    CALL_MARKS,
    SUPERVISE_MARKS,
    ChatCloseParams,
    SendMessageParams,
    SessionParams,
    SetAgentStateParams,
    TransferSessionParams,
)
from kefu.protocol.visitor_api import (
    VISITOR_API,
    AnswerCallParams,
    CallIdParams,
    MediaFailedParams,
    PhotoAnswerParams,
    ShareAnswerParams,
    SignalParams,
    VisitorHelloParams,
    VisitorMessageParams,
)
from kefu.protocol.wire import (
    Api,
    Json,
    Request,
    decode_request,
    error_message,
    protocol_error_message,
    reply_message,
)

from .accounts import Agent
from .agents import is_logged_in
from .auth import normalize_origin
from .hub import agent_key
from .logins import CLOSE_LOGIN_ENDED
from .outbox import CLOSE_POLICY, CLOSE_REPLACED, CLOSE_TOO_BIG, Outbox
from .services import Services
from .store import storage_full
from .visitors import Visitor, identify

__all__ = [
    "CLOSE_LOGIN_ENDED",
    "CLOSE_POLICY",
    "CLOSE_REPLACED",
    "CLOSE_TOO_BIG",
    "AgentConnection",
    "Connection",
    "Outbox",
    "VisitorConnection",
]

log = logging.getLogger("kefu.server.connection")

#: A request's handler: a method of the connection's class, called with the connection.
Handler = Callable[[Any, Request], Awaitable[None]]


class Connection:
    """What both sockets share: limits, decoding, dispatch, errors.

    Memory (thousands of idle visitors): ``__slots__``, and the handlers are one
    table per class, not bound methods per connection."""

    __slots__ = (
        "_oversize",
        "_strikes",
        "_window_count",
        "_window_start",
        "authenticated",
        "outbox",
        "s",
        "services",
        "ws",
    )

    api: ClassVar[Api]
    first_mark: ClassVar[str]
    handlers: ClassVar[Mapping[str, Handler]] = {}

    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.s = services.settings
        self.outbox = Outbox(ws, services, self.s.outbound_queue)
        self.authenticated = False
        self._window_start = 0.0
        self._window_count = 0
        self._strikes = 0
        self._oversize = 0

    # --- the handshake

    def origin_allowed(self) -> bool:
        """No Origin: not a browser. A browser page must come from an allowed origin
        or from this server itself (cross-site WebSocket hijacking, reliability T9)."""
        origin = self.ws.headers.get("origin")
        if origin is None:
            return True
        got = normalize_origin(origin)
        if got is None:
            return False
        scheme = "https" if self.ws.url.scheme == "wss" else "http"
        own = normalize_origin(f"{scheme}://{self.ws.headers.get('host', '')}")
        return got == own or got in self.services.auth.allowed_origins

    async def serve(self) -> None:
        if not self.origin_allowed():
            await self.ws.close(CLOSE_POLICY)  # before accept: HTTP 403
            return
        await self.ws.accept()
        self.outbox.start()
        try:
            await self._read_loop()
        finally:
            await self.closed()
            await self.outbox.stop()

    async def closed(self) -> None:
        """The connection ended: forget it."""
        if self.outbox.recipient is not None:
            self.services.hub.bus.detach(self.outbox.recipient, self.outbox)

    # --- reading

    async def _receive(self, deadline: float | None) -> dict[str, Any] | None:
        if deadline is None:
            return dict(await self.ws.receive())
        try:
            async with asyncio.timeout_at(deadline):
                return dict(await self.ws.receive())
        except TimeoutError:
            return None

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self.s.auth_timeout
        while not self.outbox.closing:
            if self.authenticated:
                deadline = None
            # idle (most connections, most of the time): one coroutine frame less
            msg = dict(await self.ws.receive()) if deadline is None else await self._receive(deadline)
            if msg is None:
                log.info("no %s within %.1f s: closing", self.first_mark, self.s.auth_timeout)
                self.outbox.close(CLOSE_POLICY, f"send {self.first_mark} first")
                await self._drain_until_closed()
                return
            if msg["type"] == "websocket.disconnect":
                return
            self.outbox.hold()  # the replies go after the frame, from this task (D43)
            try:
                await self._frame(msg.get("text"), msg.get("bytes"))
            finally:
                self.outbox.release()
            await self.outbox.flush()
            msg = None  # not kept while waiting for the next one
        await self._drain_until_closed()

    async def _drain_until_closed(self) -> None:
        """After asking the outbox to close: read until the peer's close arrives (bounded)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while self.ws.client_state is not WebSocketState.DISCONNECTED:
                    msg = await self.ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        return

    def _rate(self) -> str:
        """``ok``, ``limited`` (answer rate_limited) or ``close`` (the flood goes on)."""
        now = self.s.now().timestamp()
        if now - self._window_start >= self.s.rate_limit_window:
            self._window_start, self._window_count, self._strikes = now, 0, 0
        self._window_count += 1
        if self._window_count <= self.s.rate_limit_messages:
            return "ok"
        self._strikes += 1
        return "close" if self._strikes > self.s.rate_limit_strikes else "limited"

    def _rate_limited(self, rid: str | None, mark: str | None) -> None:
        retry = round(self._window_start + self.s.rate_limit_window - self.s.now().timestamp(), 3)
        msg = f"more than {self.s.rate_limit_messages} messages in {self.s.rate_limit_window:g} s"
        err = error_message(mark, ErrorCode.rate_limited, msg, rid=rid)
        err["error"]["retryAfter"] = retry
        self.outbox.reply(err)

    async def _frame(self, text: str | None, data: bytes | None) -> None:
        rate = self._rate()
        if rate == "close":
            log.warning("%s floods: closing with 1008", self.outbox.recipient or "a client")
            self.outbox.close(CLOSE_POLICY, "too many messages")
            return
        if text is None:
            self.outbox.reply(error_message(None, ErrorCode.binary_frame))
            return
        if (
            len(text) > self.s.max_message_bytes // 4
            and len(text.encode("utf-8", "surrogatepass")) > self.s.max_message_bytes
        ):
            self._oversize += 1
            if self._oversize >= self.s.oversize_strikes:
                self.outbox.close(CLOSE_TOO_BIG, "messages too large")
                return
            self.outbox.reply(
                error_message(
                    None, ErrorCode.too_large, f"a message is at most {self.s.max_message_bytes} bytes"
                )
            )
            return
        try:
            req = decode_request(text, self.api)
        except ProtocolError as exc:
            if rate == "limited":
                self._rate_limited(exc.request_id, exc.mark)
            else:
                self.outbox.reply(protocol_error_message(exc))
            return
        if rate == "limited":
            self._rate_limited(req.id, req.mark)  # answered, not run
            return
        if not self.authenticated and req.mark != self.first_mark:
            self.fail(req, ApiError(f"send {self.first_mark} first", code=ErrorCode.unauthenticated))
            return
        await self.dispatch(req)

    async def dispatch(self, req: Request) -> None:
        handler = self.handlers[req.mark]  # decode_request only lets the API's marks through
        try:
            await handler(self, req)
        except InvalidTransition as exc:
            self.outbox.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id, state=exc.state))
        except ApiError as exc:
            self.fail(req, exc)
        except Exception as exc:
            if storage_full(exc):  # nothing was stored: never an acknowledgement
                log.error("%s: the storage is full (%s)", req.mark, type(exc).__name__)
                self.outbox.reply(error_message(req.mark, ErrorCode.storage_full, rid=req.id))
                return
            log.exception("%s failed", req.mark)
            self.outbox.reply(error_message(req.mark, ErrorCode.internal, rid=req.id))

    # --- answering

    def reply(self, msg: Json) -> None:
        self.outbox.reply(msg)

    def ok(
        self, req: Request, payload: Any = None, *, state: str | None = None, sub_mark: str = "success"
    ) -> None:
        self.outbox.reply(reply_message(req.mark, sub_mark, payload, rid=req.id, state=state))

    def fail(self, req: Request, exc: ApiError, *, state: str | None = None) -> None:
        msg = error_message(req.mark, exc.code, exc.msg, rid=req.id, state=state)
        retry = getattr(exc, "retry_after", None)
        if retry is not None:
            msg["error"]["retryAfter"] = retry
        self.outbox.reply(msg)

    def attach(self, recipient: str, last_seq: int) -> None:
        """Become the recipient's connection; replay what it missed after ``last_seq``."""
        self.outbox.recipient = recipient
        self.outbox.last_sent = last_seq
        old = self.services.hub.bus.attach(recipient, self.outbox)
        if isinstance(old, Outbox):
            old.replaced()
        self.outbox.catch_up()
        self.authenticated = True


class AgentConnection(Connection):
    """``/ws/agent``: the plugin's link (see :mod:`kefu.protocol.agent_api`)."""

    __slots__ = ("agent_id", "agent_name", "token_hash")

    api = AGENT_API
    first_mark = "auth"

    def __init__(self, ws: WebSocket, services: Services) -> None:
        super().__init__(ws, services)
        self.agent_id: int | None = None
        self.agent_name: str | None = None
        self.token_hash: str | None = None  # of the token it logged in with (never the token)

    def login_ended(self, code: ErrorCode) -> None:
        """The token expired or was revoked, or the account was disabled (:mod:`.logins`)."""
        log.info(
            "agent %s: login ended (%s); closing with %d", self.agent_name, code.value, CLOSE_LOGIN_ENDED
        )
        self.outbox.reply(error_message(None, code))
        self.outbox.close(CLOSE_LOGIN_ENDED, code.value)

    async def closed(self) -> None:
        self.services.logins.forget(self)
        await super().closed()
        if self.agent_name is not None and self.authenticated:
            await self.services.calls.member_gone(MemberKind.agent, self.agent_name)
            if self.agent_id is not None:  # issue 20: no lost customer (presence asked at the end)
                self.services.transfers.agent_gone(self.agent_id)

    async def _me(self, *, logged_in: bool = True) -> Agent:
        assert self.agent_id is not None
        agent = await self.services.agents.get(self.agent_id)
        if agent.disabled:
            raise ApiError(code=ErrorCode.account_disabled)
        if logged_in and not is_logged_in(agent):
            raise ApiError(code=ErrorCode.not_logged_in)
        return agent

    async def on_auth(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, AuthParams)
        sv = self.services
        try:
            grant = await sv.auth.grant(p.token)
            agent = grant.agent
            if self.agent_id is not None and agent.id != self.agent_id:
                raise ApiError("this connection belongs to another agent", code=ErrorCode.forbidden)
        except ApiError as exc:
            self.fail(req, exc)
            if not self.authenticated:
                self.outbox.close(CLOSE_POLICY, exc.code.value)
            return
        if not is_logged_in(agent):
            event = Event.loginReady if self.s.ready_on_login else Event.login
            agent = (await sv.agents.apply(agent.id, Flow.agent, event, reason="login")).after
        key = agent_key(agent.id)
        if not self.authenticated:
            await sv.hub.bus.announce(key)  # present on every node before the reply
        latest = await sv.hub.latest_seq(key)
        payload = {
            "agent": agent.profile(),
            "lastSeq": latest,
            "sessions": await sv.sessions.open_of_agent(agent.id),
            "queue": await sv.router.queue_snapshot(),
            **sv.turn.payload(f"agent-{agent.id}", self.s.now()),  # TURN for the hub's media
        }
        self.ok(req, payload, state=agent.state.code.value)
        self.token_hash = grant.token_hash
        sv.logins.watch(self, grant.token_hash, grant.expires_at)
        if self.authenticated:
            self.outbox.catch_up()
            return
        self.agent_id = agent.id
        self.agent_name = agent.name
        self.attach(key, min(p.lastSeq, latest))
        sv.calls.member_back(MemberKind.agent, agent.name)
        sv.transfers.agent_back(agent.id)
        log.info("agent %s connected (lastSeq %d, server %d)", agent.name, p.lastSeq, latest)
        if p.mediaCalls is not None:
            await sv.calls.media_back(agent.name, frozenset(p.mediaCalls))
        sv.router.kick()  # a ready agent can take waiting sessions now

    async def on_pick_up(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SessionParams)
        self.ok(req, await self.services.router.pick_up(await self._me(), p.session_id))

    async def on_chat_close(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, ChatCloseParams)
        self.ok(req, await self.services.sessions.close_by_agent(await self._me(), p.session_id))

    async def on_send(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SendMessageParams)
        me = await self._me()
        self.ok(req, await self.services.sessions.agent_send(me, p.session_id, p.text, p.clientMsgId))

    async def on_transfer(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, TransferSessionParams)
        me = await self._me()
        self.ok(req, await self.services.transfers.transfer(me, p.session_id, p.agentName, p.note))

    async def on_set_state(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SetAgentStateParams)
        me = await self._me()
        event = Event.setReady if p.state == "idle" else Event.setNotReady
        change = await self.services.agents.apply(me.id, Flow.agent, event, reason=p.reason)
        code = change.after.state.code.value
        self.ok(req, {"old": change.before.state.code.value, "reason": p.reason}, state=code)

    async def on_logout(self, req: Request) -> None:
        """Log out, revoke the token, then close with 4003 ``token_revoked`` (after the reply)."""
        me = await self._me()
        sv = self.services
        change = await sv.agents.apply(me.id, Flow.agent, Event.logout, reason="logout")
        assert self.token_hash is not None
        await sv.auth.revoke(self.token_hash)
        self.ok(req, {"old": change.before.state.code.value}, state=change.after.state.code.value)
        # this socket asked: its reply says so, and it closes with no error after it;
        # the token's other sockets (another tab, another node) are told token_revoked
        sv.logins.forget(self)
        sv.logins.end_token(self.token_hash, ErrorCode.token_revoked)
        self.outbox.close(CLOSE_LOGIN_ENDED, ErrorCode.token_revoked.value)

    async def on_session_count(self, req: Request) -> None:
        me = await self._me(logged_in=False)
        sessions = await self.services.sessions.open_of_agent(me.id)
        self.ok(req, {"sessionCount": len(sessions)})

    async def on_session_state(self, req: Request) -> None:
        me = await self._me(logged_in=False)
        self.ok(req, {"sessions": await self.services.sessions.open_of_agent(me.id)})

    async def on_get_state(self, req: Request) -> None:
        me = await self._me(logged_in=False)
        self.ok(req, {"since": me.state_since.isoformat()}, state=me.state.code.value)

    async def on_ping(self, req: Request) -> None:
        self.ok(req, sub_mark="pong")

    async def on_call(self, req: Request) -> None:
        await self.services.calls.handle(await self._me(), req, self)

    async def on_ice(self, req: Request) -> None:
        """``iceServers``: a fresh TURN credential (the plugin asks at ``iceRenewIn``)."""
        me = await self._me(logged_in=False)
        self.ok(req, self.services.turn.payload(f"agent-{me.id}", self.s.now()))

    handlers: ClassVar[Mapping[str, Handler]] = {
        "auth": on_auth,
        "pickUpSession": on_pick_up,
        "chatClose": on_chat_close,
        "sendMessage": on_send,
        "transferSession": on_transfer,
        "setAgentState": on_set_state,
        "logout": on_logout,
        "sessionCount": on_session_count,
        "sessionState": on_session_state,
        "getState": on_get_state,
        "ping": on_ping,
        "iceServers": on_ice,
        **dict.fromkeys((*CALL_MARKS, "signal", "inviteShare", "takePhoto", "mediaFailed"), on_call),
        **dict.fromkeys(SUPERVISE_MARKS, on_call),  # issue 20: kefu.server.supervise
    }


class VisitorConnection(Connection):
    """``/ws/visitor``: a visitor's page or :class:`kefu.visitor.Visitor`."""

    __slots__ = ("visitor",)

    api = VISITOR_API
    first_mark = "hello"

    def __init__(self, ws: WebSocket, services: Services) -> None:
        super().__init__(ws, services)
        self.visitor: Visitor | None = None

    async def closed(self) -> None:
        await super().closed()
        if self.visitor is not None and self.authenticated:
            await self.services.calls.member_gone(MemberKind.visitor, self.visitor.name)

    async def on_request_video(self, req: Request) -> None:
        self.ok(req, await self.services.calls.request_video(self._me()))

    async def on_answer_call(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, AnswerCallParams)
        self.ok(req, await self.services.calls.answer(self._me(), p))

    async def on_join_call(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, CallIdParams)
        self.ok(req, await self.services.calls.join(self._me(), p))

    async def on_hangup(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, CallIdParams)
        self.ok(req, await self.services.calls.hangup_visitor(self._me(), p))

    async def on_signal(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SignalParams)
        await self.services.calls.visitor_signal(self._me(), p)
        self.ok(req)

    async def on_share_answer(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, ShareAnswerParams)
        await self.services.calls.share_answer(self._me(), p)
        self.ok(req)

    async def on_photo_answer(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, PhotoAnswerParams)
        await self.services.calls.photo_answer(self._me(), p)
        self.ok(req)

    async def on_ice(self, req: Request) -> None:
        """``iceServers``: a fresh TURN credential (the visitor asks at ``iceRenewIn``)."""
        self.ok(req, self.services.turn.payload(f"visitor-{self._me().id}", self.s.now()))

    async def on_media_failed(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, MediaFailedParams)
        self.ok(req, await self.services.calls.visitor_media_failed(self._me(), p))

    def _me(self) -> Visitor:
        assert self.visitor is not None
        return self.visitor

    async def on_hello(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, VisitorHelloParams)
        if self.visitor is not None:
            raise ApiError(f"already identified as {self.visitor.name!r}", code=ErrorCode.invalid_state)
        sv = self.services
        visitor, key, (latest, session) = await identify(
            sv.hub, p.name, p.visitorKey, read_also=sv.sessions.resume
        )
        await sv.hub.bus.announce(visitor.recipient)  # present on every node before the reply
        payload = {
            "visitorId": visitor.id,
            "visitorName": visitor.name,
            "visitorKey": key,
            "session": session,
            "lastSeq": latest,
            **sv.turn.payload(f"visitor-{visitor.id}", self.s.now()),  # TURN for the call's media
        }
        self.ok(req, payload)
        self.visitor = visitor
        self.attach(visitor.recipient, min(p.lastSeq, latest))
        sv.calls.member_back(MemberKind.visitor, visitor.name)
        log.info("visitor %s connected", visitor.id)

    async def on_send(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, VisitorMessageParams)
        self.ok(req, await self.services.sessions.visitor_send(self._me(), p.text, p.clientMsgId))

    async def on_close(self, req: Request) -> None:
        self.ok(req, await self.services.sessions.close_by_visitor(self._me()))

    async def on_ping(self, req: Request) -> None:
        self.ok(req, sub_mark="pong")

    handlers: ClassVar[Mapping[str, Handler]] = {
        "hello": on_hello,
        "sendMessage": on_send,
        "closeSession": on_close,
        "ping": on_ping,
        "requestVideo": on_request_video,
        "answerCall": on_answer_call,
        "joinCall": on_join_call,
        "hangup": on_hangup,
        "signal": on_signal,
        "shareAnswer": on_share_answer,
        "photoAnswer": on_photo_answer,
        "iceServers": on_ice,
        "mediaFailed": on_media_failed,
    }
