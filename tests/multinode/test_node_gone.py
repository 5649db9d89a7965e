"""A node gone, as the bus tells it (``RedisBus.on_node_gone``, D48): its beats stopped
for ``presence_ttl``, or its ``bye``; a node restarted under the same id is not gone.

The buses are real, on the machine's Redis; a crash is a bus whose tasks stop
without a ``bye`` (the process kill is tests/janus/test_nodes_sfu.py's)."""

from __future__ import annotations

import asyncio

from kefu.server.redisbus import RedisBus

from .conftest import REDIS_URL, Deployment
from .test_lost_push import Beats

TTL = 0.6


async def _bus(dep: Deployment, node: str, ttl: float = TTL) -> RedisBus:
    assert REDIS_URL is not None
    bus = RedisBus(REDIS_URL, node_id=node, prefix=dep.prefix, presence_ttl=ttl)
    await bus.start()
    return bus


async def _crash(bus: RedisBus) -> None:
    """Stop as a killed process does: no ``bye``, nothing more sent."""
    bus._closed = True
    for task in bus._tasks:
        task.cancel()
    await asyncio.gather(*bus._tasks, return_exceptions=True)
    await bus._redis.aclose()


async def test_a_node_whose_beats_stop_is_gone_once(deployment: Deployment) -> None:
    watcher = await _bus(deployment, "w")
    gone: asyncio.Queue[str] = asyncio.Queue()
    watcher.on_node_gone = gone.put_nowait
    a = await _bus(deployment, "a")
    try:
        async with Beats(deployment.prefix) as beats:
            await beats.of("a", 2)  # the watcher has heard node a
            await _crash(a)
            started = asyncio.get_running_loop().time()
            assert await gone.get() == "a"  # the test's timeout bounds it
            took = asyncio.get_running_loop().time() - started
            assert TTL < took, took  # not before presence_ttl without a beat
            await beats.of("w", 2)  # the watcher looked again: told once
            assert gone.empty()
    finally:
        await watcher.close()


async def test_a_node_restarted_under_its_id_is_not_gone_and_its_bye_is(deployment: Deployment) -> None:
    # the new run's first beat (ttl / 3 after its start) is heard well before the old run's
    # silence reaches ttl
    ttl = 1.0
    watcher = await _bus(deployment, "w", ttl)
    gone: asyncio.Queue[str] = asyncio.Queue()
    departed = asyncio.Event()
    watcher.on_node_gone = gone.put_nowait
    watcher.on_gap = departed.set  # a run not heard for presence_ttl is a possible loss too
    old = await _bus(deployment, "a", ttl)
    new: RedisBus | None = None
    try:
        async with Beats(deployment.prefix) as beats:
            await beats.of("a", 2)
            await _crash(old)
            new = await _bus(deployment, "a", ttl)  # the same node, restarted: a new run
            await beats.of("a")  # the watcher has heard the new run
            await departed.wait()  # the old run stopped beating (the only possible loss here)
            assert gone.empty()  # the node is not gone: its new run ends what the old drove
            await new.close()  # bye
            new = None
            assert await gone.get() == "a"
    finally:
        if new is not None:
            await new.close()
        await watcher.close()
