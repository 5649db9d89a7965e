"""The queue of waiting sessions and their assignment to agents (SPEC §4.2).

A new session waits in a FIFO queue (``status = 'queued'``, ordered by its
``num``). A routing pass gives the oldest waiting session to an agent who is

- ready: top-level state ``002000`` (SPEC §5.1),
- connected to a server node (a ready agent whose link is down would leave the
  visitor waiting; it is routed to as soon as it reconnects), and
- below its capacity (``max_sessions`` open sessions),

preferring the agent with the fewest open sessions, then the one who waited
longest since its last assignment. An agent may also take a waiting session
from the queue by id (``pickUpSession``), even when not ready, within its
capacity.

A pass runs when a session is queued, an agent becomes ready or connects, and
a session closes (capacity freed): :meth:`Router.kick` starts one in the
background, coalescing kicks that come while a pass runs.

The queue is *shown* by ``queue`` pushes: every waiting visitor is told its
position when it changes (``queue {"position": n}``), and every connected
agent gets the waiting list (``queue {"waiting": [...], "total": n}``). These
describe a state, not events: each replaces the one before, so they are
**volatile** (no ``seq``, not stored) and **coalesced** by the
:class:`QueueNotifier`: a change marks the queue dirty after its commit, and
one read of the queue then tells everyone connected to this node what changed,
at most every ``queue_push_interval`` seconds however many sessions moved
meanwhile (other nodes hear "the queue changed" on the bus). A client that
(re)connects gets the state itself: an agent's ``auth`` answer has the
waiting list, a visitor's ``hello`` answer its session with its position.
Stored, per-recipient pushes for each change cost O(queue + agents) writes
per session opened; see docs/decisions.md (D10).
On PostgreSQL, an advisory lock (:meth:`Router.serialise`) makes the
transactions that change the queue take turns, across nodes too: a pass reads
the queue's head only after it holds the lock (READ COMMITTED: each statement
sees what committed before it), and the assignment's ``UPDATE … WHERE status =
'queued'`` would find nothing if the session had left the queue anyway. Two
nodes racing for one session assign it once (``tests/multinode``).
A visitor's message does not take that lock (issue 18): it locks its session's
row (``FOR UPDATE``), so it takes turns with that session's assignment or
closing only, and a new session is decided by the unique index on the
visitor's active session (see :meth:`kefu.server.sessions.Sessions.visitor_send`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.codes import TopState
from kefu.protocol.wire import event_message

from .accounts import Agent, find_agent
from .agents import Change
from .events import EventType, emit
from .hub import AGENT_PREFIX, Hub, Tx, agent_key, visitor_key
from .schema import agents, sessions, visitors
from .settings import Settings
from .store import iso
from .tasks import Coalesced
from .views import fetch_messages, fetch_session, session_view, visitor_view

__all__ = ["PLACE", "QUEUE_ORDER", "ROUTING_LOCK", "QueueNotifier", "Router"]

log = logging.getLogger("kefu.server.routing")
ROUTING_LOCK = 0x6B656676

#: The queue's order: sessions given back to it (``priority`` 1: their agent logged out, was
#: lost, or transferred them there; issue 20) wait at its head, then everyone by arrival.
QUEUE_ORDER: tuple[ColumnElement[Any], ...] = (sessions.c.priority.desc(), sessions.c.num)


def _at_or_ahead() -> ColumnElement[bool]:
    prio: BindParameter[int] = bindparam("prio")
    num: BindParameter[int] = bindparam("num")
    return (sessions.c.priority > prio) | ((sessions.c.priority == prio) & (sessions.c.num <= num))


#: A waiting session's place in the queue (parameters ``prio`` and ``num``: the session's own).
PLACE = select(func.count()).where(sessions.c.status == "queued", _at_or_ahead())


def event(sub_mark: str, payload: Any) -> dict[str, Any]:
    return event_message(sub_mark, payload, mark="event")


class Router:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.s = settings
        self.notifier = QueueNotifier(self, settings.queue_push_interval)
        self._lock = asyncio.Lock()
        self._passes = Coalesced(
            self._pass, "kefu-routing", log, failed="routing pass failed; the next kick retries"
        )

    @property
    def _closed(self) -> bool:
        return self._passes.closed

    # --- kicking passes

    def kick(self) -> None:
        """Run a routing pass soon (one at a time; kicks during a pass run one more)."""
        self._passes.ask()

    async def _pass(self) -> None:
        await self.route()

    async def idle(self) -> None:
        """Wait until no pass runs (for an orderly shutdown)."""
        await self._passes.idle()

    async def close(self) -> None:
        await self._passes.close()
        await self.notifier.close()

    async def on_agent_change(self, change: Change) -> None:
        if change.after.state.top is TopState.idle:  # 002000 and every 002xxx outcome
            self.kick()

    # --- passes

    async def route(self) -> int:
        """Assign waiting sessions until none is left or no agent can take one."""
        assigned = 0
        async with self._lock:
            while not self._closed and await self._route_one():
                assigned += 1
        return assigned

    async def serialise(self, tx: Tx) -> None:
        """Take turns with every transaction that changes the queue (first thing in it).

        SQLite has one writer anyway. On PostgreSQL such transactions lock
        several recipients' push rows (everyone's ``queue`` push); taking this
        advisory lock first keeps two of them from waiting on each other."""
        if not self.hub.store.is_sqlite:
            await tx.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROUTING_LOCK})

    async def _route_one(self) -> bool:
        async with self.hub.transaction() as tx:
            await self.serialise(tx)
            head = (
                await tx.conn.execute(
                    select(sessions.c.id, sessions.c.num)
                    .where(sessions.c.status == "queued")
                    .order_by(*QUEUE_ORDER)
                    .limit(1)
                )
            ).first()
            if head is None:
                return False
            agent = await self._choose_agent(tx)
            if agent is None:
                return False
            await self._assign(tx, head.id, agent)
            return True

    async def _choose_agent(self, tx: Tx) -> Agent | None:
        open_count = (
            select(func.count())
            .where(sessions.c.agent_id == agents.c.id, sessions.c.status == "open")
            .scalar_subquery()
        )
        rows = await tx.conn.execute(
            select(agents.c.id, open_count.label("n"), agents.c.max_sessions, agents.c.last_assigned_at)
            .where(agents.c.state.like("002%"), agents.c.disabled.is_(False))  # ready: top-level 002000
            .order_by(
                open_count, agents.c.last_assigned_at.is_not(None), agents.c.last_assigned_at, agents.c.id
            )
        )
        for r in rows:
            if r.n < r.max_sessions and await self.hub.bus.present(agent_key(r.id)):
                return await find_agent(tx.conn, agent_id=r.id, lock=True)
        return None

    async def _assign(self, tx: Tx, session_id: str, agent: Agent) -> dict[str, Any]:
        (  # raises if the session left the queue meanwhile
            await tx.conn.execute(
                update(sessions)
                .where(sessions.c.id == session_id, sessions.c.status == "queued")
                .values(status="open", agent_id=agent.id, assigned_at=tx.now)
                .returning(sessions.c.num)
            )
        ).scalar_one()
        await tx.conn.execute(update(agents).where(agents.c.id == agent.id).values(last_assigned_at=tx.now))
        row = await fetch_session(tx.conn, session_id)
        assert row is not None
        view = session_view(row)
        history = await fetch_messages(tx.conn, session_id, last=self.s.history_in_assignment)
        await tx.push(agent_key(agent.id), event("sessionAssigned", {**view, "messages": history}))
        await tx.push(visitor_key(row.visitor_id), event("sessionAssigned", visitor_view(view)))
        names = {k: view[k] for k in ("sessionId", "visitorName", "agentName")}
        await emit(tx, EventType.session_assigned, session_id, names)
        self.queue_changed(tx)
        log.info("session %s assigned to %s", session_id, agent.name)
        return view

    async def pick_up(self, agent: Agent, session_id: str) -> dict[str, Any]:
        """``pickUpSession`` (SPEC §4.2): take a waiting session from the queue."""
        async with self._lock, self.hub.transaction() as tx:
            await self.serialise(tx)
            row = await fetch_session(tx.conn, session_id)
            if row is None:
                raise ApiError(code=ErrorCode.no_such_session)
            if row.status == "closed":
                raise ApiError(code=ErrorCode.session_closed)
            if row.status == "open":
                if row.agent_id == agent.id:
                    return session_view(row)  # picked up already: the same answer again
                raise ApiError("the session is another agent's", code=ErrorCode.forbidden)
            me = await find_agent(tx.conn, agent_id=agent.id, lock=True)
            assert me is not None
            n = (
                await tx.conn.execute(
                    select(func.count()).where(sessions.c.agent_id == me.id, sessions.c.status == "open")
                )
            ).scalar_one()
            if n >= me.max_sessions:
                raise ApiError(
                    f"{n} open sessions, the maximum is {me.max_sessions}", code=ErrorCode.no_capacity
                )
            return await self._assign(tx, session_id, me)

    # --- queue pushes

    @staticmethod
    async def _waiting_rows(conn: AsyncConnection) -> list[Any]:
        return list(
            await conn.execute(
                select(
                    sessions.c.id,
                    sessions.c.num,
                    sessions.c.visitor_id,
                    sessions.c.created_at,
                    visitors.c.name,
                )
                .join(visitors, visitors.c.id == sessions.c.visitor_id)
                .where(sessions.c.status == "queued")
                .order_by(*QUEUE_ORDER)
            )
        )

    def queue_changed(self, tx: Tx) -> None:
        """The queue changed in ``tx``: show it once ``tx`` has committed."""
        tx.after_commit.append(self.notifier.changed)

    def _queue_payload(self, waiting: list[Any]) -> dict[str, Any]:
        listed = [
            {"sessionId": w.id, "visitorName": w.name, "since": iso(w.created_at), "position": i + 1}
            for i, w in enumerate(waiting[: self.s.queue_push_limit])
        ]
        return {"waiting": listed, "total": len(waiting)}

    async def queue_snapshot(self) -> dict[str, Any]:
        """The waiting list as the agents' ``queue`` push shows it."""
        async with self.hub.store.read() as conn:
            return self._queue_payload(await self._waiting_rows(conn))

    @staticmethod
    async def position(conn: AsyncConnection, priority: int, session_num: int) -> int:
        """The place of the waiting session (``priority``, ``num``) in the queue, from 1."""
        return (await conn.execute(PLACE, {"prio": priority, "num": session_num})).scalar_one()


