"""The bus between server nodes: Redis pub/sub for pushes, Redis hashes for presence.

Theory of operation
-------------------
Several ``kefu server`` nodes share one PostgreSQL database and one Redis.
Every push is stored (with its recipient's ``seq``) before it is published
(see :mod:`kefu.server.hub`), so the bus only has to *hurry* pushes along:

- :meth:`RedisBus.publish` hands a push to this node's connection of the
  recipient, if any, and ``PUBLISH``-es it on ``<prefix>bus``; every other
  node hears it and hands it to its own connection of that recipient. Pub/sub
  is at-most-once: a push lost on the way (a Redis hiccup, a node that was
  busy reconnecting) leaves a gap that the connection's outbox notices, either
  when the next push arrives (it reads the gap from ``events``) or, when
  nothing else arrives, by polling ``latest_seq`` when idle
  (``Settings.gap_poll``). Nothing is lost, and the outbox drops duplicates.
- **Presence** (who is connected to *some* node) is the hash
  ``<prefix>presence:<recipient>``: one field per node holding the connection,
  whose value is the time (ms) until which it is valid. The owning node
  refreshes its fields every ``presence_ttl / 3`` seconds; the fields of a
  node that died stop counting after ``presence_ttl``. :meth:`announce`
  writes the field *before* the connection's first reply, so a client that
  has its answer is present for every node.
- A connection that takes over a recipient announces it (``attach`` on the
  channel); the node holding the older connection tells it ``replaced`` and
  closes it, as one node does for two connections of the same recipient.

Decisions are never taken here: who gets a session, whether an invitation is
still open, an agent's state, are decided by the database's transactions and
row locks, which every node uses the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .hub import LocalSinks, Push, Sink
from .tasks import Background

__all__ = ["RedisBus"]

log = logging.getLogger("kefu.server.redisbus")


class RedisBus(LocalSinks):
    """The :class:`~kefu.server.hub.Bus` of a node among several (see the module docstring)."""

    def __init__(self, url: str, *, node_id: str, prefix: str = "kefu:", presence_ttl: float = 5.0) -> None:
        self.url = url
        self.node_id = node_id
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.channel = f"{prefix}bus"
        super().__init__()
        self._redis: aioredis.Redis = aioredis.from_url(url)
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background = Background(log)  # forgetting presence, telling the queue changed
        self._subscribed = asyncio.Event()
        self._closed = False

    # --- lifecycle

    async def start(self) -> None:
        """Check Redis answers, subscribe, and start the presence heartbeat."""
        await self._redis.ping()
        self._tasks = [
            asyncio.create_task(self._listen(), name="kefu-redis-listen"),
            asyncio.create_task(self._heartbeat(), name="kefu-redis-presence"),
        ]
        await asyncio.wait_for(self._subscribed.wait(), 10.0)

    async def close(self) -> None:
        self._closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._background.close()
        with contextlib.suppress(RedisError, OSError):
            if self._sinks:
                pipe = self._redis.pipeline()
                for recipient in self._sinks:
                    pipe.hdel(self._key(recipient), self.node_id)
                await pipe.execute()
        self._sinks.clear()
        await self._redis.aclose()

    # --- the Bus protocol

    async def publish(self, push: Push) -> None:
        sink = self._sinks.get(push.recipient)
        if sink is not None:
            sink.offer(push)
        await self._send({"k": "push", "n": self.node_id, "r": push.recipient, "s": push.seq, "t": push.text})

    async def publish_many(self, pushes: list[Push]) -> None:
        """A transaction's pushes: to this node's connections, then one pipeline of PUBLISHes."""
        for push in pushes:
            sink = self._sinks.get(push.recipient)
            if sink is not None:
                sink.offer(push)
        try:
            pipe = self._redis.pipeline(transaction=False)
            for p in pushes:
                msg = {"k": "push", "n": self.node_id, "r": p.recipient, "s": p.seq, "t": p.text}
                pipe.publish(self.channel, json.dumps(msg, separators=(",", ":")))
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("publishing on Redis failed (%r); the other nodes catch up from the database", exc)

    def detach(self, recipient: str, sink: Sink) -> None:
        if self._sinks.get(recipient) is sink:
            del self._sinks[recipient]
            self._spawn(self._forget(recipient), "kefu-redis-forget")

    async def present(self, recipient: str) -> bool:
        """Connected to some node (a live field in the recipient's presence hash)."""
        if recipient in self._sinks:
            return True
        try:
            fields = await self._redis.hgetall(self._key(recipient))
        except (RedisError, OSError):
            log.warning("presence of %s: Redis does not answer; counting it as absent", recipient)
            return False
        now = self._now_ms()
        return any(int(v) > now for v in fields.values())

    def queue_changed(self) -> None:
        """Every other node shows the queue anew (at-most-once is enough: the next change,
        or a reconnect, shows the queue as it is)."""
        self._spawn(self._send({"k": "queue", "n": self.node_id}), "kefu-redis-queue")

    async def announce(self, recipient: str) -> None:
        """This node is about to hold the recipient's connection: present everywhere, now."""
        await self._mark(recipient)
        await self._send({"k": "attach", "n": self.node_id, "r": recipient})

    # --- inside

    def _key(self, recipient: str) -> str:
        return f"{self.prefix}presence:{recipient}"

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    async def _mark(self, recipient: str) -> None:
        ttl_ms = int(self.presence_ttl * 1000)
        pipe = self._redis.pipeline()
        pipe.hset(self._key(recipient), self.node_id, self._now_ms() + ttl_ms)
        pipe.pexpire(self._key(recipient), ttl_ms * 2)
        await pipe.execute()

    async def _forget(self, recipient: str) -> None:
        if recipient in self._sinks:
            return  # connected again on this node meanwhile
        with contextlib.suppress(RedisError, OSError):
            await self._redis.hdel(self._key(recipient), self.node_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._background.spawn(coro, name)

    async def _send(self, msg: dict[str, Any]) -> None:
        try:
            await self._redis.publish(self.channel, json.dumps(msg, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            # stored already: the other nodes' outboxes find it by polling
            log.warning("publishing on Redis failed (%r); the other nodes catch up from the database", exc)

    async def _heartbeat(self) -> None:
        period = self.presence_ttl / 3
        while True:
            await asyncio.sleep(period)
            try:
                ttl_ms = int(self.presence_ttl * 1000)
                deadline = self._now_ms() + ttl_ms
                pipe = self._redis.pipeline()
                for recipient in list(self._sinks):
                    pipe.hset(self._key(recipient), self.node_id, deadline)
                    pipe.pexpire(self._key(recipient), ttl_ms * 2)
                await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("refreshing presence on Redis failed: %r", exc)

    async def _listen(self) -> None:
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self._heard(msg["data"])
            except (RedisError, OSError) as exc:
                log.warning("the Redis subscription failed (%r); subscribing again", exc)
                await asyncio.sleep(0.2)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _heard(self, data: bytes | str) -> None:
        try:
            msg = json.loads(data)
            if msg["n"] == self.node_id:
                return
            if msg["k"] == "queue":
                if self.on_queue_changed is not None:
                    self.on_queue_changed()
                return
            recipient = msg["r"]
            sink = self._sinks.get(recipient)
            if sink is None:
                return
            if msg["k"] == "push":
                sink.offer(Push(recipient, int(msg["s"]), msg["t"]))
            elif msg["k"] == "attach":
                # a newer connection of this recipient is on another node
                del self._sinks[recipient]
                replaced = getattr(sink, "replaced", None)
                if replaced is not None:
                    replaced()
                self._spawn(self._forget(recipient), "kefu-redis-forget")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("a bad message on the Redis bus: %r", exc)
