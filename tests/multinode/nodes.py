"""Server nodes as separate processes (``kefu server … --redis … --node-id N``), to be killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .conftest import POSTGRES_URL, REDIS_URL, Deployment

__all__ = ["NodeProcess"]

KEFU = str(Path(sys.executable).with_name("kefu"))


class NodeProcess:
    """One ``kefu server`` process on a free port of 127.0.0.1."""

    def __init__(self, dep: Deployment, node_id: str, *options: str) -> None:
        assert POSTGRES_URL is not None and REDIS_URL is not None
        self.node_id = node_id
        self.args = [
            KEFU, "server", "--port", "0", "--data-dir", str(dep.tmp / f"proc-{node_id}"),
            "--db", POSTGRES_URL, "--db-schema", dep.schema,
            "--redis", REDIS_URL, "--redis-prefix", dep.prefix, "--node-id", node_id,
            "--presence-ttl", "1", "--sweep-interval", "0.1",
            "--log-level", "warning", *options,
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=None, env={**os.environ, "NO_COLOR": "1"}
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"node {self.node_id} stopped while starting")
                if "listening on" in line:
                    self.url = line.split("listening on", 1)[1].strip()
                    return self.url

    def ws(self, path: str) -> str:
        return self.url.replace("http", "ws", 1) + path

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def __aenter__(self) -> NodeProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
