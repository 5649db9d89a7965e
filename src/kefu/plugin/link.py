"""The agent's link to the server: one WebSocket to ``/ws/agent``.

Theory of operation
-------------------
After a login the plugin holds a token (in memory only). :meth:`AgentLink.start`
opens the socket, sends ``auth`` with the token and the last ``seq`` seen,
and waits for ``auth``/``success``. From then on one task reads the socket:

- a message with an ``id`` answers a request sent by :meth:`AgentLink.request`;
  the server answers each request once (docs/calls.md: a call's later
  progress comes as ``state`` pushes naming the API and the callback);
- a message with a ``seq`` is a push; a ``seq`` at or below the last one seen
  is a duplicate and is dropped, so a push reaches the plugin exactly once.

When the socket breaks, every request in flight is answered ``upstream_down``
(it may or may not have run on the server), the listener hears
:meth:`LinkListener.link_down` once, and the task reconnects with jittered
exponential backoff. The server replays every push after the ``lastSeq``
sent; the listener hears :meth:`LinkListener.link_up` (recovered) before the
replay. The link does not reconnect when the server refuses the token
(``unauthenticated`` / ``token_expired``, close 1008), when the login ends
while connected (expired, revoked, account disabled: close 4003), when a newer login of
the same agent replaced it (close 4001: it must not fight over the agent), or
after a successful ``logout``: the listener hears
:meth:`LinkListener.link_ended`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from ssl import SSLContext
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from kefu.protocol import ApiError, ErrorCode, ProtocolError
from kefu.protocol.client_session import Answer, ClientSession, Dropped, Push, Stray, error_for, reply_error
from kefu.protocol.close import CloseCode
from kefu.protocol.wire import Json

__all__ = ["CLOSE_REPLACED", "AgentLink", "LinkListener"]

log = logging.getLogger("kefu.plugin.link")

#: The server closes the older link of an agent who logged in again elsewhere.
CLOSE_REPLACED = CloseCode.replaced
_AUTH_ID = "a1"


class LinkListener(Protocol):
    """What the plugin hears from its link. Called on the event loop, in order."""

    def link_up(self, auth: Json, recovered: bool) -> None: ...

    def link_down(self, reason: str, code: int | None) -> None: ...

    def link_ended(self, reason: str, code: int | None) -> None: ...

    def link_push(self, msg: Json) -> None: ...


OnMessage = Callable[[Json], None]


def _ignore(msg: Json) -> None:
    """The auth request's handler: its answer is read in place."""


class _AuthRefused(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("msg", "authentication refused"))
        self.error = error


