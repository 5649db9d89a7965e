"""The server's listening socket: Nagle off, a backlog for reconnect storms."""

from __future__ import annotations

import gc
import socket

import websockets

from kefu.server.runner import freeze_heap
from tests.conftest import ServerHandle


async def test_accepted_connections_have_nagle_off(server: ServerHandle) -> None:
    """asyncio turns TCP_NODELAY on only for sockets whose protocol is TCP: without it a reply
    written right after a push waited for the client's delayed ACK (~40 ms)."""
    runner = server.runner
    assert runner is not None and runner._server is not None
    async with websockets.connect(server.ws("/ws/visitor")) as ws:
        await ws.send('{"v":1,"id":"1","mark":"ping","params":{}}')
        await ws.recv()
        held = [c.transport.get_extra_info("socket") for c in runner._server.server_state.connections]
        assert held
        for sock in held:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_freeze_heap_takes_what_lives_out_of_the_collectors_sight() -> None:
    """D69: after it, a full collection no longer walks the objects alive at the freeze."""
    gc.unfreeze()
    keep = [[i] for i in range(10_000)]  # tracked containers alive at the freeze
    try:
        freeze_heap()
        assert gc.get_freeze_count() >= len(keep)
        assert all(o is not keep[0] for o in gc.get_objects(generation=2))  # a full collection skips it
    finally:
        gc.unfreeze()
