"""Shared fixtures: the real kefu server on a free port with a fresh database.

``server`` starts :class:`kefu.server.ServerRunner` in the test's event loop
on ``127.0.0.1:0`` with a fresh SQLite file, and again, when
``KEFU_TEST_POSTGRES_URL`` is set, with a fresh PostgreSQL schema (dropped
afterwards), so every test that uses it runs on both databases. Timeouts are
short and the clock is the test's (:class:`Clock`): tests move time forward
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from kefu.cli import register_parts
from kefu.logs import LOG_HANDLER_MARK
from kefu.server import ServerRunner, Services, Settings
from kefu.server.accounts import Agent, add_agent
from kefu.server.settings import normalize_db_url
from kefu.visitor import Visitor, ws_url

register_parts()  # `kefu.cli.app` with every command, as `kefu --help` shows it


def service_url(var: str) -> str | None:
    """A test service's URL from the environment; unset or empty, ``None``: the tests that
    need that service are skipped."""
    return os.environ.get(var) or None


POSTGRES_URL = service_url("KEFU_TEST_POSTGRES_URL")
REDIS_URL = service_url("KEFU_TEST_REDIS_URL")
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
PASSWORD = "pw-secret-1"

#: One factor for every wait limit of the tests (issue 19, item 3): a slow or loaded machine
#: sets ``KEFU_TEST_TIMEOUT_FACTOR=3``; limits bound awaited events, they are never slept.
TIMEOUT_FACTOR = float(os.environ.get("KEFU_TEST_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    """A test's wait limit of ``seconds`` on this machine (times :data:`TIMEOUT_FACTOR`)."""
    return seconds * TIMEOUT_FACTOR


@pytest.fixture(autouse=True)
def _root_log_as_found() -> Iterator[None]:
    """Each test leaves the root logger as it found it. A command run in-process
    (``CliRunner().invoke(app, ["server", …])``) puts its redacting handler there
    (:func:`kefu.logs.configure_logging`), bound to the runner's stderr, which is
    closed once the command returns; a later test at DEBUG (``caplog.set_level``)
    then had every record of every thread, aiosqlite's worker's included, written
    to a closed file ("--- Logging error --- … I/O operation on closed file")."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in before and getattr(h, LOG_HANDLER_MARK, False)]:
        root.removeHandler(handler)
    root.setLevel(level)


class Clock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``kefu`` process a test starts: this one's, without
    asyncio's debug mode (any value of PYTHONASYNCIODEBUG, even "0", turns it on:
    ``bin/test`` sets it for the test process only), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    env.update(extra)
    return env


def kefu_argv(*args: str) -> list[str]:
    """``python -m kefu.cli …`` with this interpreter (a ``kefu`` process a test starts)."""
    return [sys.executable, "-m", "kefu.cli", *args]


@contextlib.asynccontextmanager
async def plugin_process(
    server_url: str,
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stderr: Any = asyncio.subprocess.PIPE,
    prefix: Sequence[str] = (),
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``kefu plugin --server server_url --data-dir data_dir *args`` in a process of its own,
    once it printed ``ready ws://127.0.0.1:<port>``: the process and that URL. Killed (by
    its pid) at the end if still running. ``prefix``: e.g. ``ip netns exec NAME``."""
    argv = kefu_argv("plugin", "--server", server_url, "--data-dir", str(data_dir), *args)
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), scaled(60.0))).decode()
        if not line.startswith("ready ws://127.0.0.1:"):
            said = (await proc.stderr.read()).decode() if proc.stderr is not None else ""
            raise AssertionError(f"the plugin did not start: {line}{said}")
        yield proc, line.split()[1]
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


def fast_settings(data_dir: Path, clock: Clock, **overrides: Any) -> Settings:
    base = Settings(
        port=0,
        data_dir=data_dir,
        scrypt_n=2**10,
        auth_timeout=2.0,
        login_delay=0.0,
        ping_interval=5.0,
        ping_timeout=5.0,
        graceful_shutdown=1.0,
        queue_push_interval=0.0,
        log_level="warning",
        clock=clock,
    )
    return replace(base, **overrides)


class ServerHandle:
    """A running server, and what tests do with it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock: Clock = settings.clock  # type: ignore[assignment]
        self.runner: ServerRunner | None = None
        self.url = ""
        self._clients: list[Any] = []

    @property
    def services(self) -> Services:
        assert self.runner is not None
        return self.runner.services

    def ws(self, path: str) -> str:
        return ws_url(self.url, path)

    async def start(self, **overrides: Any) -> str:
        if overrides:
            self.settings = replace(self.settings, **overrides)
        self.runner = ServerRunner(self.settings)
        self.url = await self.runner.start()
        return self.url

    async def stop(self) -> None:
        for c in self._clients:
            await c.aclose()
        self._clients.clear()
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None

    async def restart(self, **overrides: Any) -> str:
        """Stop and start again on the same database (a new port)."""
        await self.stop()
        return await self.start(**overrides)

    async def add_agent(self, name: str, *, admin: bool = False, max_sessions: int = 5) -> Agent:
        return await add_agent(
            self.services.store,
            name,
            PASSWORD,
            admin=admin,
            max_sessions=max_sessions,
            now=self.settings.now(),
            scrypt_n=self.settings.scrypt_n,
        )

    async def login(self, name: str, password: str = PASSWORD) -> str:
        return (await self.services.auth.login(name, password, "127.0.0.1")).token

    async def agent(self, name: str, *, add: bool = True, ready: bool = False, **kw: Any) -> Any:
        """An agent, added, logged in and connected to ``/ws/agent`` (its history taken)."""
        from tests.server.clients import AgentClient

        if add:
            await self.add_agent(name, **kw)
        client = AgentClient(self.ws("/ws/agent"), await self.login(name))
        self._clients.append(client)
        await client.connect()
        await client.skip_history()
        if ready:
            await client.call("setAgentState", {"state": "idle"})
            await client.next_event(mark="state")
        return client

    async def visitor(self, name: str, **kw: Any) -> Visitor:
        v = Visitor(self.url, name, timeout=5.0, **kw)
        self._clients.append(v)
        await v.connect()
        return v


async def _drop_schema(url: str, schema: str) -> None:
    engine = create_async_engine(normalize_db_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def server_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Settings]]:
    """A factory of fresh-database settings (a SQLite file, or a PostgreSQL schema dropped afterwards)."""
    backend = request.param
    schemas: list[str] = []

    def make(**overrides: Any) -> Settings:
        s = fast_settings(tmp_path / "data", Clock(), **overrides)
        if backend == "postgres":
            if not schemas:
                schemas.append(f"t_{uuid.uuid4().hex[:16]}")
            s = replace(s, db_url=POSTGRES_URL, db_schema=schemas[0])
        return s

    yield make
    for schema in schemas:
        assert POSTGRES_URL is not None
        await _drop_schema(POSTGRES_URL, schema)


@pytest.fixture
async def server(
    server_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[ServerHandle]:
    """The real server, started, on a fresh database. Mark a test with
    ``@pytest.mark.server_settings(key=value, ...)`` to change its settings."""
    marker = request.node.get_closest_marker("server_settings")
    handle = ServerHandle(server_settings(**(marker.kwargs if marker else {})))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_settings(**kw): settings of the `server` fixture")
