"""One WebSocket from an SDK to the plugin: pairing, requests by id, pushes.

Both SDKs (:class:`~kefu.sdk.imclient.IMClient` and
:class:`~kefu.sdk.client.Client`) sit on this. :meth:`Transport.open`
connects without an ``Origin`` (the SDK is not a browser), sends ``hello``
with the pairing token and returns the plugin's answer, or raises
:class:`~kefu.sdk.events.RequestError` (``unauthenticated``,
``controller_busy``, ``rate_limited``, ``plugin_unreachable``).

:meth:`Transport.request` sends one request and hands every message with its
id to a handler until :func:`~kefu.protocol.plugin_api.is_final`. Messages
without an id are pushes, handed to ``on_push`` in order. When the socket
closes, every request still open gets a ``plugin_unreachable`` error, then
``on_close`` is called once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kefu import __version__
from kefu.protocol import ErrorCode, encode, error_message
from kefu.protocol.client_session import Answer, ClientSession, Dropped, Push, Stray, error_for
from kefu.protocol.plugin_api import is_final
from kefu.protocol.wire import request_message

from .events import RequestError, api_error

__all__ = ["Transport"]

log = logging.getLogger("kefu.sdk")

Json = dict[str, Any]
Handler = Callable[[Json], None]


def _unreachable(msg: str) -> RequestError:
    return RequestError(msg, code=ErrorCode.plugin_unreachable)


class Transport:
    """See the module's docstring."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        on_push: Handler,
        on_close: Callable[[int | None, str], None],
        open_timeout: float = 10.0,
        hello: Json | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self._hello = dict(hello or {})  # more of the hello's params: lang, videoBarVisible
        self._on_push = on_push
        self._on_close = on_close
        self._open_timeout = open_timeout
        self._ws: ClientConnection | None = None
        self._session: ClientSession[Handler] = ClientSession(final=is_final, ordered=False)
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.hello: Json = {}

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._closed

    async def open(self) -> Json:
        try:
            ws = await connect(
                self.url,
                open_timeout=self._open_timeout,
                compression=None,
                max_size=4 * 1024 * 1024,
                user_agent_header=f"kefu-sdk/{__version__}",
            )
        except InvalidStatus as exc:
            body = exc.response.body or b""
            try:
                error = json.loads(body).get("error", {})
            except (ValueError, AttributeError):
                error = {}
            raise _unreachable(
                f"the plugin refused the connection (HTTP {exc.response.status_code}): {error.get('msg', '')}"
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise _unreachable(f"nothing answers on {self.url} ({type(exc).__name__})") from None
        try:
            params: Json = {"client": f"kefu.sdk/{__version__}", **self._hello}
            if self._token is not None:
                params["token"] = self._token
            await ws.send(encode(request_message("hello", params, rid="hello")))
            async with asyncio.timeout(self._open_timeout):
                reply = json.loads(await ws.recv())
        except (ConnectionClosed, TimeoutError, ValueError):
            await ws.close()
            raise _unreachable("the plugin closed the connection during pairing") from None
        if not isinstance(reply, dict) or reply.get("subMark") != "success":
            await ws.close()
            raise api_error(reply if isinstance(reply, dict) else {})
        self._ws = ws
        self.hello = reply
        self._reader = asyncio.create_task(self._read(ws), name="kefu-sdk-reader")
        return reply

    async def request(self, mark: str, params: dict[str, Any] | None, handler: Handler) -> str:
        """Send a request; ``handler`` gets each of its messages. Returns its id."""
        ws = self._ws
        if ws is None or self._closed:
            rid = self._session.new_id()
            handler(error_message(mark, ErrorCode.plugin_unreachable, rid=rid))
            return rid
        rid, text = self._session.request(mark, params, handler)
        try:
            await ws.send(text)
        except ConnectionClosed:
            pending = self._session.forget(rid)
            if pending is not None:
                handler(error_for(pending, ErrorCode.plugin_unreachable))
        return rid

    async def send_raw(self, text: str | bytes) -> None:
        """Send a frame as is (for tests of the plugin's handling of bad input)."""
        if self._ws is None:
            raise _unreachable("not connected")
        await self._ws.send(text)

    async def close(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._closed = True
            for p in self._session.fail_all():
                p.tag(error_for(p, ErrorCode.plugin_unreachable, "the connection to the plugin closed"))
            rcvd = ws.protocol.close_rcvd
            self._on_close(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")

    def _dispatch(self, raw: str | bytes) -> None:
        got = self._session.receive(raw)
        if isinstance(got, Answer):
            got.pending.tag(got.msg)
        elif isinstance(got, Push):
            self._on_push(got.msg)
        elif isinstance(got, Stray):
            log.debug("dropped a message for an unknown request %s", got.rid)
        elif isinstance(got, Dropped):
            log.warning("dropped a message from the plugin: %s", got.why)
