"""Pushes: per-recipient sequence numbers, stored before they are sent.

Theory of operation
-------------------
Every push to an agent or a visitor (a state change, a message, a session
assigned or closed, a queue change) gets the recipient's next ``seq`` and is
written to ``events`` **in the same transaction** as the change it reports
(:meth:`Tx.push`). Only after that transaction commits is it handed to the
:class:`Bus`, which gives it to the recipient's connection, if any. So a push
that was sent is always in the database, a change that rolled back was never
sent, and a client that reconnects with the last ``seq`` it saw gets the rest
from ``events``, even after a restart.

Sequence numbers come from one row per recipient in ``mailboxes``
(``UPDATE … SET last_seq = last_seq + 1 RETURNING``): gap-free, and two
transactions pushing to the same recipient are serialised by that row's lock
(PostgreSQL) or by the store's write lock (SQLite). A connection sends pushes
strictly in ``seq`` order: one older than what it sent is dropped (a
duplicate), one past a gap makes it read the gap from ``events`` first
(see :class:`kefu.server.connection.Outbox`).

The :class:`Bus` is the seam for more than one server node: the in-process
:class:`LocalBus` hands pushes to connections of this process;
:class:`kefu.server.redisbus.RedisBus` publishes them to every node, and the
gap filling above makes its at-most-once delivery safe: a push lost with
nothing after it is noticed by the bus (a node's numbered messages, a
subscription that dropped, a node that left), which calls :meth:`Hub.gap`;
the hub then reads the latest ``seq`` of every recipient connected here, a
few hundred per query, and each connection that is behind sends what it
missed (:meth:`Sink.check`). An idle connection costs no query. ``present`` is the bus's answer to "is this
recipient connected to some node" (routing, call checks, the call grace).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol.wire import encode

from .schema import events, mailboxes
from .settings import Settings
from .store import Store
from .tasks import Coalesced

log = logging.getLogger("kefu.server.hub")

__all__ = [
    "AGENT_PREFIX",
    "GAP_CHUNK",
    "SEQUENCE_IN",
    "VISITOR_PREFIX",
    "Bus",
    "Hub",
    "LocalBus",
    "LocalSinks",
    "Push",
    "Sink",
    "Tx",
    "agent_key",
    "visitor_key",
]


AGENT_PREFIX = "a:"
VISITOR_PREFIX = "v:"

#: Set (by the group commit's writer, around a lone message on PostgreSQL) for the
#: transactions of a task that should give the journal's positions as their own last
#: statements (``Hub.sequence_in``) instead of leaving them to the sequencer's own
#: transaction after the commit: one transaction, one commit a message instead of two (D67).
SEQUENCE_IN: ContextVar[bool] = ContextVar("kefu_sequence_in", default=False)


def agent_key(agent_id: int) -> str:
    return f"{AGENT_PREFIX}{agent_id}"


def visitor_key(visitor_id: str) -> str:
    return f"{VISITOR_PREFIX}{visitor_id}"


@dataclass(frozen=True, slots=True)
class Push:
    recipient: str
    seq: int
    text: str  # the encoded message, exactly as stored and sent


class Sink(Protocol):
    """A connection that takes pushes (never blocks: it queues them)."""

    def offer(self, push: Push) -> None: ...

    def reply(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` as it is, in order with the rest (a volatile push: no ``seq``)."""
        ...

    def check(self, latest: int) -> None:
        """The recipient's stored latest ``seq``: send the pushes this connection missed."""
        ...


class Bus(Protocol):
    """Where committed pushes go. One sink per recipient and node."""

    async def publish(self, push: Push) -> None: ...

    async def publish_many(self, pushes: list[Push]) -> None:
        """A transaction's pushes, in order (one round trip on a network bus)."""
        ...

    def attach(self, recipient: str, sink: Sink) -> Sink | None:
        """Make ``sink`` the recipient's connection; return the one it replaces."""
        ...

    def detach(self, recipient: str, sink: Sink) -> None:
        """Forget ``sink`` if it is still the recipient's connection."""
        ...

    def connected(self, recipient: str) -> bool:
        """Connected to this node."""
        ...

    async def present(self, recipient: str) -> bool:
        """Connected to some node."""
        ...

    def local_recipients(self, prefix: str) -> list[str]:
        """The recipients connected to this node whose key starts with ``prefix``."""
        ...

    def send_volatile(self, recipient: str, msg: dict[str, Any]) -> None:
        """Send a volatile push (no ``seq``, not stored) to the recipient's connection here."""
        ...

    #: Called when another node says the queue changed (set by the router).
    on_queue_changed: Callable[[], None] | None

    #: Called when pushes for this node's connections may have been lost (set by the hub).
    on_gap: Callable[[], None] | None

    def local_sink(self, recipient: str) -> Sink | None:
        """The recipient's connection on this node, if any."""
        ...

    def queue_changed(self) -> None:
        """Tell the other nodes that the queue changed."""
        ...

    async def announce(self, recipient: str) -> None:
        """This node is about to hold the recipient's connection (before its first reply)."""
        ...

    async def close(self) -> None: ...


