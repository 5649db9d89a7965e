"""The event journal: every change integrators may care about, recorded with the change.

Theory of operation
-------------------
A service that changes something calls :func:`emit` inside its transaction
(one call per event): the event gets its stream's next ``seq`` (one row per
stream in ``journal_streams``, ``UPDATE … RETURNING``: gap-free, serialised by
the row's lock like the push sequences of :mod:`kefu.server.hub`) and is
written to ``journal``. It commits or rolls back with the change.

The public cursor is ``journal.pos``. It cannot be the insert order
(``num``): on PostgreSQL transactions commit in another order than they
insert, so a reader at cursor 7 could later see 6 appear and skip it. So
``pos`` is given after the commit by the **sequencer** (:meth:`Journal.sequence`):
one transaction at a time (an advisory lock across nodes, the store's write
lock on SQLite) numbers the committed, unsequenced events in ``num`` order and
fans each one out to the webhooks that want it (``webhook_deliveries``). A
reader sees a batch of positions all at once, never a hole that fills later.
Events of one stream keep their order: the stream row's lock makes the second
transaction insert after the first committed.

A group-commit batch of chat messages (:mod:`kefu.server.groupcommit`) can run
the sequencer *inside* its own transaction, as its last statements
(:meth:`Journal.sequence_in`; ``MessageWriter.sequence_in``, off by default:
measured no faster, D52): under the same lock, it numbers the events
committed before it and then its own, and the positions become visible with
its commit — still in commit order (whoever holds the lock commits before the
next one reads the top), still given only once committed, and per-stream order
holds (an earlier transaction of the same stream committed before this one
could lock the stream's row, so its events are numbered first).

The sequencer runs after a commit that emitted (``Hub.on_events``), at most once
every ``sequence_every`` seconds (D85: under load, one run numbers the events
of the batches committed meanwhile, where it ran once a batch), and every
``events_poll`` seconds (events of other nodes, and any left unsequenced by a
node that died between its commit and its sequencing). Who waits for new events
(the SSE stream, the webhook workers) calls :meth:`Journal.wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol.call import Call, Effect, EndEffect, MemberEffect, MemberStatus, TransferEffect
from kefu.protocol.integrations import EVENT_INFO, EventType, matches, stream_key

from .driversql import driver_sql
from .hub import Hub, Tx
from .schema import journal, journal_streams, webhook_deliveries, webhooks
from .settings import Settings
from .store import aware, ordered_ids

__all__ = [
    "JOURNAL_LOCK",
    "RECORD",
    "EventType",
    "Journal",
    "emit",
    "emit_agent_state",
    "emit_call_connected",
    "emit_call_effect",
    "envelope",
]

log = logging.getLogger("kefu.server.events")

JOURNAL_LOCK = 0x6B656677  # PostgreSQL advisory lock id of the sequencer

_BUMP = (
    update(journal_streams)
    .where(journal_streams.c.stream == bindparam("s"))
    .values(last_seq=journal_streams.c.last_seq + 1)
    .returning(journal_streams.c.last_seq)
)
_NEW_STREAM = insert(journal_streams).values(stream=bindparam("s"), last_seq=1)
RECORD = insert(journal).values(
    id=bindparam("id"),
    type=bindparam("type"),
    stream=bindparam("s"),
    seq=bindparam("seq"),
    data=bindparam("data"),
    created_at=bindparam("t"),
)

# the sequencer's statements, built once (it runs after every commit that emitted, D42)
_SEQUENCER_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_TOP = select(func.coalesce(func.max(journal.c.pos), 0))
# the first ``n`` unsequenced events in ``num`` order get the positions after the top, in one
# statement (it read them, read the top and updated them one by one: 3 trips and n updates);
# PostgreSQL finds them by the partial index ``ix_journal_unsequenced``, in order (D83)
_NEXT = (
    select(
        journal.c.num,
        (_TOP.scalar_subquery() + func.row_number().over(order_by=journal.c.num)).label("p"),
    )
    .where(journal.c.pos.is_(None))
    .order_by(journal.c.num)
    .limit(bindparam("n"))
    .subquery()
)
_GIVE_POS = (
    update(journal)
    .where(journal.c.num == _NEXT.c.num)
    .values(pos=_NEXT.c.p)
    .returning(journal.c.num, journal.c.type, journal.c.pos)
)
_HOOKS = select(webhooks.c.id, webhooks.c.events)
_DELIVER = insert(webhook_deliveries).values(
    webhook_id=bindparam("w"),
    event_num=bindparam("e"),
    pos=bindparam("p"),
    status="pending",
    attempts=0,
    next_at=bindparam("t"),
    created_at=bindparam("t"),
)


async def emit(tx: Tx, event_type: EventType, ident: str | int, data: dict[str, Any]) -> None:
    """Record one event about ``ident`` (an agent's name, a session's or a call's id) in ``tx``."""
    stream = stream_key(EVENT_INFO[event_type].stream, ident)
    seq: int | None = (await tx.conn.execute(_BUMP, {"s": stream})).scalar_one_or_none()
    if seq is None:
        seq = 1
        await tx.conn.execute(_NEW_STREAM, {"s": stream})
    await tx.conn.execute(
        RECORD,
        {
            "id": ordered_ids(1)[0],
            "type": event_type.value,
            "s": stream,
            "seq": seq,
            "data": data,
            "t": tx.now,
        },
    )
    tx.emitted += 1


def envelope(row: Any) -> dict[str, Any]:
    """What integrators receive for a ``journal`` row (webhook body and stream item alike)."""
    at = aware(row.created_at)
    return {
        "id": row.id,
        "type": row.type,
        "at": at.isoformat() if at is not None else None,
        "stream": row.stream,
        "seq": row.seq,
        "cursor": str(row.pos),
        "data": row.data,
    }


class Journal:
    """The sequencer, the reads of the journal, and the wake-ups of who waits for it."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.s = settings
        self.top = 0  # the highest pos this node has seen
        self._new = asyncio.Event()  # set (and replaced) when pos grows
        self._kicked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # the loop's sequencer runs (tests, benchmarks)
        hub.on_events = self.kick
        hub.sequence_in = self.sequence_in
        hub.on_sequenced = self.seen

    async def start(self) -> None:
        await self.sequence()  # what a crash left unsequenced
        self.top = await self._top()
        self._task = asyncio.create_task(self._loop(), name="kefu-journal")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._wake()  # waiters look once more and find the journal closed

    @property
    def closed(self) -> bool:
        return self._task is None

    def kick(self) -> None:
        """Events committed here: sequence them soon."""
        self._kicked.set()

    def seen(self, top: int) -> None:
        """Positions up to ``top`` were given by a transaction that has committed."""
        if top > self.top:
            self.top = top
            self._wake()

    async def _loop(self) -> None:
        clock = asyncio.get_running_loop()
        ran = -self.s.sequence_every  # loop time of the last run
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kicked.wait(), self.s.events_poll)
            rest = ran + self.s.sequence_every - clock.time()
            if rest > 0:  # ran a moment ago: what commits meanwhile is numbered by one run (D85)
                await asyncio.sleep(rest)
            self._kicked.clear()
            ran = clock.time()
            self.runs += 1
            try:
                top = await self.sequence()
                if not top:
                    top = await self._top()  # other nodes' events
            except Exception:
                log.exception("sequencing the journal failed; trying again in %.1f s", self.s.events_poll)
                continue
            if top > self.top:
                self.top = top
                self._wake()

    def _wake(self) -> None:
        new, self._new = self._new, asyncio.Event()
        new.set()

    async def wait(self, after: int, seconds: float) -> None:
        """Until an event past ``after`` is known (or ``seconds`` pass, or the journal closes)."""
        if self.top > after or self.closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new.wait(), seconds)

    async def _top(self) -> int:
        async with self.hub.store.read() as conn:
            top: int = (await conn.execute(_TOP)).scalar_one()
            return top

    async def sequence(self, batch: int = 500) -> int:
        """Give the committed, unsequenced events their ``pos`` and their webhook deliveries;
        the highest position given, or 0 when there was nothing to sequence."""
        top = 0
        while True:
            async with self.hub.store.write() as conn:
                given, top_now = await self._give(conn, batch)
            if not given:
                return top
            top = top_now
            if given < batch:
                return top  # that was all: no second transaction to find nothing (issue 18)

    async def sequence_in(self, conn: AsyncConnection, batch: int = 500) -> int:
        """:meth:`sequence` as the last statements of the caller's transaction (D52): the
        events committed before it, then its own. The highest position given, or 0; the
        caller hands it to :meth:`seen` after its commit."""
        given, top = await self._give(conn, batch)
        if given == batch:
            self.kick()  # more than one batch waits: the sequencer's loop goes on
        return top

    async def _give(self, conn: AsyncConnection, batch: int) -> tuple[int, int]:
        """One sequencer step in ``conn``'s transaction: how many got a position, the highest."""
        db = await driver_sql(conn)  # its hot statements on the driver (D73)
        if db.postgresql:
            await db.rows(_SEQUENCER_LOCK, {"k": JOURNAL_LOCK})  # held until the commit
        rows = sorted(await db.rows(_GIVE_POS, {"n": batch}), key=lambda r: r.pos)
        if not rows:
            return 0, 0
        hooks = await db.rows(_HOOKS)
        now = self.s.now()
        wanted = [
            {"w": h.id, "e": r.num, "p": r.pos, "t": now}
            for r in rows
            for h in hooks
            if matches(h.events, r.type)
        ]
        if wanted:
            await db.many(_DELIVER, wanted)
        log.debug("sequenced %d events (%d deliveries)", len(rows), len(wanted))
        return len(rows), rows[-1].pos

    async def after(self, cursor: int, limit: int) -> list[dict[str, Any]]:
        """The events with ``pos > cursor``, in order, at most ``limit``."""
        async with self.hub.store.read() as conn:
            rows = await conn.execute(
                select(journal).where(journal.c.pos > cursor).order_by(journal.c.pos).limit(limit)
            )
            return [envelope(r) for r in rows]

    async def cursor_of(self, event_id: str) -> int | None:
        """The cursor of the event with this id (a receiver may resume from an event id)."""
        async with self.hub.store.read() as conn:
            return (await conn.execute(select(journal.c.pos).where(journal.c.id == event_id))).scalar()


async def emit_call_effect(tx: Tx, call: Call, f: Effect) -> None:
    """The events of a call's effect: a member ringing, joined or gone; the call ended."""
    if isinstance(f, MemberEffect):
        member = {"callId": call.id, "kind": f.kind.value, "name": f.name, "role": f.role}
        if f.status is MemberStatus.invited:
            await emit(tx, EventType.call_ringing, call.id, {**member, "flow": call.flow.value})
        elif f.status is MemberStatus.joined:
            await emit(tx, EventType.call_member_joined, call.id, member)
        else:
            left = {**member, "outcome": f.status.value, "reason": f.reason}
            await emit(tx, EventType.call_member_left, call.id, left)
    elif isinstance(f, EndEffect):
        ended = {"callId": call.id, "flow": call.flow.value, "endedBy": f.by, "reason": f.reason}
        await emit(tx, EventType.call_ended, call.id, ended)
    elif isinstance(f, TransferEffect):  # issue 20
        transferred = {
            "callId": call.id,
            "kind": f.kind,
            "from": f.from_agent,
            "to": f.to_agent,
            "note": f.note,
            "outcome": f.outcome,
            "visitorName": call.visitor,
        }
        await emit(tx, EventType.call_transferred, call.id, transferred)


async def emit_call_connected(tx: Tx, call: Call) -> None:
    data = {"callId": call.id, "flow": call.flow.value, "primary": call.primary, "visitorName": call.visitor}
    await emit(tx, EventType.call_connected, call.id, data)


async def emit_agent_state(tx: Tx, name: str, new: str, payload: dict[str, Any]) -> None:
    """``agent.state_changed`` from the ``state`` push's payload (kefu.server.agents)."""
    keep = ("old", "flow", "event", "reason", "callId")
    data = {"agentName": name, "new": new, **{k: payload[k] for k in keep}}
    await emit(tx, EventType.agent_state_changed, name, data)
