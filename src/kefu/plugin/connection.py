"""One SDK connection to the plugin's control server.

Theory of operation
-------------------
The handshake was checked already (:mod:`kefu.plugin.security`); a browser
came from an allowed Origin, any other client sent no Origin. Then:

1. A non-browser client must pair: its first message, within the hello
   timeout, is ``hello`` with the token of ``plugin.token``. Anything else,
   a wrong token, or pairing locked after repeated wrong tokens: an error
   (``unauthenticated`` / ``rate_limited``) and close 1008. Until then no
   other message is answered. A browser needs no token; ``hello`` is
   answered for it too (the protocol version).
2. A paired client becomes the controller, unless another one controls the
   plugin (and ``--allow-many`` is off): ``controller_busy``, close 1008; the
   first controller is not disturbed.
3. Every frame is untrusted. A binary frame, a message over 64 KiB, bad JSON,
   a bad envelope or parameters, an unknown mark, a request id still in
   flight, too many messages: each is answered with an error in the spec's
   form and the connection stays open. Every frame, text or binary, counts
   toward the rate limit; over it, a request is answered ``rate_limited``
   under its id, and frames without an id only once per flood. Frames over the socket layer's limit
   (``max_frame``, 2 MiB) close it with 1009.
4. Each good request runs in its own task (a login may take seconds while
   the window APIs answer at once). Every message to the client goes through
   one queue and one writer, so pushes keep their order; a client that does
   not read closes with 1008 when the queue is full.

The connection knows the plugin only through :class:`ConnectionHost` (what
it asks of it), which :class:`kefu.plugin.app.Plugin` implements: the plugin
imports this module, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kefu import __version__
from kefu.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Request,
    encode,
    error_message,
    reply_message,
)
from kefu.protocol.close import CloseCode
from kefu.protocol.errors import DEFAULT_LANG, localize
from kefu.protocol.plugin_api import PLUGIN_API, HelloParams
from kefu.protocol.server_session import Limits, ServerSession
from kefu.protocol.wire import Json

from .security import PairingGuard, PairingToken
from .settings import PluginSettings

__all__ = ["CLOSE_POLICY", "ConnectionHost", "ControlConnection"]

log = logging.getLogger("kefu.plugin.connection")

CLOSE_POLICY = CloseCode.policy
CLOSE_GOING_AWAY = CloseCode.going_away


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class ConnectionHost(Protocol):
    """What a connection needs of the plugin (:class:`kefu.plugin.app.Plugin`)."""

    settings: PluginSettings
    clock: Callable[[], float]
    token: PairingToken
    guard: PairingGuard
    #: The logged-in agent (``hello``'s reply), None before a login.
    agent: dict[str, Any] | None
    state: str

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    def attach(self, conn: ControlConnection) -> bool: ...
    def detach(self, conn: ControlConnection) -> None: ...
    def greet(self, conn: ControlConnection) -> None: ...
    def current_call(self) -> Json | None: ...
    def set_video_bar(self, visible: bool) -> None: ...
    async def handle(self, conn: ControlConnection, req: Request) -> None: ...


class ControlConnection:
    """One client of the control server (see the module's docstring)."""

    def __init__(self, plugin: ConnectionHost, ws: ServerConnection, *, browser: bool) -> None:
        self.plugin = plugin
        self.ws = ws
        self.browser = browser
        self.paired = browser
        self.lang = DEFAULT_LANG  # of the error messages: the hello's lang (kefu.protocol.errors.localize)
        self.controller = False
        self._out: asyncio.Queue[Json | _Close] = asyncio.Queue(maxsize=plugin.settings.max_outbound)
        self._closing = False
        s = plugin.settings
        limits = Limits(rate=s.rate_limit, window=s.rate_window, quiet_floods=True, inflight=True)
        self.session = ServerSession(
            PLUGIN_API,
            limits,
            first_mark="hello",
            first_closes=True,
            first_hint="the first message must be hello with the pairing token",
            authenticated=browser,  # a page from an allowed Origin needs no token
        )

    def __repr__(self) -> str:
        kind = "browser" if self.browser else "client"
        return f"<ControlConnection {kind} {self.ws.remote_address}>"

    # --- sending

    def send(self, msg: Json) -> None:
        """Queue ``msg`` for the client; dropped once the connection is closing."""
        if self._closing:
            return
        error = msg.get("error")
        if isinstance(error, dict) and self.lang != "en":
            msg = {**msg, "error": localize(error, self.lang)}
        try:
            self._out.put_nowait(msg)
        except asyncio.QueueFull:
            log.warning("%r does not read its messages; closing it", self)
            self._closing = True
            self.plugin.spawn(self.ws.close(CLOSE_POLICY, "too slow"))

    def reply(self, msg: Json) -> None:
        """Send a reply: it carries the agent's state code for the v190307 callback."""
        if "state" not in msg:
            msg["state"] = self.plugin.state
        self.send(msg)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after every queued message is sent."""
        if self._closing:
            return
        self._closing = True
        try:
            self._out.put_nowait(_Close(code, reason))
        except asyncio.QueueFull:
            self.plugin.spawn(self.ws.close(code, reason))

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, _Close):
                    await self.ws.close(item.code, item.reason)
                    return
                await self.ws.send(encode(item))
        except ConnectionClosed:
            return

    # --- receiving

    async def run(self) -> None:
        writer = asyncio.create_task(self._writer(), name="kefu-plugin-writer")
        try:
            if self.browser:
                if not self.plugin.attach(self):
                    self._refuse_busy(None)
                    return
                self.plugin.greet(self)
            elif not await self._pair():
                return
            async for raw in self.ws:
                await self._on_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            self.plugin.detach(self)
            if not self._closing:
                self._closing = True
            with contextlib.suppress(asyncio.QueueFull):
                self._out.put_nowait(_Close(1000, ""))
            # let queued messages (an error before a close) reach the client
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _pair(self) -> bool:
        """Step 1 for a client without Origin: the first message is ``hello`` with the token."""
        try:
            async with asyncio.timeout(self.plugin.settings.hello_timeout):
                raw = await self.ws.recv()
        except TimeoutError:
            self.send(
                error_message("hello", ErrorCode.unauthenticated, "send hello with the pairing token first")
            )
            self.close(CLOSE_POLICY, "unauthenticated")
            return False
        verdict = self.session.receive(raw, self.plugin.clock())
        req = verdict.request
        if req is None or not isinstance(req.params, HelloParams):
            if verdict.reply is not None:
                self.send(verdict.reply)
            self.close(verdict.close or CloseCode.policy, verdict.reason)
            return False
        self._hello(req.params)
        guard = self.plugin.guard
        locked = guard.locked_for()
        if locked > 0:
            self.send(
                error_message(
                    "hello",
                    ErrorCode.rate_limited,
                    f"pairing is locked for {locked:.0f} s after repeated wrong tokens",
                    rid=req.id,
                )
            )
            self.close(CLOSE_POLICY, "rate_limited")
            return False
        if not self.plugin.token.matches(req.params.token):
            if req.params.token is not None:
                guard.failed()
            log.warning("%r: pairing refused (%s token)", self, "wrong" if req.params.token else "no")
            self.send(
                error_message(
                    "hello",
                    ErrorCode.unauthenticated,
                    "wrong or missing pairing token; read it from the plugin's plugin.token",
                    rid=req.id,
                )
            )
            self.close(CLOSE_POLICY, "unauthenticated")
            return False
        self.paired = self.session.authenticated = True
        if not self.plugin.attach(self):
            self._refuse_busy(req.id)
            return False
        self.send(self._hello_reply(req.id))
        self.plugin.greet(self)
        return True

    def _refuse_busy(self, rid: str | None) -> None:
        log.warning("%r refused: another client controls the plugin", self)
        self.send(
            error_message(
                "hello" if rid is not None else "client",
                ErrorCode.controller_busy,
                "another client controls the plugin; close it first, or start the plugin with --allow-many",
                rid=rid,
            )
        )
        self.close(CLOSE_POLICY, "controller_busy")

    def _hello(self, params: HelloParams) -> None:
        """What a hello asks for: the language of errors, the page's videoBarVisible."""
        if params.lang is not None:
            self.lang = params.lang
        if params.videoBarVisible is not None:
            self.plugin.set_video_bar(params.videoBarVisible)

    def _hello_reply(self, rid: str) -> Json:
        """The protocol version, and where the agent is: who (None before a
        login), its state code and the call it is in (``currentCall``, None out
        of any), for a page reloaded mid-call."""
        payload = {
            "version": PROTOCOL_VERSION,
            "plugin": __version__,
            "browser": self.browser,
            "agent": self.plugin.agent,
            "state": self.plugin.state,
            "currentCall": self.plugin.current_call(),
        }
        return reply_message("hello", "success", payload, rid=rid, state=self.plugin.state)

    async def _on_frame(self, raw: str | bytes) -> None:
        if self._closing:
            return
        verdict = self.session.receive(raw, self.plugin.clock())
        if verdict.reply is not None:
            if verdict.limited:
                self.reply(verdict.reply)  # with the agent's state, as every answer to a request
            else:
                error = verdict.reply.get("error", {})
                log.info("%r: bad request: %s %s", self, error.get("code"), error.get("msg"))
                self.send(verdict.reply)
        req = verdict.request
        if req is None:
            return
        if req.mark == "hello":
            if isinstance(req.params, HelloParams):
                self._hello(req.params)
            self.send(self._hello_reply(req.id))
            self.session.finished(req.id)
            return
        self.plugin.spawn(self._dispatch(req))

    async def _dispatch(self, req: Request) -> None:
        try:
            await self.plugin.handle(self, req)
        except Exception:
            log.exception("%s failed", req.mark)
            self.reply(error_message(req.mark, ErrorCode.internal, rid=req.id))
        finally:
            self.session.finished(req.id)
