"""``kefu.visitor.Visitor``: a visitor, in Python, for tests, demos and load.

::

    async with Visitor("http://127.0.0.1:8600", "v1") as v:
        await v.send_message("hello")           # opens a session, queued
        ev = await v.next_event("sessionAssigned")
        reply = await v.next_event("message")   # the agent's answer
        await v.close_session()

The visitor keeps its ``visitorKey`` (the server gives it on the first
``hello``) and the last push ``seq``, so :meth:`Visitor.reconnect` comes back
as the same visitor and gets exactly the pushes it missed.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from kefu.protocol.wire import Json

from .link import Link

__all__ = ["Visitor"]


def ws_url(server: str, path: str) -> str:
    """``http://host:port`` (or ``ws://…``) → ``ws://host:port/path``."""
    base = server.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    return base + path


class Visitor:
    def __init__(
        self, server: str, name: str, *, visitor_key: str | None = None, timeout: float = 10.0
    ) -> None:
        self.server = server
        self.name = name
        self.visitor_key = visitor_key
        self.visitor_id: str | None = None
        self.session: Json | None = None  # the open session the last hello reported
        self.link = Link(ws_url(server, "/ws/visitor"), timeout=timeout)
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self.link.last_seq

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
        return payload

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
        """The next push (``queue``, ``sessionAssigned``, ``message``, ``sessionClosed`` …),
        waiting at most the visitor's ``timeout``."""
        return await self.link.next_event(sub_mark)

    async def disconnect(self) -> None:
        """Close the socket, keeping the visitor's session on the server."""
        await self.link.disconnect()

    async def aclose(self) -> None:
        self._closed = True
        await self.link.disconnect()

    async def __aenter__(self) -> Visitor:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
