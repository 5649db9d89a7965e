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
background, coalescing kicks that come while a pass runs. Every waiting
visitor is told its position when it changes (``queue {"position": n}``), and
every logged-in agent gets the waiting list (``queue {"waiting": [...]}``).
On PostgreSQL, an advisory lock (:meth:`Router.serialise`) makes the
transactions that change the queue take turns, across nodes too: a pass reads
the queue's head only after it holds the lock (READ COMMITTED: each statement
sees what committed before it), and the assignment's ``UPDATE … WHERE status =
'queued'`` would find nothing if the session had left the queue anyway. Two
nodes racing for one session assign it once (``tests/multinode``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.codes import Code, TopState
from kefu.protocol.wire import event_message

from .accounts import Agent, find_agent
from .agents import Change
from .hub import Hub, Tx, agent_key, visitor_key
from .schema import agents, sessions, visitors
from .settings import Settings
from .store import iso
from .views import fetch_messages, fetch_session, session_view

__all__ = ["ROUTING_LOCK", "Router"]

log = logging.getLogger("kefu.server.routing")
ROUTING_LOCK = 0x6B656676


def event(sub_mark: str, payload: Any) -> dict[str, Any]:
    return event_message(sub_mark, payload, mark="event")


class Router:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.s = settings
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._closed = False

    # --- kicking passes

    def kick(self) -> None:
        """Run a routing pass soon (one at a time; kicks during a pass run one more)."""
        if self._closed:
            return
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="kefu-routing")

    async def _run(self) -> None:
        while self._again and not self._closed:
            self._again = False
            try:
                await self.route()
            except Exception:
                log.exception("routing pass failed; the next kick retries")

    async def idle(self) -> None:
        """Wait until no pass runs (for an orderly shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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
                    .order_by(sessions.c.num)
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
        num = (
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
        await tx.push(visitor_key(row.visitor_id), event("sessionAssigned", view))
        await self.left_queue(tx, num)
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

    async def _waiting(self, tx: Tx) -> list[Any]:
        return await self._waiting_rows(tx.conn)

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
                .order_by(sessions.c.num)
            )
        )

    async def joined_queue(self, tx: Tx, session_num: int) -> None:
        """A session was queued: tell its visitor its position, and the agents the queue."""
        waiting = await self._waiting(tx)
        for i, w in enumerate(waiting):
            if w.num == session_num:
                await tx.push(visitor_key(w.visitor_id), event("queue", {"position": i + 1}))
        await self._tell_agents(tx, waiting)

    async def left_queue(self, tx: Tx, session_num: int) -> None:
        """A session left the queue: everyone behind it moved up one place."""
        waiting = await self._waiting(tx)
        for i, w in enumerate(waiting):
            if w.num > session_num:
                await tx.push(visitor_key(w.visitor_id), event("queue", {"position": i + 1}))
        await self._tell_agents(tx, waiting)

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

    async def _tell_agents(self, tx: Tx, waiting: list[Any]) -> None:
        payload = self._queue_payload(waiting)
        ids = await tx.conn.execute(
            select(agents.c.id).where(agents.c.state != Code.notLogin.value).order_by(agents.c.id)
        )
        for r in list(ids):
            await tx.push(agent_key(r.id), event("queue", payload))

    async def position(self, tx: Tx, session_num: int) -> int:
        return (
            await tx.conn.execute(
                select(func.count()).where(sessions.c.status == "queued", sessions.c.num <= session_num)
            )
        ).scalar_one()
