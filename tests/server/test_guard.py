"""Before the app (kefu.server.guard): a silent or dripping client is cut after
``handshake_timeout``; an address holds at most ``max_connections_per_address``
connections, one more is answered 429 too_many_connections before any upgrade."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kefu.visitor.link import Link
from tests.conftest import ServerHandle

BOUND = 0.3  # the tests' handshake_timeout


async def raw(server: ServerHandle) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    return await asyncio.open_connection(parts.hostname, parts.port)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> float:
    """Read until the server closes; return how long it took (fails past ``within``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(within):
        while await reader.read(4096):
            pass
    return loop.time() - start


def head(server: ServerHandle, path: str) -> bytes:
    host = urlsplit(server.url).netloc
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii")


@pytest.mark.server_settings(handshake_timeout=BOUND)
async def test_a_silent_connection_is_closed_after_the_handshake_timeout(server: ServerHandle) -> None:
    reader, writer = await raw(server)
    took = await closed_by_server(reader, BOUND + 1.0)
    assert took >= BOUND * 0.8
    writer.close()


@pytest.mark.server_settings(handshake_timeout=BOUND)
async def test_a_dripped_handshake_is_closed_after_the_handshake_timeout(server: ServerHandle) -> None:
    v = await server.visitor("v1")  # a finished handshake is not cut
    reader, writer = await raw(server)
    host = urlsplit(server.url).netloc
    lines = [
        "GET /ws/visitor HTTP/1.1\r\n",
        f"Host: {host}\r\n",
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        "Sec-WebSocket-Version: 13\r\n",
    ] + [f"X-Drip-{i}: {'x' * 10}\r\n" for i in range(1000)]
    closed = asyncio.create_task(closed_by_server(reader, BOUND + 1.0))
    for line in lines:  # one header every 50 ms, never the blank line
        if closed.done():
            break
        try:
            writer.write(line.encode("ascii"))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.wait({closed}, timeout=0.05)
    took = await closed
    assert BOUND * 0.8 <= took < BOUND + 1.0
    writer.close()
    assert (await v.link.call("ping"))["subMark"] == "pong"  # past the timeout: still up


@pytest.mark.server_settings(handshake_timeout=BOUND)
async def test_a_kept_alive_connection_has_the_deadline_for_each_request(server: ServerHandle) -> None:
    reader, writer = await raw(server)
    host = urlsplit(server.url).netloc
    writer.write(f"GET /api/states HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii"))
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 200")
    writer.write(b"GET /api/states HTTP/1.1\r\n")  # the next request's head never ends
    # the keep-alive timeout (5 s) no longer counts once a byte came; the deadline does
    await closed_by_server(reader, BOUND + 1.0)
    writer.close()


@pytest.mark.server_settings(handshake_timeout=5.0, max_connections_per_address=2, trusted_proxies=())
async def test_connections_per_address_are_capped(server: ServerHandle) -> None:
    held = [Link(server.ws("/ws/visitor"), timeout=5.0) for _ in range(2)]
    for link in held:
        await link.connect()
    assert server.runner is not None and server.runner.gate.count("127.0.0.1") == 2
    # a third: refused before the app, in the spec's error format
    reader, writer = await raw(server)
    writer.write(head(server, "/api/states"))
    answer = await reader.read()
    writer.close()
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 429")
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.ws("/ws/visitor")):
            pass
    assert info.value.response.status_code == 429
    assert json.loads(info.value.response.body or b"{}")["error"]["code"] == "too_many_connections"
    # the held ones still work; when one closes, its place is free
    assert (await held[0].request("hello", {"name": "v1"}))["subMark"] == "success"
    await held[1].disconnect()
    assert server.runner.gate.count("127.0.0.1") == 1
    reader, writer = await raw(server)
    writer.write(head(server, "/api/states"))
    assert (await reader.read()).startswith(b"HTTP/1.1 200")
    writer.close()
    await held[0].disconnect()


@pytest.mark.server_settings(max_connections_per_address=1)
async def test_a_trusted_proxy_is_not_capped(server: ServerHandle) -> None:
    """127.0.0.1 (nginx on this host) speaks for many clients: the default trusted proxy."""
    links = [Link(server.ws("/ws/visitor"), timeout=5.0) for _ in range(3)]
    for link in links:
        await link.connect()
    for link in links:
        await link.disconnect()
