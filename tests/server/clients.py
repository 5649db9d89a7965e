"""A minimal agent client for the tests: the plugin's side of ``/ws/agent``."""

from __future__ import annotations

import ssl
from typing import Any

from kefu.protocol.wire import Json
from kefu.visitor.link import Link
from tests.conftest import scaled


class AgentClient:
    """``auth`` with a token, then requests and pushes over :class:`Link`."""

    def __init__(
        self, url: str, token: str, *, timeout: float = scaled(5.0), tls: ssl.SSLContext | None = None
    ) -> None:
        self.token = token
        self.link = Link(url, timeout=timeout, ssl=tls)
        self.auth: Json = {}

    @property
    def last_seq(self) -> int:
        return self.link.last_seq

    async def connect(self) -> Json:
        """Connect and authenticate, resuming after the last push seen; return the auth reply."""
        await self.link.connect()
        self.auth = await self.link.request("auth", {"token": self.token, "lastSeq": self.link.last_seq})
        return self.auth

    async def skip_history(self) -> None:
        """Take the replayed pushes up to the auth reply's lastSeq (what happened before)."""
        upto = self.auth["payload"]["lastSeq"]
        while self.link.last_seq < upto or any(m.get("seq", 0) <= upto for m in self.link.pending_events()):
            await self.link.next_event(where=lambda m: m.get("seq", 0) <= upto)

    async def call(self, mark: str, params: dict[str, Any] | None = None) -> Json:
        return await self.link.call(mark, params)

    async def request(self, mark: str, params: dict[str, Any] | None = None) -> Json:
        return await self.link.request(mark, params)

    async def next_event(self, sub_mark: str | None = None, *, mark: str | None = None) -> Json:
        if mark is None:
            return await self.link.next_event(sub_mark)
        return await self.link.next_event(
            sub_mark,
            where=lambda m: m.get("mark") == mark and (sub_mark is None or m.get("subMark") == sub_mark),
        )

    async def disconnect(self) -> None:
        await self.link.disconnect()

    async def aclose(self) -> None:
        await self.link.disconnect()
