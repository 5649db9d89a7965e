"""What the server's two sockets share: ``/ws/agent`` (the plugin,
:mod:`.agent_connection`) and ``/ws/visitor`` (:mod:`.visitor_connection`).

Theory of operation
-------------------
The handler's task reads: every frame is rate-limited, size-checked and
decoded by :func:`kefu.protocol.wire.decode_request` against the socket's API;
a bad one is answered with an error in the spec's form and the connection
stays up. The :class:`~kefu.server.outbox.Outbox` writes: a reply or the next
push for an idle, writable socket is written at once (D78); the rest goes
through one bounded queue, sent by a task of its own while the queue is not
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
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from starlette.websockets import WebSocket, WebSocketState

from kefu.protocol import ApiError, ErrorCode, InvalidTransition
from kefu.protocol.close import CloseCode
from kefu.protocol.server_session import Limits, ServerSession
from kefu.protocol.wire import Api, Json, Request, error_message, reply_message

from .auth import normalize_origin
from .outbox import CLOSE_POLICY, Outbox
from .services import Services
from .settings import Settings, utcnow
from .store import storage_full

__all__ = ["Connection", "Handler", "limits_of"]

log = logging.getLogger("kefu.server.connection")

_LIMITS: dict[int, tuple[Settings, Limits]] = {}


def limits_of(settings: Settings) -> Limits:
    """The sockets' limits from the settings (one object per settings, not per connection)."""
    cached = _LIMITS.get(id(settings))
    if cached is None or cached[0] is not settings:
        limits = Limits(
            rate=settings.rate_limit_messages,
            window=settings.rate_limit_window,
            strikes=settings.rate_limit_strikes,
            max_bytes=settings.max_message_bytes,
            oversize_strikes=settings.oversize_strikes,
        )
        cached = _LIMITS[id(settings)] = (settings, limits)
    return cached[1]


#: A request's handler: a method of the connection's class, called with the connection.
Handler = Callable[[Any, Request], Awaitable[None]]


class Connection:
    """What both sockets share: limits, decoding, dispatch, errors.

    Memory (thousands of idle visitors): ``__slots__``, and the handlers are one
    table per class, not bound methods per connection."""

    __slots__ = ("outbox", "services", "session", "settings", "ws")

    api: ClassVar[Api]
    first_mark: ClassVar[str]
    handlers: ClassVar[Mapping[str, Handler]] = {}

    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.outbox = Outbox(ws, services, self.settings.outbound_queue)
        self.session = ServerSession(self.api, limits_of(self.settings), first_mark=self.first_mark)

    @property
    def authenticated(self) -> bool:
        """The first message (``auth`` / ``hello``) succeeded."""
        return self.session.authenticated

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
        deadline: float | None = loop.time() + self.settings.auth_timeout
        while not self.outbox.closing:
            if self.authenticated:
                deadline = None
            # idle (most connections, most of the time): one coroutine frame less
            msg = dict(await self.ws.receive()) if deadline is None else await self._receive(deadline)
            if msg is None:
                log.info("no %s within %.1f s: closing", self.first_mark, self.settings.auth_timeout)
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
            if self.outbox.pending:
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

    async def _frame(self, text: str | None, data: bytes | None) -> None:
        clock = self.settings.clock  # the wall clock without a datetime, unless a test's (D80)
        now = time.time() if clock is utcnow else clock().timestamp()
        verdict = self.session.receive(text if text is not None else data or b"", now)
        if verdict.reply is not None:
            self.outbox.reply(verdict.reply)
        if verdict.close is not None:
            if verdict.close == CloseCode.policy:
                log.warning("%s floods: closing with 1008", self.outbox.recipient or "a client")
            self.outbox.close(verdict.close, verdict.reason)
        elif verdict.request is not None:
            await self.dispatch(verdict.request)

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
        retry = getattr(exc, "retry_after", None)
        self.outbox.reply(
            error_message(req.mark, exc.code, exc.msg, rid=req.id, state=state, retry_after=retry)
        )

    def attach(self, recipient: str, last_seq: int) -> None:
        """Become the recipient's connection; replay what it missed after ``last_seq``."""
        self.outbox.recipient = recipient
        self.outbox.last_sent = last_seq
        old = self.services.hub.bus.attach(recipient, self.outbox)
        if isinstance(old, Outbox):
            old.replaced()
        self.outbox.catch_up()
        self.session.authenticated = True
