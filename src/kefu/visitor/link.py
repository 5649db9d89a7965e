"""A client of one kefu server socket: requests and their replies, pushes in order.

:class:`Link` speaks the envelope of :mod:`kefu.protocol.wire` over one
WebSocket. A request gets a fresh ``id`` and waits for the reply with that
``id``. Every other message is a push: one with a ``seq`` at or below the
last seen is a duplicate and dropped (counted in :attr:`Link.duplicates`), one
past a gap is counted in :attr:`Link.gaps`; the rest wait in an inbox that
:meth:`Link.next_event` takes from, by ``subMark`` or any test, in arrival
order. :attr:`Link.last_seq` survives :meth:`Link.connect` again, so a
reconnect resumes where the last connection stopped.

Listeners (:meth:`Link.on_push`, :meth:`Link.on_close`) see every push as it
is delivered and every end of a connection; they are synchronous, and one
that raises is logged (the reader goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kefu.protocol import ApiError
from kefu.protocol.client_session import Answer, ClientSession, Push, Stray, reply_error
from kefu.protocol.wire import Json

__all__ = ["Link", "LinkClosed", "RequestFailed"]

log = logging.getLogger(__name__)


class LinkClosed(ConnectionError):
    """The socket closed (``code`` and ``reason`` as the server sent them)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the connection closed ({code} {reason})".strip())
        self.code = code
        self.reason = reason


class RequestFailed(ApiError):
    """The server answered a request with an error; :attr:`reply` is the whole message."""

    def __init__(self, reply: Json) -> None:
        error = reply_error(reply)
        assert error is not None
        super().__init__(error.msg or "", code=error.code)
        self.reply = reply
        self.state: str | None = error.state


class Link:
    """``ssl``: the context of a ``wss://`` URL (a bank's own CA, :func:`kefu.tls.client_context`);
    None: the system's CAs."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_size: int = 4 * 1024 * 1024,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.ssl = ssl
        self.timeout = timeout
        self.max_size = max_size
        self.ws: ClientConnection | None = None
        self._session: ClientSession[asyncio.Future[Json]] = ClientSession()
        self.history: list[Json] = []  # every push delivered, in order
        self.close_code: int | None = None
        self.close_reason = ""
        self._inbox: list[Json] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._push_listeners: list[Callable[[Json], None]] = []
        self._close_listeners: list[Callable[[int | None, str], None]] = []

    @property
    def last_seq(self) -> int:
        """The last push ``seq`` seen; a reconnect resumes after it (tests set it)."""
        return self._session.last_seq

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self._session.last_seq = seq

    @property
    def duplicates(self) -> int:
        """Pushes dropped as seen already."""
        return self._session.duplicates

    @property
    def gaps(self) -> int:
        """Pushes that came after a gap in ``seq``."""
        return self._session.gaps

    def on_push(self, listener: Callable[[Json], None]) -> Callable[[], None]:
        """Call ``listener(msg)`` for every push delivered (after duplicates are
        dropped), before it waits in the inbox. Returns an unsubscribe function."""
        self._push_listeners.append(listener)
        return lambda: self._push_listeners.remove(listener) if listener in self._push_listeners else None

    def on_close(self, listener: Callable[[int | None, str], None]) -> Callable[[], None]:
        """Call ``listener(code, reason)`` whenever a connection ends (the server
        closed it, the network dropped it, or :meth:`disconnect`)."""
        self._close_listeners.append(listener)
        return lambda: self._close_listeners.remove(listener) if listener in self._close_listeners else None

    def _notify(self, listeners: list[Callable[..., None]], *args: object) -> None:
        for listener in list(listeners):
            try:
                listener(*args)
            except Exception:
                log.exception("a link listener failed")

    @property
    def connected(self) -> bool:
        return self.ws is not None and self._reader is not None and not self._reader.done()

    async def connect(self) -> None:
        await self.disconnect()
        self.close_code, self.close_reason = None, ""
        tls: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
        self.ws = await connect(
            self.url,
            **tls,
            open_timeout=self.timeout,
            compression=None,
            max_size=self.max_size,
            proxy=None,
            user_agent_header="kefu-visitor",
        )
        self._reader = asyncio.create_task(self._read(self.ws), name="kefu-link-reader")

    async def disconnect(self, code: int = 1000) -> None:
        """Close the socket (the server keeps the session; :meth:`connect` resumes)."""
        ws, reader = self.ws, self._reader
        self.ws, self._reader = None, None
        if ws is not None:
            await ws.close(code)
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a network failure)."""
        if self.ws is not None:
            self.ws.transport.abort()

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as it is (for testing the server's answers to bad input)."""
        if self.ws is None:
            raise LinkClosed(self.close_code, self.close_reason)
        await self.ws.send(data)

    async def request(
        self, mark: str, params: dict[str, Any] | None = None, *, rid: str | None = None
    ) -> Json:
        """Send a request; return its reply (which may be an error reply)."""
        if self.ws is None:
            raise LinkClosed(self.close_code, self.close_reason)
        fut: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        rid, text = self._session.request(mark, params, fut, rid=rid or None)
        try:
            await self.ws.send(text)
            async with asyncio.timeout(self.timeout):
                return await fut
        except ConnectionClosed:
            raise LinkClosed(self.close_code, self.close_reason) from None
        finally:
            self._session.forget(rid)

    async def call(self, mark: str, params: dict[str, Any] | None = None) -> Json:
        """:meth:`request`, raising :class:`RequestFailed` on an error reply."""
        reply = await self.request(mark, params)
        if reply_error(reply) is not None:
            raise RequestFailed(reply)
        return reply

    async def next_event(
        self, sub_mark: str | None = None, *, where: Callable[[Json], bool] | None = None
    ) -> Json:
        """The oldest push not taken yet that has ``sub_mark`` (or passes ``where``).

        Waits at most the link's ``timeout`` (then :class:`TimeoutError`)."""

        def fits(m: Json) -> bool:
            if sub_mark is not None and m.get("subMark") != sub_mark:
                return False
            return where is None or where(m)

        async with asyncio.timeout(self.timeout):
            while True:
                for i, m in enumerate(self._inbox):
                    if fits(m):
                        return self._inbox.pop(i)
                if not self.connected:
                    raise LinkClosed(self.close_code, self.close_reason)
                self._arrived.clear()
                await self._arrived.wait()

    def pending_events(self) -> list[Json]:
        """Pushes received and not taken yet."""
        return list(self._inbox)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                got = self._session.receive(raw)
                if isinstance(got, Answer):
                    if not got.pending.tag.done():
                        got.pending.tag.set_result(got.msg)
                    continue
                if isinstance(got, Stray):
                    msg = got.msg  # an answer nobody waits for: shown as a push (tests send raw frames)
                elif isinstance(got, Push):
                    msg = got.msg
                    if got.seq is not None:
                        self.history.append(msg)
                else:
                    continue
                self._notify(self._push_listeners, msg)
                self._inbox.append(msg)
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            rcvd = ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else None
            self.close_reason = rcvd.reason if rcvd is not None else ""
            for p in self._session.fail_all():
                if not p.tag.done():
                    p.tag.set_exception(LinkClosed(self.close_code, self.close_reason))
            self._arrived.set()
            self._notify(self._close_listeners, self.close_code, self.close_reason)

    async def wait_closed(self) -> int | None:
        """Wait (at most the link's ``timeout``) until the server closes the socket; return its code."""
        reader = self._reader
        if reader is not None:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(reader)
        return self.close_code
