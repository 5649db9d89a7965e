"""``kefu server`` as the process under test, with its agents.

The server is started as its own process (``python -m kefu.cli server --port 0
--data-dir <tmp>``) so that its CPU and memory are measured alone; the URL is
read from its line ``kefu server listening on http://127.0.0.1:PORT``.

Agents are made before the server starts, with the function ``kefu agent add``
calls (:func:`kefu.server.accounts.add_agent`) in one process: hundreds of
``kefu agent add`` processes would take minutes of interpreter start-up. Their
passwords are hashed with a small scrypt cost (the login's cost is not what
is measured here).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import LoadConfig
from bench.procs import ServerProcess

__all__ = ["AGENT_PASSWORD", "KefuServer", "add_agents", "agent_names", "kefu_process"]

AGENT_PASSWORD = "bench-password"
#: Options of the server for the benchmarks, and why.
SERVER_OPTIONS = (
    # the per-connection flood guard (100 messages / 10 s) would throttle the closed-loop
    # phases; the benchmarks measure capacity, not the guard
    "--rate-limit-messages",
    "1000000",
    "--log-level",
    "warning",
)


def agent_names(m: int) -> tuple[str, ...]:
    return tuple(f"bench-agent-{k}" for k in range(m))


async def _add(
    data_dir: Path, db_url: str | None, db_schema: str | None, names: tuple[str, ...], cap: int
) -> None:
    from datetime import UTC, datetime

    from kefu.server.accounts import add_agent
    from kefu.server.settings import Settings
    from kefu.server.store import Store

    store = Store(Settings(data_dir=data_dir, db_url=db_url, db_schema=db_schema))
    await store.open()
    try:
        for name in names:
            await add_agent(
                store, name, AGENT_PASSWORD, max_sessions=cap, now=datetime.now(UTC), scrypt_n=2**8
            )
    finally:
        await store.close()


def add_agents(
    data_dir: Path,
    names: tuple[str, ...],
    *,
    capacity: int,
    db_url: str | None = None,
    db_schema: str | None = None,
    python: str = sys.executable,
) -> None:
    """Create the agents (each may hold ``capacity`` open sessions). ``python``: the one that
    starts the nodes, so that its own migrations make the database (another tree's code)."""
    if python == sys.executable:
        asyncio.run(_add(data_dir, db_url, db_schema, names, capacity))
        return
    args = (str(data_dir), db_url, db_schema, list(names), capacity)
    code = (
        "import asyncio, json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from bench.kefu_server import _add; d, u, s, n, c = json.loads(sys.argv[2]); "
        "asyncio.run(_add(Path(d), u, s, tuple(n), c))"
    )
    root = str(Path(__file__).resolve().parents[1])  # this bench, that Python's kefu
    subprocess.run([python, "-c", code, root, json.dumps(args)], check=True)


@dataclass
class KefuServer:
    proc: ServerProcess

    @property
    def http_url(self) -> str:
        return self.proc.url

    @property
    def ws_url(self) -> str:
        return "ws://" + self.proc.url.split("://", 1)[1]


def kefu_process(
    workdir: Path,
    *,
    db_url: str | None = None,
    db_schema: str | None = None,
    log_name: str = "kefu-server.log",
) -> ServerProcess:
    argv = [sys.executable, "-m", "kefu.cli", "server", "--port", "0", "--data-dir", str(workdir / "data")]
    if db_url:
        argv += ["--db", db_url]
    if db_schema:
        argv += ["--db-schema", db_schema]
    argv += list(SERVER_OPTIONS)
    return ServerProcess(
        argv, pattern=r"kefu server listening on (http://127\.0\.0\.1:\d+)", log=workdir / log_name
    )


def ws_of(http_url: str) -> str:
    return "ws://" + http_url.split("://", 1)[1]


def kefu_load(srv: ServerProcess, visitors: int, names: tuple[str, ...], **kw: Any) -> LoadConfig:
    """The load generator's configuration against the kefu server ``srv`` and agents ``names``."""
    return LoadConfig(
        target="kefu",
        base_url=ws_of(srv.url),
        http_url=srv.url,
        visitors=visitors,
        agents=len(names),
        agent_names=names,
        agent_password=AGENT_PASSWORD,
        **kw,
    )


__all__ += ["SERVER_OPTIONS", "kefu_load", "ws_of"]
