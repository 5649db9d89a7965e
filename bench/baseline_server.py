"""The baseline: what plain Python and ``websockets`` do on this machine, with
nothing of kefu in the way. Run as its own process so that its CPU and memory
are measured alone, exactly like ``kefu server``::

    python -m bench.baseline_server --port 0
    → baseline listening on ws://127.0.0.1:PORT

Paths (the same message text and sizes as kefu's sockets):

``/echo``             every message is sent back to its sender (the echo rate);
``/relay/a/<k>``      a listener, the agent's analogue;
``/relay/v/<i>``      every message goes to listener ``i mod M`` and back to the
                      sender as its acknowledgement (kefu's visitor → agent path:
                      one message in, two out);
``/broadcast``        every message goes to every ``/broadcast`` client.

No JSON is parsed here: that is the point of a baseline. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

__all__ = ["main", "run"]


class _Hub:
    def __init__(self) -> None:
        self.listeners: dict[int, ServerConnection] = {}
        self.broadcast: set[ServerConnection] = set()

    async def handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if path == "/echo":
            async for msg in ws:
                await ws.send(msg)
        elif path.startswith("/relay/a/"):
            k = int(path.rsplit("/", 1)[1])
            self.listeners[k] = ws
            try:
                await ws.wait_closed()
            finally:
                self.listeners.pop(k, None)
        elif path.startswith("/relay/v/"):
            i = int(path.rsplit("/", 1)[1])
            async for msg in ws:
                n = len(self.listeners)
                if n:
                    target = self.listeners.get(i % n)
                    if target is not None:
                        await target.send(msg)
                await ws.send(msg)
        elif path == "/broadcast":
            self.broadcast.add(ws)
            try:
                async for msg in ws:
                    broadcast(self.broadcast, msg)
            finally:
                self.broadcast.discard(ws)
        else:
            await ws.close(1008, "unknown path")


async def run(port: int, ready: asyncio.Event | None = None) -> None:
    hub = _Hub()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        hub.handle,
        "127.0.0.1",
        port,
        compression=None,
        max_size=64 * 1024,
        ping_interval=20,
        ping_timeout=20,
        backlog=4096,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"baseline listening on ws://127.0.0.1:{bound}", flush=True)
        if ready is not None:
            ready.set()
        await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args(argv)
    from bench.common import raise_fd_limit

    raise_fd_limit()
    if args.loop == "uvloop":
        try:
            import uvloop

            uvloop.run(run(args.port))
            return
        except ImportError:
            print("uvloop is not installed; using asyncio's loop", file=sys.stderr)
    asyncio.run(run(args.port))


if __name__ == "__main__":
    main()
