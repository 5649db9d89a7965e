"""A call through Janus whose members are connected to different kefu nodes (PostgreSQL,
Redis), all in a network namespace with Janus.

The node that created the call's room drives its handles (server/sfu_nodes.py, D46):
the visitor's and the second agent's signals reach another node, which asks the
room's node over Redis. Frames are checked by colour both ways.

PostgreSQL is the host's, through its Unix socket (a socket file: reachable from the
namespace, where the host's 127.0.0.1 is not); Redis is a ``redis-server`` of the
test's own on a Unix socket in its folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kefu.media import SfuMember, colour_for, sample_rgb
from kefu.server import Settings
from kefu.visitor import CallUpdate, MediaStatus
from tests.conftest import POSTGRES_URL, TIMEOUT_FACTOR, _drop_schema, fast_settings
from tests.e2e.callkit import AgentSide
from tests.e2e.test_call_media import near
from tests.multinode.conftest import Cluster, Deployment, SplitServer
from tests.multinode.nodes import NodeProcess
from tests.plugin.harness import LIMIT

from .kit import Janus, available
from .netns import Namespace, unavailable
from .test_calls_sfu import MEDIA, frame_of, sfu_of
from .test_recording_sfu import lost_record

pytestmark = pytest.mark.media

PG_SOCKET = os.environ.get("KEFU_TEST_POSTGRES_SOCKET", "/var/run/postgresql")
PG_SOCKET_THERE = Path(PG_SOCKET).exists()
REDIS_SERVER = shutil.which("redis-server")
PRESENCE_TTL = 1.0  # the bus's: a node not heard for this long is gone


def _socket_url(url: str) -> str:
    """``url`` (postgresql://user@host:port/db) through the server's Unix socket instead."""
    parts = urllib.parse.urlsplit(url)
    port = f"&port={parts.port}" if parts.port else ""
    return f"postgresql://{parts.username or 'postgres'}@{parts.path}?host={PG_SOCKET}{port}"


class SfuDeployment(Deployment):
    def __init__(self, tmp: Path, db_url: str, redis_url: str, janus: Janus) -> None:
        super().__init__(tmp)
        self.db_url, self.redis_url, self.janus = db_url, redis_url, janus

    def settings(self, node_id: str, **overrides: Any) -> Settings:
        j = self.janus
        return fast_settings(
            self.tmp / f"node-{node_id}",
            self.clock,
            db_url=self.db_url,
            db_schema=self.schema,
            redis_url=self.redis_url,
            redis_prefix=self.prefix,
            node_id=node_id,
            presence_ttl=PRESENCE_TTL,
            sweep_interval=0.1,
            db_settings=(("synchronous_commit", "off"),),
            ring_timeout=5.0,
            call_grace=0.2,
            janus_url=j.url,
            janus_api_secret=j.api_secret,
            janus_admin_key=j.admin_key,
            janus_recordings=j.recordings,
            janus_timeout=3.0,
            recording_tile=(320, 240),
            **overrides,
        )

    async def cleanup(self) -> None:
        await _drop_schema(self.db_url, self.schema)


async def _redis_server(folder: Path) -> tuple[asyncio.subprocess.Process, str]:
    """A ``redis-server`` on a Unix socket in ``folder``, answering."""
    assert REDIS_SERVER is not None
    sock = folder / "redis.sock"
    proc = await asyncio.create_subprocess_exec(
        *[REDIS_SERVER, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{sock}?db=6"
    r = aioredis.from_url(url)
    try:
        async with asyncio.timeout(10):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}")
                try:
                    await r.ping()
                    return proc, url
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.05)  # not listening yet
    finally:
        await r.aclose()


@contextlib.asynccontextmanager
async def _deployment(tmp_path: Path) -> AsyncIterator[tuple[Namespace, SfuDeployment]]:
    """Janus in a namespace (the test's thread in it), a Redis and a PostgreSQL schema."""
    why = unavailable() or available()
    if why:
        pytest.skip(why)
    if not POSTGRES_URL or not PG_SOCKET_THERE:
        pytest.skip("several nodes need PostgreSQL: set KEFU_TEST_POSTGRES_URL (its Unix socket is used)")
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    redis_proc, redis_url = await _redis_server(tmp_path)
    ns = Namespace()
    ns.create()
    ns.enter()
    try:
        janus = Janus(tmp_path / "janus")
        janus.prefix = ns.prefix
        await janus.start()
        dep = SfuDeployment(tmp_path, _socket_url(POSTGRES_URL), redis_url, janus)
        try:
            yield ns, dep
        finally:
            await dep.cleanup()
            await janus.stop()
    finally:
        ns.leave()
        ns.delete()
        redis_proc.terminate()
        await redis_proc.wait()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[SplitServer]:
    async with _deployment(tmp_path) as (_, dep):
        cluster = Cluster(dep, 2)
        try:
            await cluster.start()
            handle = SplitServer(cluster)
            try:
                yield handle
            finally:
                await handle.stop()
        finally:
            await cluster.stop()


async def agent_on(server: SplitServer, node: int, name: str, tmp_path: Path) -> AgentSide:
    await server.add_agent(name)
    side = AgentSide(
        server, name, tmp_path / f"plugin-{name}", media=MEDIA, server_url=server.cluster.urls[node]
    )
    return await side.start(ready=True)


async def test_a_call_whose_members_are_on_two_nodes(nodes: SplitServer, tmp_path: Path) -> None:
    cluster = nodes.cluster
    a1 = await agent_on(nodes, 0, "a1", tmp_path)
    a2 = await agent_on(nodes, 1, "a2", tmp_path)
    try:
        v = await nodes.visitor("v1", media=MEDIA, on_invite="accept")  # on node 2
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        # the room is node 1's (a1 asked for the call there): its handles are in node 1's session
        sfu1, sfu2 = (cluster.services(i).calls.sfu for i in (0, 1))
        assert sfu1 is not None and sfu2 is not None
        room = await sfu2.room_of(call_id)
        assert room is not None and room.node == "1"
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        assert isinstance(v.media, SfuMember)
        # both ways through Janus, the visitor's signalling relayed from node 2 to node 1
        assert near(sample_rgb(await frame_of(sfu_of(a1), "v1")), colour_for("v1"))
        assert near(sample_rgb(await frame_of(v.media, "a1")), colour_for("a1"))
        assert call_id in sfu1.relay._calls and sfu2.relay._calls == {}
        # a third member on node 2: every one receives the two others
        invite = a1.call("videoInviteAgent", {"agentName": "a2"})
        await a2.state("004002")
        await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006014")
        await invite.callback("acceptSuccess", "008002")
        receivers: dict[str, SfuMember] = {"a1": sfu_of(a1), "a2": sfu_of(a2), "v1": v.media}
        for me, media in receivers.items():
            for other in receivers:
                if other != me:
                    frame = await frame_of(media, other)
                    assert near(sample_rgb(frame), colour_for(other)), (me, other)
        # a bad signal asked of node 1 from node 2 gets node 1's error, the call goes on
        bad = await v.link.request(
            "signal", {"callId": call_id, "to": {"kind": "sfu", "name": "sfu"}, "data": {"type": "nope"}}
        )
        assert bad["error"]["code"] == "invalid_field", bad
        # the end, on node 1: the room is destroyed and both nodes hold nothing of the call
        await a1.call("videoDisconnect").callback("success")
        await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
        for sfu in (sfu1, sfu2):
            await sfu.aclose_pending()
            await sfu.relay.settled()
        assert sfu1.relay._calls == {} and sfu2.relay._calls == {}
        assert await sfu1.room_of(call_id) is None
    finally:
        await a2.close()
        await a1.close()


@pytest.fixture
async def killable(tmp_path: Path) -> AsyncIterator[tuple[NodeProcess, SplitServer]]:
    """Node 1 a ``kefu server`` process (to be killed), node 2 in this process."""
    async with _deployment(tmp_path) as (ns, dep):
        j = dep.janus
        node1 = NodeProcess(
            dep,
            "1",
            "--janus", j.url, "--janus-recordings", str(j.recordings),
            "--presence-ttl", str(PRESENCE_TTL),
            db_url=dep.db_url,
            redis_url=dep.redis_url,
            prefix=tuple(ns.prefix),
            env={"KEFU_JANUS_API_SECRET": j.api_secret, "KEFU_JANUS_ADMIN_KEY": j.admin_key},
        )  # fmt: skip
        cluster = Cluster(dep, 1, first=2)
        try:
            await cluster.start()  # node 2 first: it migrates the schema
            await node1.start()
            handle = SplitServer(cluster)
            try:
                yield node1, handle
            finally:
                await handle.stop()
        finally:
            await node1.stop()
            await cluster.stop()


async def test_the_rooms_node_killed_mid_call_ends_it_for_the_members_elsewhere(
    killable: tuple[NodeProcess, SplitServer], tmp_path: Path
) -> None:
    """The room's node dies (SIGKILL), Janus lives: the call ends with ``media_server_lost``
    for the members on node 2 within the bus's ``presence_ttl`` (and a beat), and node 2
    makes the recording of what Janus received (D48)."""
    node1, nodes = killable
    await nodes.add_agent("a1")
    side = AgentSide(nodes, "a1", tmp_path / "plugin-a1", media=MEDIA, server_url=node1.url)
    a1 = await side.start(ready=True)  # on node 1: the call's room is node 1's
    try:
        v = await nodes.visitor("v1", media=MEDIA, on_invite="accept")  # on node 2
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        sfu2 = nodes.cluster.services(0).calls.sfu
        assert sfu2 is not None
        room = await sfu2.room_of(call_id)
        assert room is not None and room.node == "1"
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        assert isinstance(v.media, SfuMember)
        assert near(sample_rgb(await frame_of(v.media, "a1")), colour_for("a1"))
        assert near(sample_rgb(await frame_of(sfu_of(a1), "v1")), colour_for("v1"))
        await node1.kill()  # SIGKILL: no bye; Janus keeps the room, its handles undriven
        killed = asyncio.get_running_loop().time()
        ended = await v.wait_for(CallUpdate, lambda e: e.what == "ended", within=LIMIT)
        took = asyncio.get_running_loop().time() - killed
        assert (ended.call_id, ended.by, ended.reason) == (call_id, "system", "media_server_lost")
        # noticed by the beats: no beat for presence_ttl, looked at every presence_ttl / 3
        assert took < PRESENCE_TTL * 4 / 3 + 0.5 * TIMEOUT_FACTOR, took
        await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
        record = await lost_record(nodes.cluster.services(0), call_id, ("a1", "v1"))
        # the room destroyed by node 2, the recording made there from Janus's files
        assert await sfu2.room_of(call_id) is None
        assert record["recording"]["status"] == "ready", record["recording"]
    finally:
        await a1.close()
