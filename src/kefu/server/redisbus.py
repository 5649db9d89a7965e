"""The bus between server nodes: Redis pub/sub for pushes, Redis hashes for presence.

Theory of operation
-------------------
Several ``kefu server`` nodes share one PostgreSQL database and one Redis.
Every push is stored (with its recipient's ``seq``) before it is published
(see :mod:`kefu.server.hub`), so the bus only has to *hurry* pushes along:

- :meth:`RedisBus.publish_many` hands a transaction's pushes to this node's
  connections of their recipients, if any, and queues the others for
  ``PUBLISH`` on ``<prefix>bus``; every other node hears them and hands each to
  its own connection of that recipient. One task sends what is queued, in order: all
  that was queued since its last send goes in **one** ``PUBLISH`` (a JSON
  array, at most :data:`PUBLISH_MAX` messages), so a group-commit batch's
  pushes cost Redis one message and each listening node one decode (D53).
  A ``PUBLISH`` starts with its node's id (a JSON string, then a newline): a
  node hears its own too, and drops them without decoding them (D81).
- **A push for a recipient held here is not published** (D84): no other node
  has a connection that wants it. The recipient's last ``seq`` given here so
  is *handed over* (a ``seq`` message) when that may stop being true: another
  node announces the recipient (``attach``), the connection here closes, or a
  loss is noticed (an ``attach`` may have been lost: from then on that
  connection's pushes are published too). The node holding the recipient then
  sends what it missed from ``events`` (:meth:`Sink.check`); one that does not
  hold it yet reads ``events`` when it attaches, after the hand-over's commit.
- Pub/sub is at most once. A push lost on the way with nothing after it for
  its recipient would be a gap nobody sees, so **the bus notices losses**
  instead of every connection polling the database (an idle connection costs
  no query). Every message a node sends carries its run's id (``i``) and a
  number (``c``: 1, 2, 3 … in the order sent), and a *beat* every
  ``presence_ttl / 3`` seconds carries the last number sent. A listener that
  hears a number skipped (a publish that failed, a message Redis dropped), its
  own subscription drop and come back, or a node leave (a ``bye``, or no beat
  for ``presence_ttl``: it may have committed and died before publishing)
  calls ``on_gap``: the hub then reads the latest ``seq`` of every recipient
  connected here, a few hundred per query, and connections that are behind
  send what they missed from ``events``. Nothing is lost, and the outbox drops
  duplicates.
- **A node gone** (a ``bye``, or its run not heard for ``presence_ttl``, and no
  newer run of the same node heard) is also told to ``on_node_gone`` with the
  node's id: what only that node drove (a call's handles in Janus, D48) is
  ended by the others. The beats are the heartbeat: nothing is polled per call.
- **Presence** (who is connected to *some* node) is the hash
  ``<prefix>presence:<recipient>``: one field per node holding the connection,
  whose value is the id of that node's run. A field counts while its node's
  run is alive: the key ``<prefix>node:<node id>`` holds the run's id and
  expires after ``presence_ttl``, refreshed every ``presence_ttl / 3``
  seconds — one key per node, whatever the number of its connections (D71:
  it refreshed one field per connection). A node that died stops counting
  after ``presence_ttl``; a node restarted under the same id is a new run, and
  the fields of the run before do not count. :meth:`announce` writes the field
  *before* the connection's first reply, so a client that has its answer is
  present for every node. The hashes expire after :data:`PRESENCE_KEEP`
  (their holders renew them every third of it), so what a dead node left
  goes away; :meth:`present` also drops the dead fields it reads.
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
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .hub import LocalSinks, Push, Sink
from .tasks import Background

__all__ = ["RedisBus", "frame_messages", "header"]

log = logging.getLogger("kefu.server.redisbus")


#: The most bus messages one ``PUBLISH`` carries (a JSON array of them, D53).
PUBLISH_MAX = 256

#: Seconds a recipient's presence hash is kept without its holder renewing it (D71): what a
#: dead node left there goes away; a live one renews its recipients' every third of it.
PRESENCE_KEEP = 3600.0

#: Is some node's live run holding the recipient (KEYS[1], its presence hash)? A field whose
#: run is not its node's live one (``ARGV[1]`` .. node id: the run's id while it lives) is
#: dropped. One round trip, atomic.
_PRESENT = """
local f = redis.call('HGETALL', KEYS[1])
local found = 0
for i = 1, #f, 2 do
  if redis.call('GET', ARGV[1] .. f[i]) == f[i + 1] then
    found = 1
  else
    redis.call('HDEL', KEYS[1], f[i])
  end
