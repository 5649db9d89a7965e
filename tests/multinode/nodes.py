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

    def __init__(
        self,
        dep: Deployment,
        node_id: str,
        *options: str,
        db_url: str | None = None,
        redis_url: str | None = None,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """``prefix``: a command the node runs under (``ip netns exec …``); ``env``: added to
        this process's environment."""
        db_url, redis_url = db_url or POSTGRES_URL, redis_url or REDIS_URL
        assert db_url is not None and redis_url is not None
        self.node_id = node_id
        self.env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        self.args = [
            *prefix, KEFU, "server", "--port", "0", "--data-dir", str(dep.tmp / f"proc-{node_id}"),
            "--db", db_url, "--db-schema", dep.schema,
            "--redis", redis_url, "--redis-prefix", dep.prefix, "--node-id", node_id,
            "--presence-ttl", "1", "--sweep-interval", "0.1",
            "--log-level", "warning", *options,
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=None, env=self.env
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
