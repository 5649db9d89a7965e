"""The server's side of ``/ws/visitor``, played by a test: a real WebSocket
server on 127.0.0.1 that answers ``hello`` and every request (``success``
unless the test says otherwise), records the requests, and pushes what the
test tells it to — the call pushes of docs/calls.md in any order, including
ones the real server would not send (a late ``invited``, a malformed push).

It also relays signalling to a :class:`kefu.media.MediaHub` of the test (the
agent's side), as the server relays it to the agent's plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kefu.media import MediaHub, MediaPeer, NegotiationNeeded
from kefu.media.events import MediaEvent
from kefu.protocol import encode, loads_strict
from kefu.protocol.wire import Json
from tests.conftest import scaled

Answer = Callable[[Json], Json | None]


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[Json] = []
        self.answers: dict[str, Answer] = {}
        self.server: Server | None = None
        self.ws: ServerConnection | None = None
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._connected = asyncio.Event()
        self.url = ""

    async def start(self) -> str:
        self.server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        self.ws = ws
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                msg = loads_strict(raw)
                assert isinstance(msg, dict)
                mark, rid = msg["mark"], msg["id"]
                if mark == "hello":
                    payload = {"visitorId": "vid-1", "visitorName": msg["params"]["name"]}
                    payload |= {"visitorKey": "key-1", "session": None, "lastSeq": 0}
                    await ws.send(
                        encode({"v": 1, "id": rid, "mark": mark, "subMark": "success", "payload": payload})
                    )
                    self._connected.set()  # pushes wait for this
                    continue
                self.requests.append(msg)
                self._changed.set()
                answer = self.answers.get(mark)
                reply = answer(msg) if answer is not None else None
                if reply is None:
                    reply = {"subMark": "success", "payload": {}}
                await ws.send(encode({"v": 1, "id": rid, "mark": mark, **reply}))

    async def push(self, sub_mark: str, payload: Any, within: float = scaled(30.0)) -> None:
        """Push to the visitor, once it has said hello (waiting at most ``within``)."""
        await asyncio.wait_for(self._connected.wait(), within)
        assert self.ws is not None
        msg = {"v": 1, "seq": next(self._seq), "mark": "event", "subMark": sub_mark, "payload": payload}
        await self.ws.send(encode(msg))

    async def call(self, call_id: str, what: str, **detail: Any) -> None:
        await self.push("call", {"callId": call_id, "what": what, **detail})

    async def next_request(
        self, mark: str, where: Callable[[Json], bool] | None = None, within: float = scaled(5.0)
    ) -> Json:
        """The first request (past or coming) with ``mark`` that passes ``where``; taken."""

        async def scan() -> Json:
            while True:
                for i, r in enumerate(self.requests):
                    if r["mark"] == mark and (where is None or where(r)):
                        return self.requests.pop(i)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), within)

    def marks(self) -> list[str]:
        return [r["mark"] for r in self.requests]


def error(code: str, msg: str) -> Json:
    return {"subMark": "error", "error": {"code": code, "msg": msg}}


class HubRelay:
    """Carries signalling between the test's hub (the agent ``agent``) and the
    visitor: the hub's messages become ``signal`` pushes, the visitor's
    ``signal`` requests go to ``hub.peer(visitor).handle``."""

    def __init__(self, peer: ScriptedServer, hub: MediaHub, visitor: str, call_id: str) -> None:
        self.peer, self.hub, self.visitor, self.call_id = peer, hub, visitor, call_id
        self.errors: list[BaseException] = []
        self.side: MediaPeer = hub.add_member(visitor)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._unsubscribe = self.side.events.subscribe(self._on_event)
        self._tasks = [asyncio.ensure_future(self._offers()), asyncio.ensure_future(self._answers())]

    def _on_event(self, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self._queue.put_nowait("negotiate")

    async def _send(self, data: Json) -> None:
        await self.peer.push(
            "signal",
            {"callId": self.call_id, "from": {"kind": "agent", "name": self.hub.local}, "data": data},
        )

    async def _offers(self) -> None:
        while True:
            await self._queue.get()
            try:
                message = await self.side.negotiate()
                if message is not None:
                    await self._send(message)
            except Exception as exc:
                self.errors.append(exc)

    async def _answers(self) -> None:
        while True:
            req = await self.peer.next_request("signal", within=3600)
            assert req["params"]["to"] == {"kind": "agent", "name": self.hub.local}
            try:
                reply = await self.side.handle(req["params"]["data"])
                if reply is not None:
                    await self._send(reply)
            except Exception as exc:
                self.errors.append(exc)

    async def close(self) -> None:
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