class LocalSinks:
    """This node's connections by recipient: what every bus keeps of its own node."""

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}
        self.on_queue_changed: Callable[[], None] | None = None
        self.on_gap: Callable[[], None] | None = None

    def attach(self, recipient: str, sink: Sink) -> Sink | None:
        """Make ``sink`` the recipient's connection; return the one it replaces."""
        old = self._sinks.get(recipient)
        self._sinks[recipient] = sink
        return old if old is not sink else None

    def connected(self, recipient: str) -> bool:
        """Connected to this node."""
        return recipient in self._sinks

    def local_sink(self, recipient: str) -> Sink | None:
        return self._sinks.get(recipient)

    def local_recipients(self, prefix: str) -> list[str]:
        return [r for r in self._sinks if r.startswith(prefix)]

    def send_volatile(self, recipient: str, msg: dict[str, Any]) -> None:
        sink = self._sinks.get(recipient)
        if sink is not None:
            sink.reply(msg)


class LocalBus(LocalSinks):
    """The in-process bus: one server node."""

    async def publish(self, push: Push) -> None:
        sink = self._sinks.get(push.recipient)
        if sink is not None:
            sink.offer(push)

    async def publish_many(self, pushes: list[Push]) -> None:
        for p in pushes:
            await self.publish(p)

    def detach(self, recipient: str, sink: Sink) -> None:
        if self._sinks.get(recipient) is sink:
            del self._sinks[recipient]

    async def present(self, recipient: str) -> bool:
        return recipient in self._sinks

    def queue_changed(self) -> None:
        """One node: nobody else to tell."""

    async def announce(self, recipient: str) -> None:
        """One node: attaching is all there is."""

    async def close(self) -> None:
        self._sinks.clear()


# The statements of the hot paths, built once: building a statement and its cache key on
# every call cost about as much as running it (py-spy, docs/benchmarks.md).
_BUMP = (
    update(mailboxes)
    .where(mailboxes.c.recipient == bindparam("r"))
    .values(last_seq=mailboxes.c.last_seq + 1)
    .returning(mailboxes.c.last_seq)
)
_NEW_MAILBOX = insert(mailboxes).values(recipient=bindparam("r"), last_seq=bindparam("s"))
STORE_EVENT = insert(events).values(
    recipient=bindparam("r"), seq=bindparam("s"), message=bindparam("m"), created_at=bindparam("t")
)
_LATEST = select(mailboxes.c.last_seq).where(mailboxes.c.recipient == bindparam("r"))
_LATEST_OF = select(mailboxes.c.recipient, mailboxes.c.last_seq).where(
    mailboxes.c.recipient.in_(bindparam("rs", expanding=True))
)
#: Recipients whose latest seq one query reads when pushes may have been lost.
GAP_CHUNK = 500
_AFTER = (
    select(events.c.seq, events.c.message)
    .where(events.c.recipient == bindparam("r"), events.c.seq > bindparam("after"))
    .order_by(events.c.seq)
    .limit(bindparam("n"))
)


def push_text(message: dict[str, Any], seq: int) -> str:
    """The push as stored and sent: ``message`` with its ``seq`` after ``v``, encoded once."""
    out: dict[str, Any] = {"v": message["v"], "seq": seq}
    out.update((k, v) for k, v in message.items() if k not in ("v", "seq"))
    return encode(out)


