"""Several server nodes on the real PostgreSQL and Redis of this machine.

Every test gets its own PostgreSQL schema (dropped afterwards) and its own
Redis key prefix (deleted afterwards), so runs do not see each other. The
tests skip, saying why, when ``KEFU_TEST_POSTGRES_URL`` or
``KEFU_TEST_REDIS_URL`` is not set (``.ci/run`` sets both).

:class:`Cluster` runs the nodes in the test's process (each with its own
services, database pool and Redis bus, as separate processes would have);
:class:`SplitServer` looks like the one-node ``server`` fixture of
``tests/conftest.py``, but puts agents and visitors on different nodes, so the
one-node tests of the call flows run across nodes unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kefu.server import ServerRunner, Services, Settings
from kefu.visitor import Visitor
from tests.conftest import POSTGRES_URL, REDIS_URL, Clock, ServerHandle, _drop_schema, fast_settings

needs_engines = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL),
    reason="several nodes need PostgreSQL and Redis: set KEFU_TEST_POSTGRES_URL and KEFU_TEST_REDIS_URL "
    "(.ci/run starts both and sets them)",
)


class Deployment:
    """One schema and one Redis prefix: what the nodes of a test share."""

    def __init__(self, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:12]
        self.schema = f"mn_{tag}"
        self.prefix = f"kefu-test-{tag}:"
        self.tmp = tmp
        self.clock = Clock()

    def settings(self, node_id: str, **overrides: Any) -> Settings:
        assert POSTGRES_URL is not None and REDIS_URL is not None
        base = fast_settings(
            self.tmp / f"node-{node_id}",
            self.clock,
            db_url=POSTGRES_URL,
            db_schema=self.schema,
            redis_url=REDIS_URL,
            redis_prefix=self.prefix,
            node_id=node_id,
            presence_ttl=1.0,
            sweep_interval=0.1,
            # what is tested is who decides, not what survives a power cut: no fsync per commit
            db_settings=(("synchronous_commit", "off"),),
        )
        return replace(base, **overrides)

    async def cleanup(self) -> None:
        assert POSTGRES_URL is not None and REDIS_URL is not None
        await _drop_schema(POSTGRES_URL, self.schema)
        r = aioredis.from_url(REDIS_URL)
        try:
            keys = [k async for k in r.scan_iter(match=f"{self.prefix}*")]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()


class Cluster:
    """``n`` nodes in this process on one deployment, named ``first``, ``first + 1`` …"""

    def __init__(self, dep: Deployment, n: int, *, first: int = 1, **overrides: Any) -> None:
        self.dep = dep
        self.runners = [ServerRunner(dep.settings(str(first + i), **overrides)) for i in range(n)]
        self.urls: list[str] = []

    async def start(self) -> None:
        # one after the other: the first migrates the schema (the others wait on its lock anyway)
        for r in self.runners:
            self.urls.append(await r.start())

    async def stop(self) -> None:
        for r in self.runners:
            await r.stop()

    def services(self, i: int) -> Services:
        return self.runners[i].services


class SplitServer(ServerHandle):
    """The one-node fixture's interface over a cluster: agent ``k`` (in order of
    connection) on node ``k % n``, every visitor on the last node."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster.runners[0].settings)
        self.cluster = cluster
        self.runner = cluster.runners[0]
        self.url = cluster.urls[-1]  # visitors
        self._agents = 0

    @property
    def services(self) -> Services:
        return self.cluster.services(0)

    def ws(self, path: str) -> str:
        from kefu.visitor import ws_url

        if path == "/ws/agent":
            url = self.cluster.urls[self._agents % len(self.cluster.urls)]
            self._agents += 1
            return ws_url(url, path)
        return ws_url(self.cluster.urls[-1], path)

    async def visitor(self, name: str, **kw: Any) -> Visitor:
        v = Visitor(self.cluster.urls[-1], name, timeout=5.0, **kw)
        self._clients.append(v)
        await v.connect()
        return v

    async def stop(self) -> None:
        for c in self._clients:
            await c.aclose()
        self._clients.clear()


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    if not (POSTGRES_URL and REDIS_URL):
        pytest.skip("several nodes need KEFU_TEST_POSTGRES_URL and KEFU_TEST_REDIS_URL (.ci/run sets them)")
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        await dep.cleanup()


@pytest.fixture(params=[2, 3], ids=["2nodes", "3nodes"])
async def server(deployment: Deployment, request: pytest.FixtureRequest) -> AsyncIterator[SplitServer]:
    """Agents and visitors on different nodes of a 2- or 3-node cluster."""
    marker = request.node.get_closest_marker("server_settings")
    cluster = Cluster(deployment, request.param, **(marker.kwargs if marker else {}))
    await cluster.start()
    handle = SplitServer(cluster)
    try:
        yield handle
    finally:
        await handle.stop()
        await cluster.stop()