class QueueNotifier:
    """Shows the queue to whoever is connected to this node: volatile, coalesced pushes.

    :meth:`changed` marks the queue dirty; one task reads the queue and sends
    each connected agent the waiting list and each connected waiting visitor
    whose place moved its new position, then waits ``interval`` seconds
    before it looks again (changes meanwhile are shown together). On several
    nodes, :meth:`changed` also tells the other nodes through the bus."""

    def __init__(self, router: Router, interval: float) -> None:
        self.router = router
        self.interval = interval
        self.flushes = 0  # how many times the queue was read and shown (tests, benchmarks)
        self._rounds = Coalesced(
            self._show,
            "kefu-queue-pushes",
            log,
            failed="showing the queue failed; the next change shows it",
            interval=interval,
        )
        self._told: dict[str, int] = {}  # visitor recipient → the position it was last told
        #: Told of every queue change, here or on another node (the floor, kefu.server.floor).
        self.listeners: list[Callable[[], None]] = []
        router.hub.bus.on_queue_changed = self._heard

    def changed(self) -> None:
        """The queue changed here: show it, and tell the other nodes."""
        self._heard()
        self.router.hub.bus.queue_changed()

    def _heard(self) -> None:
        if self._rounds.closed:
            return
        for listener in self.listeners:
            listener()
        self._rounds.ask()

    async def _show(self) -> None:
        router = self.router
        bus = router.hub.bus
        async with router.hub.store.read() as conn:
            waiting = await router._waiting_rows(conn)
        self.flushes += 1
        for recipient in bus.local_recipients(AGENT_PREFIX):
            bus.send_volatile(recipient, event("queue", router._queue_payload(waiting)))
        told: dict[str, int] = {}
        for i, w in enumerate(waiting):
            key = visitor_key(w.visitor_id)
            if not bus.connected(key):
                continue
            told[key] = i + 1
            if self._told.get(key) != i + 1:
                bus.send_volatile(key, event("queue", {"position": i + 1}))
        self._told = told

    async def close(self) -> None:
        await self._rounds.close()