class AgentLink:
    """One agent's link to the server (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        token: str,
        listener: LinkListener,
        *,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        backoff_min: float = 0.5,
        backoff_max: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        ssl: SSLContext | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._ssl = ssl
        self.url = url
        self._token = token
        self._listener = listener
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._rng = rng
        self._ws: ClientConnection | None = None
        self._session: ClientSession[OnMessage] = ClientSession(prefix="p")
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._ended: str | None = None
        self.auth: Json = {}

    @property
    def last_seq(self) -> int:
        """The last push ``seq`` seen: sent in ``auth`` to resume after a break."""
        return self._session.last_seq

    @property
    def up(self) -> bool:
        return self._ws is not None and not self._closing

    # --- lifecycle

    async def start(self, login: Json | None = None) -> Json:
        """Connect and authenticate once; raise :class:`ApiError` on failure.

        Returns the server's ``auth`` reply. The pushes the server replays for
        ``lastSeq`` 0 are history (the reply carries the present: state,
        sessions), so the link starts from the reply's ``lastSeq``. ``login``
        adds to this first ``auth`` only (not to a reconnect's): what the
        plugin holds as it logs in (``mediaCalls``, docs/calls.md).
        """
        try:
            ws, auth = await self._open(login)
        except _AuthRefused as exc:
            refused = reply_error({"error": exc.error}, default=ErrorCode.unauthenticated)
            assert refused is not None
            raise refused.exception() from None
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed, ProtocolError) as exc:
            raise ApiError(
                f"cannot reach the server's agent socket ({type(exc).__name__})", code=ErrorCode.upstream_down
            ) from None
        payload = auth.get("payload")
        self._session.resume_from(
            payload.get("lastSeq") if isinstance(payload, dict) else None, follow_back=False
        )
        self._ws = ws
        self.auth = auth
        self._task = asyncio.create_task(self._run(ws), name="kefu-plugin-link")
        return auth

    async def close(self) -> None:
        """Close the link for good (logout, quit, a new login)."""
        self._closing = True
        task, self._task = self._task, None
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close(CloseCode.normal, "closed by the plugin")
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_pending("the plugin closed its link to the server")

    # --- requests

    @property
    def token(self) -> str:
        """The agent's login token (the REST API takes it as ``Authorization: Bearer``)."""
        return self._token

    def new_id(self) -> str:
        """A fresh request id, for a caller that must know it before the answer can come."""
        return self._session.new_id()

    async def request(
        self,
        mark: str,
        params: dict[str, Any],
        on_message: Callable[[Json], None],
        *,
        uid: str | None = None,
    ) -> str:
        """Send ``mark`` to the server; its answer goes to ``on_message`` (with
        the link's own request id ``uid``, which the server's later ``state``
        pushes name as ``requestId``). Returns that id.

        Raises :class:`ApiError` ``upstream_down`` when the link is down.
        Without a first answer within the request timeout, ``on_message``
        gets a ``timeout`` error and later answers are dropped.
        """
        ws = self._ws
        if ws is None or self._closing:
            raise ApiError(code=ErrorCode.upstream_down)
        loop = asyncio.get_running_loop()
        uid, text = self._session.request(
            mark, params, on_message, rid=uid, deadline=loop.time() + self._request_timeout
        )
        self._arm(loop)
        try:
            await ws.send(text)
        except ConnectionClosed:
            self._session.forget(uid)
            raise ApiError(code=ErrorCode.upstream_down) from None
        return uid

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer, at the earliest deadline of a request not answered yet."""
        due = self._session.next_deadline()
        if self._timer is not None and (due is None or self._timer.when() <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(due, self._expire, loop) if due is not None else None

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        for p in self._session.expire(loop.time()):
            log.warning("no answer from the server to %s within %.1f s", p.mark, self._request_timeout)
            p.tag(error_for(p, ErrorCode.timeout, "the server did not answer in time"))
        self._arm(loop)

    def _fail_pending(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for p in self._session.fail_all():
            p.tag(error_for(p, ErrorCode.upstream_down, why))

    # --- the socket

    async def _open(self, login: Json | None = None) -> tuple[ClientConnection, Json]:
        tls: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}
        ws = await connect(
            self.url,
            **tls,
            open_timeout=self._open_timeout,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            compression=None,
            max_size=4 * 1024 * 1024,
            user_agent_header="kefu-plugin",
        )
        try:
            auth = {**(login or {}), "token": self._token, "lastSeq": self.last_seq}
            _, text = self._session.request("auth", auth, _ignore, rid=_AUTH_ID)
            try:
                await ws.send(text)
                async with asyncio.timeout(self._open_timeout):
                    got = self._session.receive(await ws.recv())
            finally:
                self._session.forget(_AUTH_ID)
            if not isinstance(got, Answer) or got.pending.rid != _AUTH_ID:
                raise ProtocolError("the server's first message is not the auth reply")
            reply = got.msg
            if reply.get("subMark") != "success":
                error = reply.get("error")
                raise _AuthRefused(error if isinstance(error, dict) else {})
        except BaseException:
            await ws.close()
            raise
        return ws, reply

    async def _run(self, ws: ClientConnection) -> None:
        while True:
            code, reason = await self._read(ws)
            self._ws = None
            if self._closing:
                return
            ended = self._ended or self._end_reason(code, reason)
            self._fail_pending("the link to the server broke")
            if ended is not None:
                log.info("link to the server ended: %s (%s)", ended, code)
                self._ended = ended
                self._listener.link_ended(ended, code)
                return
            log.warning("link to the server broke (%s %s); reconnecting", code, reason)
            self._listener.link_down("connection lost", code)
            reconnected = await self._reconnect()
            if reconnected is None:
                return
            ws = reconnected

    @staticmethod
    def _end_reason(code: int | None, reason: str) -> str | None:
        if code == CLOSE_REPLACED:
            return "replaced"
        if code in (CloseCode.policy, CloseCode.login_ended):
            return reason or "unauthenticated"
        return None

    async def _reconnect(self) -> ClientConnection | None:
        attempt = 0
        while not self._closing:
            delay = min(self._backoff_max, self._backoff_min * 2**attempt)
            attempt += 1
            # equal jitter: between half the delay and the delay
            await asyncio.sleep(delay * (0.5 + self._rng() / 2))
            try:
                ws, auth = await self._open()
            except _AuthRefused as exc:
                code = exc.error.get("code")
                self._ended = code if isinstance(code, str) else "unauthenticated"
                self._fail_pending("the server refused the link's token")
                self._listener.link_ended(self._ended, CloseCode.policy)
                return None
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed, ProtocolError) as exc:
                log.debug("reconnect attempt %d failed: %s", attempt, exc)
                continue
            if self._closing:
                await ws.close()
                return None
            payload = auth.get("payload")
            before = self.last_seq
            if self._session.resume_from(
                payload.get("lastSeq") if isinstance(payload, dict) else None, follow_back=True
            ):
                log.warning("the server's seq went back from %d to %d; following it", before, self.last_seq)
            self._ws = ws
            self.auth = auth
            log.info("link to the server is back after %d attempt(s)", attempt)
            self._listener.link_up(auth, True)
            return ws
        return None

    async def _read(self, ws: ClientConnection) -> tuple[int | None, str]:
        try:
            async for raw in ws:
                try:
                    self._dispatch(raw)
                except Exception:
                    log.exception("handling a message from the server failed")
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    def _dispatch(self, raw: str | bytes) -> None:
        got = self._session.receive(raw)
        if isinstance(got, Answer):
            if got.pending.mark == "logout" and got.msg.get("subMark") == "success":
                # the server may close the socket right after: that is the end, not a break
                self._ended = "logout"
            got.pending.tag(got.msg)
        elif isinstance(got, Push):
            if got.gap:
                log.warning("push seq jumped to %d", got.seq)
            self._listener.link_push(got.msg)
        elif isinstance(got, Stray):
            log.debug("dropped an answer to an unknown or finished request %s", got.rid)
        elif isinstance(got, Dropped):
            # a duplicate push (it has a seq) is expected after a replay; anything else is not
            log.log(
                logging.DEBUG if got.seq is not None else logging.WARNING, "dropped a message: %s", got.why
            )
