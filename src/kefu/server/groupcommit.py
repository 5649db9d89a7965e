"""Group commit: the messages of many senders stored in one transaction.

Theory of operation
-------------------
A chat message to an existing session is the server's commonest write. Alone,
it is a transaction of seven statements and a commit (the fsync on SQLite):
look for its ``clientMsgId``, find the session, store the message, bump the
session's journal stream and record the event, bump the recipient's push
``seq`` and store the push. :class:`MessageWriter` takes the messages that
arrive while a transaction is running and writes them **together** in the
next one, with a fixed number of statements per batch (each an ``IN`` read or
an ``executemany``), not per message:

1. the repeats: every ``clientMsgId`` of the batch in one read;
2. the sessions: the visitors' active sessions ``FOR UPDATE`` (their
   assignment or closing takes turns with the messages, D24), the agents'
   sessions by id;
3. the counters: the journal streams and the mailboxes of the batch, read
   ``FOR UPDATE`` in key order, then set to their new values in one
   ``executemany`` (rows not there yet are inserted; on PostgreSQL one
   ``UPDATE … RETURNING`` whose ``WITH`` locks them in key order, D68, both
   tables' in one statement, D86) — each
   message gets the next ``seq`` of its recipient, gap-free, in the order the
   messages came;
4. the rows: messages, journal events and pushes, one ``executemany`` each;
5. one commit; then the journal's sequencer gives the events their public
   positions in its own transaction, coalesced over batches (D20; giving them
   inside the batch's transaction is a measured-slower variant on PostgreSQL,
   D52; SQLite does, D61, and so does a lone message on PostgreSQL, D67).

On PostgreSQL several batches may be in flight (:data:`PG_WRITERS`). While one
is, a free writer starts the next only once :data:`GATHER` messages wait (or
no batch is in flight any more): a busy node writes fewer, bigger batches,
and a quiet one still writes a lone message at once (D82).

The statements run on the driver connection under SQLAlchemy's, each compiled
once per dialect (:mod:`kefu.server.driversql`, D73); on PostgreSQL the rows of
step 4 are one statement (D76), and a lone message is a batch of one too.

Each sender awaits its own future, resolved only **after** the commit that
holds its message (acknowledged = stored); then the batch's pushes go to the
bus in one call. The batch is bounded (:data:`MAX_BATCH`). A message the batch
cannot decide alone — a visitor with no active session (the queue's lock),
or any failure of the batch's transaction (an idempotency race on another
node, a deadlock, a full disk) — is answered :data:`ALONE`: its sender runs
the general, one-message path, so an error fails exactly the message it
belongs to. A batch of one (a quiet server) costs less than the general
path (D73); there is no timer: a batch is what arrived during the previous commit.
On SQLite a lone message with nothing queued behind it commits on the event loop,
sparing two thread wake-ups; other batches commit in the thread while the loop reads
the next (D89).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, and_, bindparam, insert, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.integrations import EVENT_INFO, EventType, stream_key

from .counters import MAILBOXES, STREAMS, take_all
from .driversql import DriverSQL, PerDialect, driver_sql, one_of
from .events import RECORD
from .hub import SEQUENCE_IN, STORE_EVENT, Hub, Push, agent_key, push_text, visitor_key
from .routing import Router, event
from .schema import messages, sessions
from .store import ordered_ids
from .views import message_view

__all__ = [
    "ACTIVE",
    "ALONE",
    "GATHER",
    "MAX_BATCH",
    "PG_WRITERS",
    "STORE_MESSAGE",
    "MessageJob",
    "MessageWriter",
    "not_own",
]

log = logging.getLogger("kefu.server.groupcommit")

#: The most messages one transaction stores.
MAX_BATCH: Final = 64

#: Batches in flight at once on PostgreSQL (SQLite: one, its single writer).
PG_WRITERS: Final = 4

#: PostgreSQL: while a batch is in flight, the messages that wait to start the next (D82).
GATHER: Final = 32

#: A job's answer when it must go the general, one-message way.
ALONE: Final = object()


@dataclass(slots=True)
class MessageJob:
    """One message waiting for its batch. ``visitor_id`` for a visitor's message
    (its active session is looked up), ``agent_id`` and ``session_id`` for an agent's;
    ``alone`` runs the general, one-message path for it."""

    sender_key: str
    text: str
    client_msg_id: str | None
    alone: Callable[[], Awaitable[Any]]
    visitor_id: str | None = None
    agent_id: int | None = None
    session_id: str | None = None
    fut: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_REPEAT_COLUMNS = (
    messages.c.session_id,
    messages.c.id,
    messages.c.sender,
    messages.c.sender_key,
    messages.c.client_msg_id,
    messages.c.text,
    messages.c.created_at,
)


@functools.cache
def _repeats(n: int) -> Select[Any]:
    """The read of ``n`` idempotency keys: ``(sender_key = :k0 AND client_msg_id = :c0) OR …``,
    one index search per key (the unique index on both columns; ``IN`` on each column
    searched every pair of the two lists, a row-value ``IN`` scanned the table). One
    statement per ``n`` (at most :data:`MAX_BATCH`), built once."""
    return select(*_REPEAT_COLUMNS).where(
        or_(
            *(
                and_(
                    messages.c.sender_key == bindparam(f"k{i}"),
                    messages.c.client_msg_id == bindparam(f"c{i}"),
                )
                for i in range(n)
            )
        )
    )


_SESSION_COLUMNS = (
    sessions.c.id,
    sessions.c.num,
    sessions.c.priority,
    sessions.c.status,
    sessions.c.agent_id,
    sessions.c.visitor_id,
)
#: A session not closed, the value written in the statement: as a parameter, SQLite prepared
#: the statement again at every run (~20-50 µs), a parameter the partial index
#: ``uq_sessions_active_visitor`` depends on making its plan depend on the value (D73).
ACTIVE = sessions.c.status != literal_column("'closed'")
_ACTIVE_OF = PerDialect(
    lambda pg: (
        select(*_SESSION_COLUMNS)
        .where(one_of(sessions.c.visitor_id, "vs", pg), ACTIVE)
        .order_by(sessions.c.id)
        .with_for_update()
    )
)
_BY_ID = PerDialect(lambda pg: select(*_SESSION_COLUMNS).where(one_of(sessions.c.id, "ss", pg)))
#: Store a message (the one-message path of kefu.server.sessions uses it too).
STORE_MESSAGE = insert(messages).values(
    id=bindparam("id"),
    session_id=bindparam("sid"),
    sender=bindparam("sender"),
    sender_key=bindparam("k"),
    text=bindparam("text"),
    client_msg_id=bindparam("c"),
    created_at=bindparam("t"),
)
_MESSAGE_STREAM = EVENT_INFO[EventType.message_created].stream


def _repeat_view(row: Any) -> dict[str, Any]:
    return {
        **message_view(row.session_id, row.id, row.sender, row.text, row.created_at),
        "clientMsgId": row.client_msg_id,
        "repeated": True,
    }


class MessageWriter:
    """The writer tasks of a server node, each storing queued messages a batch at a time.

    SQLite has one writer (the store's write lock), so one task; on PostgreSQL
    :data:`PG_WRITERS` batches may be in flight at once (row locks order them:
    each batch locks its sessions, journal streams and mailboxes in key order),
    so one batch's commit round trip does not stop the next batch from starting."""

    def __init__(
        self,
        hub: Hub,
        router: Router,
        *,
        max_batch: int = MAX_BATCH,
        writers: int = PG_WRITERS,
        gather: int = GATHER,
    ) -> None:
        self.hub = hub
        self.router = router
        self.max_batch = max_batch
        #: (The benchmark switches these four to compare.) Sequence the journal inside the
        #: batch's transaction: on SQLite (D61), whose writers take turns anyway; not on
        #: PostgreSQL, where the sequencer's lock held to the commit would make them (D52).
        self.sequence_in = hub.store.is_sqlite
        #: PostgreSQL, a lone message: its own transaction gives the journal's positions (D67),
        #: not a second transaction (a second WAL flush) after it.
        self.sequence_lone = not hub.store.is_sqlite
        #: PostgreSQL, a lone message: the batch's statements on the driver (D73), not the
        #: general path through SQLAlchemy (D67's).
        self.lone_batch = True
        self.commit_lone_here = True  #: SQLite: a quiet node's lone message commits on the loop
        self.writers = 1 if hub.store.is_sqlite else max(1, writers)
        self._queue: deque[MessageJob] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.gather = gather  #: while a batch is in flight, the messages to wait for (D82)
        self.in_flight = 0  #: batches being written now
        #: Batches written and messages in them (tests, benchmarks).
        self.batches = 0
        self.written = 0
        self.failed = 0  #: batches that failed, their messages sent alone

    @property
    def waiting(self) -> int:
        """Messages queued for a batch not started yet (tests, benchmarks)."""
        return len(self._queue)

    async def send(self, job: MessageJob) -> Any:
        """The reply to the job's message, stored in a batch or, when the batch cannot
        decide it, by the general path (``job.alone``)."""
        done = await self.submit(job)
        return await job.alone() if done is ALONE else done

    async def submit(self, job: MessageJob) -> Any:
        """The reply to the job's message once its batch has committed, or :data:`ALONE`."""
        if self._closed:
            return ALONE
        self._queue.append(job)
        self._wake.set()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"kefu-group-commit-{i}") for i in range(self.writers)
            ]
        return await job.fut

    async def close(self) -> None:
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue:
            job = self._queue.popleft()
            if not job.fut.done():
                job.fut.set_result(ALONE)

    async def _run(self) -> None:
        while True:
            # a batch in flight: the next one starts when enough wait, or when none is (D82)
            while not self._queue or (self.in_flight and len(self._queue) < self.gather):
                self._wake.clear()
                await self._wake.wait()
            batch: list[MessageJob] = []
            while self._queue and len(batch) < self.max_batch:
                job = self._queue.popleft()
                if not job.fut.done():  # its sender gave up (cancelled) before it was written
                    batch.append(job)
            if len(batch) == 1 and self.writers > 1 and not self.lone_batch:
                # PostgreSQL, one message, lone_batch off: the general path (before D76 it
                # took fewer round trips than a batch's statements through SQLAlchemy); the
                # writer runs it, so messages that come meanwhile still form the next batch
                await self._one(batch[0])
            elif batch:
                self.in_flight += 1
                try:
                    await self._write_batch(batch)
                finally:
                    self.in_flight -= 1
                    self._wake.set()  # the writers waiting for this batch to end look again

    async def _one(self, job: MessageJob) -> None:
        token = SEQUENCE_IN.set(self.sequence_lone)
        try:
            result = await job.alone()
        except asyncio.CancelledError:
            job.fut.cancel()
            raise
        except Exception as exc:
            if not job.fut.done():
                job.fut.set_exception(exc)
            return
        finally:
            SEQUENCE_IN.reset(token)
        if not job.fut.done():
            job.fut.set_result(result)

    async def _write_batch(self, batch: list[MessageJob]) -> None:
        try:
            outcomes, pushes, top = await self._write(batch)
        except asyncio.CancelledError:
            for job in batch:
                if not job.fut.done():
                    job.fut.set_result(ALONE)
            raise
        except Exception as exc:
            # nothing of the batch was stored: each message again alone, so that an error
            # (an idempotency race, a deadlock, a full disk) fails only its own message
            self.failed += 1
            log.info("a batch of %d messages failed (%r); each goes alone", len(batch), exc)
            for job in batch:
                if not job.fut.done():
                    job.fut.set_result(ALONE)
            return
        self.batches += 1
        self.written += len(batch)
        try:
            if pushes:
                await self.hub.bus.publish_many(pushes)
            if top and self.hub.on_sequenced is not None:
                self.hub.on_sequenced(top)
            elif self.hub.on_events is not None:
                self.hub.on_events()
        except Exception:
            # stored all the same: each receiver catches up from the database on its next push,
            # its reconnection or the bus's look for lost pushes (D25)
            log.exception("a batch's pushes were not all handed to the bus")
        finally:
            # committed: every sender gets its answer, whatever happened after the commit
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.fut.set_exception(outcome)
                else:
                    job.fut.set_result(outcome)

    async def _write(self, batch: list[MessageJob]) -> tuple[list[Any], list[Push], int]:
        lone = len(batch) == 1 and self.commit_lone_here  # nothing waits behind it: on the loop (D89)
        quiet = (lambda: not self._queue) if lone else None
        async with self.hub.store.write(commit_here=quiet) as conn:
            now = self.hub.settings.now()
            outcomes, pushes = await self._statements(conn, await driver_sql(conn), now, batch)
            top = 0
            if (
                (self.sequence_in or (self.sequence_lone and len(batch) == 1))
                and self.hub.sequence_in is not None
                and any(isinstance(o, dict) and not o.get("repeated") for o in outcomes)
            ):
                top = await self.hub.sequence_in(conn)
            return outcomes, pushes, top

    async def _statements(
        self, conn: AsyncConnection, db: DriverSQL, now: datetime, batch: list[MessageJob]
    ) -> tuple[list[Any], list[Push]]:
        # 1. repeats: stored before, or earlier in this batch
        keys = sorted({(j.sender_key, j.client_msg_id) for j in batch if j.client_msg_id is not None})
        repeats: dict[tuple[str, str], Any] = {}
        if keys:
            params = {f"{p}{i}": v for i, (k, c) in enumerate(keys) for p, v in (("k", k), ("c", c))}
            for r in await db.rows(_repeats(len(keys)), params):
                repeats[(r.sender_key, r.client_msg_id)] = _repeat_view(r)
        # 2. sessions
        vids = sorted({j.visitor_id for j in batch if j.visitor_id is not None})
        sids = sorted({j.session_id for j in batch if j.session_id is not None})
        active = {r.visitor_id: r for r in await db.rows(_ACTIVE_OF, {"vs": vids})} if vids else {}
        by_id = {r.id: r for r in await db.rows(_BY_ID, {"ss": sids})} if sids else {}
        # each job: its outcome, or what it stores (session row, sender, recipient or None)
        outcomes: list[Any] = []
        plans: list[tuple[int, Any, str, str | None]] = []
        seen: dict[tuple[str, str], int] = {}  # idempotency keys stored by this batch → job
        for i, job in enumerate(batch):
            key = (job.sender_key, job.client_msg_id) if job.client_msg_id is not None else None
            if key is not None and key in repeats:
                outcomes.append(repeats[key])
                continue
            if key is not None and key in seen:
                outcomes.append(("same-as", seen[key]))
                continue
            if job.visitor_id is not None:
                row = active.get(job.visitor_id)
                if row is None:
                    outcomes.append(ALONE)  # a new session: the queue's way (Sessions.visitor_send)
                    continue
                to = agent_key(row.agent_id) if row.status == "open" and row.agent_id is not None else None
                plans.append((i, row, "visitor", to))
            else:
                row = by_id.get(job.session_id)
                problem = not_own(row, job.agent_id)
                if problem is not None or row is None:
                    outcomes.append(problem)
                    continue
                plans.append((i, row, "agent", visitor_key(row.visitor_id)))
            if key is not None:
                seen[key] = i
            outcomes.append(None)
        pushes: list[Push] = []
        if plans:
            pushes = await self._store(db, now, batch, plans, outcomes)
        # queued sessions: the visitor is told its place (after the batch's own rows)
        for i, row, sender, _ in plans:
            if sender == "visitor" and row.status == "queued":
                outcomes[i]["position"] = await self.router.position(conn, row.priority, row.num)
        for i, o in enumerate(outcomes):
            if isinstance(o, tuple):
                first = outcomes[o[1]]
                outcomes[i] = {**{k: v for k, v in first.items() if k != "status"}, "repeated": True}
                outcomes[i].pop("position", None)
        return outcomes, pushes

    async def _store(
        self,
        db: DriverSQL,
        now: datetime,
        batch: list[MessageJob],
        plans: list[tuple[int, Any, str, str | None]],
        outcomes: list[Any],
    ) -> list[Push]:
        streams: dict[str, int] = {}
        boxes: dict[str, int] = {}
        for _, row, _, to in plans:
            s = stream_key(_MESSAGE_STREAM, row.id)
            streams[s] = streams.get(s, 0) + 1
            if to is not None:
                boxes[to] = boxes.get(to, 0) + 1
        stream_at, box_at = await take_all(db, [(STREAMS, streams), (MAILBOXES, boxes)])
        stored: list[dict[str, Any]] = []
        recorded: list[dict[str, Any]] = []
        pushed: list[dict[str, Any]] = []
        pushes: list[Push] = []
        ids = ordered_ids(2 * len(plans))
        for n, (i, row, sender, to) in enumerate(plans):
            job = batch[i]
            mid = ids[2 * n]
            msg = message_view(row.id, mid, sender, job.text, now)
            stored.append(
                {
                    "id": mid,
                    "sid": row.id,
                    "sender": sender,
                    "k": job.sender_key,
                    "text": job.text,
                    "c": job.client_msg_id,
                    "t": now,
                }
            )
            s = stream_key(_MESSAGE_STREAM, row.id)
            stream_at[s] += 1
            recorded.append(
                {
                    "id": ids[2 * n + 1],
                    "type": EventType.message_created.value,
                    "s": s,
                    "seq": stream_at[s],
                    "data": msg,
                    "t": now,
                }
            )
            if to is not None:
                box_at[to] += 1
                seq = box_at[to]
                text = push_text(event("message", msg), seq)
                pushed.append({"r": to, "s": seq, "m": text, "t": now})
                pushes.append(Push(to, seq, text))
            reply = {**msg, "clientMsgId": job.client_msg_id}
            if sender == "visitor":
                reply["status"] = row.status
            outcomes[i] = reply
        await db.insert_all([(STORE_MESSAGE, stored), (RECORD, recorded), (STORE_EVENT, pushed)])
        return pushes


def not_own(row: Any, agent_id: int | None) -> ApiError | None:
    """Why the agent ``agent_id`` may not write in the session ``row``, or ``None``."""
    if row is None:
        return ApiError(code=ErrorCode.no_such_session)
    if row.agent_id != agent_id:
        if row.status == "queued":
            return ApiError("the session is waiting in the queue; pick it up first", code=ErrorCode.forbidden)
        return ApiError("the session is another agent's", code=ErrorCode.forbidden)
    if row.status == "closed":
        return ApiError(code=ErrorCode.session_closed)
    return None