@dataclass
class Tx:
    """A write transaction that collects pushes; they are published after the commit."""

    conn: AsyncConnection
    now: datetime
    pushes: list[Push] = field(default_factory=list)
    after_commit: list[Callable[[], Any]] = field(default_factory=list)
    #: What the transaction looked up and may need again (e.g. a call member's id by name).
    memo: dict[Any, Any] = field(default_factory=dict)
    #: Integration events recorded (kefu.server.events.emit): the journal is told after the commit.
    emitted: int = 0

    async def push(self, recipient: str, message: dict[str, Any]) -> int:
        """Store ``message`` as the recipient's next push; return its ``seq``."""
        seq: int | None = (await self.conn.execute(_BUMP, {"r": recipient})).scalar_one_or_none()
        if seq is None:
            seq = 1
            await self.conn.execute(_NEW_MAILBOX, {"r": recipient, "s": seq})
        text = push_text(message, seq)
        await self.conn.execute(STORE_EVENT, {"r": recipient, "s": seq, "m": text, "t": self.now})
        self.pushes.append(Push(recipient, seq, text))
        return seq


async def open_mailbox(conn: AsyncConnection, recipient: str) -> None:
    """Create a recipient's sequence row (with the recipient, so pushes only update it)."""
    await conn.execute(insert(mailboxes).values(recipient=recipient, last_seq=0))


async def latest_seq(conn: AsyncConnection, recipient: str) -> int:
    """The recipient's last push ``seq`` (0 before its first)."""
    seq = (await conn.execute(_LATEST, {"r": recipient})).scalar_one_or_none()
    return seq or 0


class Hub:
    def __init__(self, store: Store, settings: Settings, bus: Bus | None = None) -> None:
        self.store = store
        self.settings = settings
        self.bus: Bus = bus if bus is not None else LocalBus()
        #: Called after a transaction that recorded integration events commits (the journal).
        self.on_events: Callable[[], None] | None = None
        #: The journal's sequencer run *inside* a transaction, as its last statements: the
        #: committed events and the transaction's own get their positions (D52); the highest
        #: position given, or 0. After the commit, ``on_sequenced`` gets that number.
        self.sequence_in: Callable[[AsyncConnection], Awaitable[int]] | None = None
        self.on_sequenced: Callable[[int], None] | None = None
        self.bus.on_gap = self.gap
        self.gap_checks = 0  # looks after a possible loss on the bus (tests, benchmarks)
        self._gap = Coalesced(
            self._check,
            "kefu-gap-check",
            log,
            failed="looking for pushes lost on the bus failed; the next loss looks again",
        )

    # --- pushes lost on the bus

    def gap(self) -> None:
        """Pushes for connections here may have been lost: have each look (coalesced)."""
        self._gap.ask()

    async def _check(self) -> None:
        await self.check_connections()

    async def check_connections(self) -> int:
        """Tell every connection here its recipient's stored latest ``seq``, one query per
        :data:`GAP_CHUNK` recipients; return how many were looked at."""
        self.gap_checks += 1
        recipients = self.bus.local_recipients("")
        for i in range(0, len(recipients), GAP_CHUNK):
            async with self.store.read() as conn:
                rows = (await conn.execute(_LATEST_OF, {"rs": recipients[i : i + GAP_CHUNK]})).all()
            for r in rows:
                sink = self.bus.local_sink(r.recipient)
                if sink is not None:
                    sink.check(r.last_seq)
        return len(recipients)

    async def close(self) -> None:
        await self._gap.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Write, commit, then publish what was pushed and run the after-commit hooks. With
        :data:`SEQUENCE_IN` set, the events recorded get their journal positions before the
        commit."""
        top = 0
        async with self.store.write() as conn:
            tx = Tx(conn, self.settings.now())
            yield tx
            if tx.emitted and self.sequence_in is not None and SEQUENCE_IN.get():
                top = await self.sequence_in(conn)
        if tx.pushes:
            await self.bus.publish_many(tx.pushes)
        if top and self.on_sequenced is not None:
            self.on_sequenced(top)
        elif tx.emitted and self.on_events is not None:
            self.on_events()
        for hook in tx.after_commit:
            result = hook()
            if inspect.isawaitable(result):
                await result

    async def latest_seq(self, recipient: str) -> int:
        async with self.store.read() as conn:
            return await latest_seq(conn, recipient)

    async def pushes_after(self, recipient: str, after: int, limit: int = 500) -> list[Push]:
        """Stored pushes with ``seq > after``, oldest first, at most ``limit``."""
        async with self.store.read() as conn:
            rows = await conn.execute(_AFTER, {"r": recipient, "after": after, "n": limit})
            return [Push(recipient, r.seq, r.message) for r in rows]


__all__ += ["STORE_EVENT", "latest_seq", "open_mailbox", "push_text"]
