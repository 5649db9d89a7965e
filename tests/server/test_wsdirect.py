"""Frames written at once (D78) on a real uvicorn sans-I/O socket and a real
client: they keep their order with frames sent the ASGI way, a socket that is
not writable (a client that does not read) is never written directly, nor one
closed; an outbox sends a reply or an in-order push to an idle connection
with no task, and a gap still goes through its queue and the hub."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect

from kefu.server.hub import AGENT_PREFIX, VISITOR_PREFIX
from kefu.server.outbox import Outbox
from kefu.server.runner import _Server  # uvicorn's server with a `ready` event
from kefu.server.wsdirect import DirectSend
from tests.server.test_outbox import FakeHub, R

Body = Callable[[WebSocket, DirectSend], Awaitable[None]]


class Rig:
    """A uvicorn server (sans-I/O WebSockets) whose one socket runs ``body``."""

    def __init__(self) -> None:
        self.body: Body | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.url = ""
        self.port = 0

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        direct = DirectSend.of(ws)
        assert direct is not None and self.body is not None
        try:
            await self.body(ws, direct)
            self.done.set_result(None)
        except BaseException as exc:
            self.done.set_exception(exc)
            raise


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(r.app, ws="websockets-sansio", lifespan="off", log_config=None, interface="asgi3")
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.ready.wait()
    r.port = sock.getsockname()[1]
    r.url = f"ws://127.0.0.1:{r.port}/"
    yield r
    server.should_exit = True
    await task


async def read_all(client: ClientConnection) -> list[str]:
    out = []
    async for msg in client:
        assert isinstance(msg, str)
        out.append(msg)
    return out


async def test_frames_written_at_once_keep_their_order_with_asgi_ones(rig: Rig) -> None:
    async def body(ws: WebSocket, direct: DirectSend) -> None:
        for i in range(60):
            if i % 3:
                assert direct.text(f"m{i}")
            else:
                await ws.send_text(f"m{i}")
        await ws.close(1000)
        assert not direct.text("after the close")  # nothing written

    rig.body = body
    async with connect(rig.url) as client:
        got = await read_all(client)
    await rig.done
    assert got == [f"m{i}" for i in range(60)]


async def test_a_socket_not_writable_is_left_to_the_asgi_path(rig: Rig) -> None:
    """The client does not read: the transport's buffer fills, ``text`` stops
    writing, and ``ws.send_text`` waits until the client reads again."""
    big = "x" * 65536
    state: dict[str, Any] = {}

    async def body(ws: WebSocket, direct: DirectSend) -> None:
        sock = direct.proto.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # fills sooner
        n = 0
        while direct.text(f"{n:06d}{big}"):
            n += 1
            assert n < 100_000
        state["n"] = n
        state["waiting"].set()
        await ws.send_text("last")  # waits for the transport
        await ws.close(1000)

    state["waiting"] = asyncio.Event()
    rig.body = body
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", rig.port))
    sock.setblocking(False)
    async with connect(rig.url, max_size=None, max_queue=1, sock=sock) as client:
        await state["waiting"].wait()
        got = await read_all(client)
    await rig.done
    n = state["n"]
    assert n > 0
    assert [g[:6] for g in got[:-1]] == [f"{i:06d}" for i in range(n)]
    assert got[-1] == "last"


async def test_an_idle_outbox_sends_at_once_and_a_gap_through_its_queue(rig: Rig) -> None:
    hub = FakeHub("p1", "p2", "p3", "p4")

    async def body(ws: WebSocket, direct: DirectSend) -> None:
        services: Any = SimpleNamespace(hub=hub)
        box = Outbox(ws, services, 100)
        box.recipient = R
        box.start()
        box.reply({"r": "a"})
        box.offer(hub.stored[0])
        assert box._task is None and box._items is None  # written at once: no task, no queue
        assert box.last_sent == 1
        box.offer(hub.stored[2])  # p2 is missing: queued, read from the hub by the task
        box.reply({"r": "b"})  # after what is queued
        assert box._task is not None
        await box._task
        box.offer(hub.stored[1])  # sent already: dropped
        box.offer(hub.stored[3])
        assert box._task is None and box.last_sent == 4
        box.close(1000, "bye")
        assert box._task is not None
        await box._task

    rig.body = body
    async with connect(rig.url) as client:
        got = await read_all(client)
    await rig.done
    assert got == ['{"r":"a"}', "p1", "p2", "p3", '{"r":"b"}', "p4"]


async def test_the_servers_sockets_write_at_once(server: Any) -> None:
    """``/ws/visitor`` and ``/ws/agent`` of a real server have a direct sender
    (the ASGI ``send`` reaches uvicorn's protocol unwrapped)."""
    agent = await server.agent("ann")
    visitor = await server.visitor("vic")
    bus = server.services.hub.bus
    sinks = [
        bus.local_sink(r)
        for r in (*bus.local_recipients(AGENT_PREFIX), *bus.local_recipients(VISITOR_PREFIX))
    ]
    assert len(sinks) == 2
    for sink in sinks:
        assert isinstance(sink, Outbox) and sink._direct is not None
    assert agent.auth["subMark"] == "success" and visitor is not None
