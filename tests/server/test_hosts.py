"""DNS rebinding: a request whose Host is not one of the server's names is refused with
403 host_refused, before any upgrade (kefu.protocol.hosts, shared with the plugin)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from urllib.parse import urlsplit

import pytest

from tests.conftest import ServerHandle


async def ask(server: ServerHandle, path: str, *headers: str, upgrade: bool = False) -> tuple[int, bytes]:
    """One request over a raw socket with exactly ``headers``; the status and the body."""
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"GET {path} HTTP/1.1", *headers, "Connection: close"]
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        lines[-1] = "Connection: Upgrade"
        lines += ["Upgrade: websocket", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {key}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    async with asyncio.timeout(5):
        status = await reader.readline()
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += await reader.readline()
        length = next(
            (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
            0,
        )
        body = await reader.readexactly(length) if length else b""
    writer.close()
    return int(status.split()[1]), body


def refused(answer: tuple[int, bytes]) -> bool:
    status, body = answer
    return status == 403 and json.loads(body)["error"]["code"] == "host_refused"


async def test_a_rebound_name_is_refused_on_the_sockets_and_the_api(server: ServerHandle) -> None:
    port = urlsplit(server.url).port
    evil = (f"Host: evil.example:{port}", f"Origin: http://evil.example:{port}")
    for path in ("/ws/agent", "/ws/visitor"):
        assert refused(await ask(server, path, *evil, upgrade=True)), path
    assert refused(await ask(server, "/api/states", *evil))
    assert refused(await ask(server, "/doLogin?name=a&pwd=b", f"Host: evil.example:{port}"))
    for bad in ("Host: 127.0.0.1.evil.example", "Host: 127.0.0.1:80.evil.example", "Host: localhost."):
        assert refused(await ask(server, "/api/states", bad)), bad
    assert refused(await ask(server, "/api/states"))  # no Host
    two = (f"Host: 127.0.0.1:{port}", "Host: evil.example")
    assert refused(await ask(server, "/api/states", *two))


async def test_the_server_s_own_names_pass(server: ServerHandle) -> None:
    port = urlsplit(server.url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", "[::1]:8600"):
        assert (await ask(server, "/api/states", f"Host: {host}"))[0] == 200, host
    status, _ = await ask(server, "/ws/visitor", f"Host: 127.0.0.1:{port}", upgrade=True)
    assert status == 101


@pytest.mark.server_settings(public_names=("KEFU.Bank.example",))
async def test_a_public_name_passes(server: ServerHandle) -> None:
    assert (await ask(server, "/api/states", "Host: kefu.bank.example"))[0] == 200
    status, _ = await ask(server, "/ws/visitor", "Host: kefu.bank.example:443", upgrade=True)
    assert status == 101
    assert refused(await ask(server, "/api/states", "Host: kefu.bank.example.evil.example"))