end
return found
"""


def _dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


def header(node_id: str) -> bytes:
    """What every ``PUBLISH`` of node ``node_id`` starts with: its id as a JSON string (which
    holds no newline), then a newline (D81)."""
    return (json.dumps(node_id) + "\n").encode()


def _frame(head: str, texts: list[str]) -> str:
    """One ``PUBLISH``'s payload: the sender's header, then the messages queued since the
    last, one JSON object or an array of them."""
    return head + (texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]")


def frame_messages(data: bytes | str) -> tuple[str | None, list[Any]]:
    """A ``PUBLISH``'s sender (``None`` before D81: no header) and its messages in the order
    sent. Raises ValueError when it is not a frame."""
    raw = data.encode() if isinstance(data, str) else data
    node: str | None = None
    if raw[:1] == b'"':
        head, _, raw = raw.partition(b"\n")
        node = json.loads(head)
        if not isinstance(node, str):
            raise ValueError("a bus frame's header is not a node's id")
    got = json.loads(raw)
    return node, got if isinstance(got, list) else [got]


class RedisBus(LocalSinks):
    """The :class:`~kefu.server.hub.Bus` of a node among several (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str,
        prefix: str = "kefu:",
        presence_ttl: float = 5.0,
        presence_keep: float = PRESENCE_KEEP,
    ) -> None:
        self.url = url
        self.node_id = node_id
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self.presence_keep = presence_keep
        self.channel = f"{prefix}bus"
        self._own = header(node_id)  # what this node's frames start with
        self._head = self._own.decode()
        self.run_id = secrets.token_hex(6)  # this run of the node: numbers start again at 1
        super().__init__()
        self._redis: aioredis.Redis = aioredis.from_url(url)
        self._present_script: Any = self._redis.register_script(_PRESENT)
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background = Background(log)  # forgetting presence, telling the queue changed
        self._subscribed = asyncio.Event()
        self._closed = False
        # sending: numbered messages, in order, by one task
        self._sent_no = 0  # the number of the last message queued
        self._queue: list[str] = []
        self._queued = asyncio.Event()
        self._flushed: asyncio.Future[None] | None = None  # done when what is queued now was sent
        # listening: per run of another node, the last number heard, when (loop time), whose
        self._heard_no: dict[str, tuple[int, float, str]] = {}
        # recipients held here whose pushes are not published: the last seq given them so (D84)
        self._only_here: dict[str, int] = {}
        #: Called with a node's id when it is gone (set by the services: the SFU's calls, D48).
        self.on_node_gone: Callable[[str], None] | None = None
        self.losses = 0  # times a loss was noticed (tests, benchmarks)
        self.publish_failures = 0

    # --- lifecycle

    async def start(self) -> None:
        """Check Redis answers, subscribe, and start the sender and the heartbeat."""
        await self._redis.ping()
        await self._alive()  # before any announce: this run's fields count from the first
        self._tasks = [
            asyncio.create_task(self._listen(), name="kefu-redis-listen"),
            asyncio.create_task(self._sender(), name="kefu-redis-send"),
            asyncio.create_task(self._heartbeat(), name="kefu-redis-presence"),
        ]
        await asyncio.wait_for(self._subscribed.wait(), 10.0)

    async def close(self) -> None:
        if not self._closed and self._tasks:
            self._queue_msg({"k": "bye", "n": self.node_id}, numbered=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), 2.0)
        self._closed = True
        self._queued.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._background.close()
        with contextlib.suppress(RedisError, OSError):
            if self._sinks:
                pipe = self._redis.pipeline(transaction=False)
                for recipient in self._sinks:
                    pipe.hdel(self._key(recipient), self.node_id)
                await pipe.execute()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._node_key())  # gone now, not after presence_ttl
        self._sinks.clear()
        await self._redis.aclose()

    # --- the Bus protocol

    async def publish(self, push: Push) -> None:
        await self.publish_many([push])

    async def publish_many(self, pushes: list[Push]) -> None:
        """A transaction's pushes: to this node's connections now, to the others by the sender;
        not published for a recipient held here alone (D84)."""
        only_here = self._only_here
        for p in pushes:
            r = p.recipient
            sink = self._sinks.get(r)
            if sink is not None:
                sink.offer(p)
                last = only_here.get(r)
                if last is not None:
                    if p.seq > last:
                        only_here[r] = p.seq
                    continue
            self._queue_msg({"k": "push", "n": self.node_id, "r": r, "s": p.seq, "t": p.text})

    def attach(self, recipient: str, sink: Sink) -> Sink | None:
        """The recipient's connection here: its pushes are not published until it is handed
        over (D84). The same node's new connection keeps what the one it replaces was given."""
        self._only_here.setdefault(recipient, 0)
        return super().attach(recipient, sink)

    def detach(self, recipient: str, sink: Sink) -> None:
        if self._sinks.get(recipient) is sink:
            del self._sinks[recipient]
            self._hand_over(recipient)
            self._spawn(self._forget(recipient), "kefu-redis-forget")

    def _hand_over(self, recipient: str) -> None:
        """Publish the last ``seq`` given here to a recipient whose pushes were not published:
        a node that holds it, or will, misses none of them (D84)."""
        last = self._only_here.pop(recipient, 0)
        if last:
            self._queue_msg({"k": "seq", "n": self.node_id, "r": recipient, "s": last})

    async def present(self, recipient: str) -> bool:
        """Connected to some node (a live field in the recipient's presence hash)."""
        if recipient in self._sinks:
            return True
        try:
            found = await self._present_script(keys=[self._key(recipient)], args=[self._node_key("")])
        except (RedisError, OSError):
            log.warning("presence of %s: Redis does not answer; counting it as absent", recipient)
            return False
        return bool(found)

    def queue_changed(self) -> None:
        """Every other node shows the queue anew (at-most-once is enough: the next change,
        or a reconnect, shows the queue as it is)."""
        self._queue_msg({"k": "queue", "n": self.node_id})

    async def announce(self, recipient: str) -> None:
        """This node is about to hold the recipient's connection: present everywhere, now."""
        await self._mark(recipient)
        self._queue_msg({"k": "attach", "n": self.node_id, "r": recipient})
        await self.flush()

    async def flush(self) -> None:
        """Until what is queued now has been sent (or its sending failed)."""
        if self._queue:
            if self._flushed is None:
                self._flushed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._flushed)

    # --- sending

    def _queue_msg(self, msg: dict[str, Any], *, numbered: bool = True) -> None:
        if self._closed:
            return
        if numbered:
            self._sent_no += 1
        msg["i"] = self.run_id
        msg["c"] = self._sent_no  # a beat or a bye: the last number sent before it
        self._queue.append(_dumps(msg))
        self._queued.set()

    async def _sender(self) -> None:
        while not self._closed:  # (redis-py may swallow a cancellation: look at _closed too)
            await self._queued.wait()
            self._queued.clear()
            batch, self._queue = self._queue, []
            done, self._flushed = self._flushed, None
            try:
                pipe = self._redis.pipeline(transaction=False)
                for i in range(0, len(batch), PUBLISH_MAX):
                    pipe.publish(self.channel, _frame(self._head, batch[i : i + PUBLISH_MAX]))
                await pipe.execute()
            except (RedisError, OSError) as exc:
                # stored already; the other nodes see the numbers skipped and look in the database
                self.publish_failures += 1
                log.warning(
                    "publishing on Redis failed (%r); the other nodes catch up from the database", exc
                )
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    # --- noticing losses

    def _lost(self, why: str, *, missed: bool = True) -> None:
        """Pushes may have been lost: the connections here look. ``missed``: messages of a live
        node may have been, an ``attach`` among them: every recipient held here is handed over,
        and their pushes are published from now on (D84)."""
        self.losses += 1
        log.info("pushes may have been lost on the bus (%s): the connections here look", why)
        if missed:
            for recipient in list(self._only_here):
                self._hand_over(recipient)
        if self.on_gap is not None:
            self.on_gap()

    def _count(self, msg: dict[str, Any]) -> None:
        """Keep the numbers heard from another node's run; a number skipped is a loss."""
        run, no = msg.get("i"), msg.get("c")
        if not isinstance(run, str) or not isinstance(no, int):
            return
        last = self._heard_no.get(run, (0, 0.0, ""))[0]
        kind, node = msg["k"], str(msg["n"])
        if kind == "bye":
            self._heard_no.pop(run, None)
            self._lost(f"node {node} left", missed=False)  # it may have committed, not published
            self._node_gone(node)
            return
        numbered = kind != "beat"
        if no > last + (1 if numbered else 0):
            self._lost(f"node {node} sent {no}, {last} was the last heard")
        self._heard_no[run] = (max(no, last), asyncio.get_running_loop().time(), node)

    def _departed(self) -> None:
        """Runs of other nodes not heard for ``presence_ttl``: gone (maybe killed mid-publish)."""
        now = asyncio.get_running_loop().time()
        gone = [run for run, (_, at, _n) in self._heard_no.items() if now - at > self.presence_ttl]
        nodes = {self._heard_no.pop(run)[2] for run in gone}
        if gone:
            self._lost(f"{len(gone)} node(s) stopped beating", missed=False)
        for node in sorted(nodes):
            self._node_gone(node)

    def _node_gone(self, node: str) -> None:
        """``node`` is gone, unless a newer run of it is heard (restarted: it ends what its
        previous run drove itself)."""
        if any(n == node for _, _, n in self._heard_no.values()):
            return
        log.warning("node %s is gone (no beat for %.1f s, or it said bye)", node, self.presence_ttl)
        if self.on_node_gone is not None:
            try:
                self.on_node_gone(node)
            except Exception:
                log.exception("handling node %s gone failed", node)

    # --- inside

    def _key(self, recipient: str) -> str:
        return f"{self.prefix}presence:{recipient}"

    def _node_key(self, node_id: str | None = None) -> str:
        return f"{self.prefix}node:{self.node_id if node_id is None else node_id}"

    async def _alive(self) -> None:
        """This run lives for another ``presence_ttl``: its presence fields count."""
        await self._redis.set(self._node_key(), self.run_id, px=int(self.presence_ttl * 1000))

    async def _mark(self, recipient: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._key(recipient), self.node_id, self.run_id)
        pipe.pexpire(self._key(recipient), int(self.presence_keep * 1000))
        await pipe.execute()

    async def _forget(self, recipient: str) -> None:
        if recipient in self._sinks:
            return  # connected again on this node meanwhile
        with contextlib.suppress(RedisError, OSError):
            await self._redis.hdel(self._key(recipient), self.node_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._background.spawn(coro, name)

    async def _heartbeat(self) -> None:
        period = self.presence_ttl / 3
        loop = asyncio.get_running_loop()
        kept_at = loop.time()
        while not self._closed:
            await asyncio.sleep(period)
            self._queue_msg({"k": "beat", "n": self.node_id}, numbered=False)
            self._departed()
            try:
                await self._alive()  # one key, whatever the number of connections (D71)
                if loop.time() - kept_at >= self.presence_keep / 3:
                    kept_at = loop.time()
                    pipe = self._redis.pipeline(transaction=False)
                    for recipient in list(self._sinks):
                        pipe.pexpire(self._key(recipient), int(self.presence_keep * 1000))
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("refreshing presence on Redis failed: %r", exc)

    async def _listen(self) -> None:
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                if self._subscribed.is_set():
                    self._lost("the subscription dropped and is back")  # heard nothing meanwhile
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
        """One ``PUBLISH``: a message, or an array of them in the order they were sent; this
        node's own are dropped unread (D81)."""
        if isinstance(data, bytes) and data.startswith(self._own):
            return
        try:
            _, got = frame_messages(data)
        except ValueError as exc:
            log.warning("a bad message on the Redis bus: %r", exc)
            return
        for msg in got:
            self._heard_one(msg)

    def _heard_one(self, msg: Any) -> None:
        try:
            if msg["n"] == self.node_id:
                return
            self._count(msg)
            kind = msg["k"]
            if kind == "queue":
                if self.on_queue_changed is not None:
                    self.on_queue_changed()
                return
            if kind not in ("push", "attach", "seq"):
                return
            recipient = msg["r"]
            sink = self._sinks.get(recipient)
            if sink is None:
                return
            if kind == "push":
                sink.offer(Push(recipient, int(msg["s"]), msg["t"]))
            elif kind == "seq":
                sink.check(int(msg["s"]))  # handed over: what that node gave its connection (D84)
            else:
                # a newer connection of this recipient is on another node
                del self._sinks[recipient]
                self._hand_over(recipient)
                replaced = getattr(sink, "replaced", None)
                if replaced is not None:
                    replaced()
                self._spawn(self._forget(recipient), "kefu-redis-forget")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("a bad message on the Redis bus: %r", exc)
