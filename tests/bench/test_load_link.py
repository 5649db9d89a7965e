"""The load generator's connection (`bench.load.Link`, D87) against a real `websockets` server:
whole and fragmented texts reach the handler in order, pings are answered, a close is seen
once, and a send on a closed link says so."""

from __future__ import annotations

import asyncio

import pytest
from bench.load import Link, LinkClosed
from picows import ws_connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError

pytestmark = pytest.mark.timeout(30)


async def test_link_hands_over_whole_and_fragmented_texts_then_the_close() -> None:
    heard: list[str] = []
    pong_ok = asyncio.Event()
    got: asyncio.Queue[str] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("plain")
        await ws.send(["héllo ", "wörld", "!"])  # one message in three frames
        await asyncio.wait_for(await ws.ping(), 5)  # picows answers the server's ping
        pong_ok.set()
        await got.put(str(await ws.recv()))
        await ws.close()

    closes: list[Link] = []
    texts = asyncio.Event()

    def on_text(text: str) -> None:
        heard.append(text)
        if len(heard) == 2:
            texts.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        _, link = await ws_connect(lambda: Link(on_text, closes.append), f"ws://127.0.0.1:{port}/")
        assert isinstance(link, Link)
        await asyncio.wait_for(texts.wait(), 5)
        assert heard == ["plain", "héllo wörld!"]
        await asyncio.wait_for(pong_ok.wait(), 5)
        await link.send("from the client")
        assert await asyncio.wait_for(got.get(), 5) == "from the client"
        await asyncio.wait_for(link.closed(), 5)
    assert closes == [link]
    with pytest.raises(LinkClosed):
        await link.send("too late")


async def test_an_aborted_link_closes_without_a_handshake() -> None:
    server_saw_close = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        with pytest.raises(ConnectionClosedError):  # no close frame: the connection just ended
            await ws.recv()
        server_saw_close.set()

    closes: list[Link] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        _, link = await ws_connect(lambda: Link(lambda _t: None, closes.append), f"ws://127.0.0.1:{port}/")
        assert isinstance(link, Link)
        link.abort()
        await asyncio.wait_for(link.closed(), 5)
        await asyncio.wait_for(server_saw_close.wait(), 5)
    assert closes == [link]
