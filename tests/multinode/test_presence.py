"""Presence across nodes (D71): a recipient's field counts while its node's run is alive.

Each node keeps one key alive (``<prefix>node:<id>``, its run's id, expiring after
``presence_ttl``) instead of refreshing one field per connection. Real Redis, real
buses of one prefix; a crash is a bus whose tasks stop without a ``bye``.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from kefu.server.hub import Push
from kefu.server.redisbus import RedisBus

from .conftest import REDIS_URL, Deployment
from .test_lost_push import Beats
from .test_node_gone import _bus, _crash

TTL = 0.6


class _Sink:
    def offer(self, push: Push) -> None:
        pass

    def reply(self, msg: object) -> None:
        pass

    def check(self, latest: int) -> None:
        pass


async def _hold(bus: RedisBus, recipient: str) -> None:
    bus.attach(recipient, _Sink())
    await bus.announce(recipient)


async def test_present_on_the_other_node_while_held_and_not_after_the_close(deployment: Deployment) -> None:
    a, b = await _bus(deployment, "a"), await _bus(deployment, "b")
    try:
        assert not await b.present("v:x")
        await _hold(a, "v:x")
        assert await b.present("v:x")
        async with Beats(deployment.prefix) as beats:
            await beats.of("a", 4)  # more than presence_ttl of beats: still present, refreshed
        assert await b.present("v:x")
        await a.close()  # its fields and its key go at once
        assert not await b.present("v:x")
    finally:
        await b.close()


async def test_a_crashed_nodes_fields_stop_counting_after_presence_ttl(deployment: Deployment) -> None:
    assert REDIS_URL is not None
    a, b = await _bus(deployment, "a"), await _bus(deployment, "b")
    gone: asyncio.Queue[str] = asyncio.Queue()
    b.on_node_gone = gone.put_nowait
    r = aioredis.from_url(REDIS_URL)
    try:
        await _hold(a, "v:x")
        async with Beats(deployment.prefix) as beats:
            await beats.of("a", 2)  # b has heard node a
            await _crash(a)  # no bye: its field stays in the hash
            assert await b.present("v:x")  # until presence_ttl has passed
            assert await gone.get() == "a"  # b heard no beat for presence_ttl
            await beats.of("b")  # a third of presence_ttl more: a's key set at its last beat expired
        assert not await b.present("v:x")
        assert not await r.hexists(f"{deployment.prefix}presence:v:x", "a")  # the dead field dropped
    finally:
        await r.aclose()
        await b.close()


async def test_a_node_restarted_under_its_id_does_not_hold_what_its_last_run_held(
    deployment: Deployment,
) -> None:
    a, b = await _bus(deployment, "a", 30.0), await _bus(deployment, "b", 30.0)
    new: RedisBus | None = None
    try:
        await _hold(a, "v:old")
        await _crash(a)
        new = await _bus(deployment, "a", 30.0)  # alive, but a new run: v:old is not its
        await _hold(new, "v:new")
        assert await b.present("v:new")
        assert not await b.present("v:old")
    finally:
        if new is not None:
            await new.close()
        await b.close()
