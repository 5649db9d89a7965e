"""A push lost on the bus, with nothing after it, still arrives; idle connections cost no query.

Pub/sub is at most once. No connection polls the database: the bus notices a
loss (see :mod:`kefu.server.redisbus`) and the connections of the node that
noticed it look once. Each way a push is really lost is made here for real:

- the publishing node's link to Redis is cut (a TCP proxy in between): its
  publish fails, and its next message, once Redis answers, skips a number;
- the listening node's link to Redis is cut: it hears nothing meanwhile, and
  subscribes again;
- a node commits and dies (SIGKILL) before publishing: its beats stop.

In each, the visitor connected to the other node gets the push once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from sqlalchemy import event

from kefu.protocol.wire import event_message
from kefu.server import ServerRunner
from kefu.server.hub import Hub, LocalBus, visitor_key
from kefu.server.redisbus import RedisBus, frame_messages
from kefu.visitor.link import Link
from tests.plugin.harness import Proxy

from .conftest import REDIS_URL, Cluster, Deployment
from .nodes import NodeProcess

NOTICE = "lost on the bus"


def _via(proxy: Proxy) -> str:
    assert REDIS_URL is not None
    u = urlsplit(REDIS_URL)
    return urlunsplit((u.scheme, f"127.0.0.1:{proxy.port}", u.path, u.query, u.fragment))


def _redis_proxy() -> Proxy:
    assert REDIS_URL is not None
    return Proxy(urlsplit(REDIS_URL).port or 6379)


@asynccontextmanager
async def visitor_on(url: str, name: str) -> AsyncIterator[tuple[Link, str]]:
    v = Link(url.replace("http", "ws", 1) + "/ws/visitor", timeout=5.0)
    await v.connect()
    try:
        hello = await v.request("hello", {"name": name})
        yield v, visitor_key(hello["payload"]["visitorId"])
    finally:
        await v.disconnect()


async def _push(hub: Hub, recipient: str) -> int:
    async with hub.transaction() as tx:
        return await tx.push(recipient, event_message("notice", {"text": NOTICE}, mark="event"))


async def _arrives_once(v: Link, seq: int) -> None:
    got = await v.next_event("notice")  # bounded by the link's timeout (5 s)
    assert got["seq"] == seq and got["payload"]["text"] == NOTICE
    assert not [m for m in v.pending_events() if m.get("seq") == seq]  # once


def _bus(runner: ServerRunner) -> RedisBus:
    bus = runner.services.hub.bus
    assert isinstance(bus, RedisBus)
    return bus


class Beats:
    """The test's own subscription to the bus: awaits the beats of a node."""

    def __init__(self, prefix: str) -> None:
        assert REDIS_URL is not None
        self.redis = aioredis.from_url(REDIS_URL)
        self.pubsub: Any = self.redis.pubsub()
        self.channel = f"{prefix}bus"

    async def __aenter__(self) -> Beats:
        await self.pubsub.subscribe(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def of(self, node_id: str, n: int = 1) -> None:
        async for m in self.pubsub.listen():  # the test's timeout bounds it
            if m["type"] == "message":
                _, got = frame_messages(m["data"])  # a message, or an array of them (D53)
                for msg in got:
                    if msg["k"] == "beat" and msg["n"] == node_id:
                        n -= 1
                        if n == 0:
                            return


async def test_a_push_whose_publish_failed_is_found_when_its_node_is_heard_again(
    deployment: Deployment,
) -> None:
    proxy = _redis_proxy()
    await proxy.start()
    n1 = ServerRunner(deployment.settings("1", redis_url=_via(proxy), presence_ttl=3.0))
    n2 = ServerRunner(deployment.settings("2", presence_ttl=3.0))
    await n1.start()
    url2 = await n2.start()
    try:
        async with visitor_on(url2, "v1") as (v, recipient):
            await proxy.cut()
            seq = await _push(n1.services.hub, recipient)  # stored; its publish fails
            await _bus(n1).flush()
            assert _bus(n1).publish_failures >= 1
            await proxy.restore()
            await _arrives_once(v, seq)
            assert _bus(n2).losses >= 1
    finally:
        await n2.stop()
        await n1.stop()
        await proxy.aclose()


async def test_a_push_published_while_a_node_did_not_listen_is_found_when_it_listens_again(
    deployment: Deployment,
) -> None:
    proxy = _redis_proxy()
    await proxy.start()
    n1 = ServerRunner(deployment.settings("1"))
    n2 = ServerRunner(deployment.settings("2", redis_url=_via(proxy)))
    await n1.start()
    url2 = await n2.start()
    try:
        async with visitor_on(url2, "v1") as (v, recipient):
            await proxy.cut()
            seq = await _push(n1.services.hub, recipient)  # published; node 2 does not hear it
            await _bus(n1).flush()
            assert _bus(n1).publish_failures == 0
            await proxy.restore()
            await _arrives_once(v, seq)
            assert _bus(n2).losses >= 1
    finally:
        await n2.stop()
        await n1.stop()
        await proxy.aclose()


async def test_a_push_committed_by_a_node_killed_before_publishing_is_found(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 0)
    async with NodeProcess(deployment, "1") as n1:
        n2 = ServerRunner(deployment.settings("2"))
        cluster.runners.append(n2)
        await cluster.start()  # after node 1: node 1 migrated the schema
        try:
            async with Beats(deployment.prefix) as beats, visitor_on(cluster.urls[0], "v1") as (v, recipient):
                await beats.of("1")  # node 2 knows node 1 (it subscribed before the test did)
                # what node 1 leaves when it dies between its commit and its publish
                silent = Hub(n2.services.store, n2.services.settings, LocalBus())
                seq = await _push(silent, recipient)
                await n1.kill()
                await _arrives_once(v, seq)  # once node 1 missed its beats (presence_ttl 1 s)
                assert _bus(n2).losses >= 1
        finally:
            await cluster.stop()


async def test_idle_connections_cost_no_query(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2)
    await cluster.start()
    engine = cluster.services(1).store.engine.sync_engine
    looks: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "mailboxes" in statement:
            looks.append(statement)

    try:
        async with (
            Beats(deployment.prefix) as beats,
            visitor_on(cluster.urls[1], "v1") as (_v1, _),
            visitor_on(cluster.urls[1], "v2") as (_v2, _),
            visitor_on(cluster.urls[1], "v3") as (_v3, _),
        ):
            event.listen(engine, "before_cursor_execute", count)
            await beats.of("1", 4)  # more than a second (presence_ttl 1 s: a beat every 1/3 s)
            event.remove(engine, "before_cursor_execute", count)
            assert looks == []
            assert _bus(cluster.runners[1]).losses == 0
    finally:
        await cluster.stop()
