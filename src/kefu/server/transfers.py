"""No lost customer, and transfers of chat sessions (issue 20).

A session moves from its agent to the queue or to another agent in one
transaction (:meth:`Transfers._move`): its row changes, the visitor is told
(``sessionTransferred {sessionId, from, to, reason, position?}``, never the
note), the agent it leaves is told (the same with ``note``), a target agent
gets ``sessionAssigned`` with the history (the last ``history_in_assignment``
messages) and the view's ``transfer {from, reason, note}``, and the journal
records ``session.transferred``.

Why a session moves (``reason``):

- ``transferred``: its agent's ``transferSession`` (to an agent, or back to
  the queue when no agent is named), with an optional note;
- ``agentLoggedOut``: its agent logged out (its own ``logout``, a supervisor's
  ``POST /api/agents/{name}/logout``, any change to ``000000``: the state
  setter's listener, after the commit);
- ``agentLost``: its agent's last connection closed and it did not come back
  within ``session_grace`` seconds;
- ``callTransferred``: the session's call was transferred to another agent and
  the target took it (:meth:`Transfers.follow_call`, in the call's transaction):
  the chat follows the call, with the transfer's note.

A session given back to the queue waits at its head (``priority`` 1, see
:data:`kefu.server.routing.QUEUE_ORDER`): the visitor keeps its place, ahead
of those who came after it, and the next routing pass gives it to a ready
agent with its history. On start, the open sessions of agents who are logged
out (a logout whose listener a crash cut short) go back too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import func, select, update

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.codes import Code

from .accounts import Agent, find_agent
from .agents import Change, is_logged_in
from .events import EventType, emit
from .hub import Hub, Tx, agent_key, visitor_key
from .routing import Router, event
from .schema import agents, calls, sessions
from .sessions import Sessions
from .settings import Settings
from .views import fetch_messages, fetch_session, session_view

__all__ = ["REASONS", "Transfers"]

log = logging.getLogger("kefu.server.transfers")

#: Why a session moved (the ``reason`` of ``sessionTransferred`` and ``session.transferred``).
REASONS = ("transferred", "agentLoggedOut", "agentLost", "callTransferred")


class Transfers:
    def __init__(self, hub: Hub, settings: Settings, router: Router, sessions_: Sessions) -> None:
        self.hub = hub
        self.s = settings
        self.router = router
        self.sessions = sessions_
        self._grace: dict[int, asyncio.Task[None]] = {}
        self._closed = False

    # --- transferSession (the agent's API)

    async def transfer(
        self, agent: Agent, session_id: str, to_name: str | None, note: str | None
    ) -> dict[str, Any]:
        """``transferSession``: the agent's open session to ``to_name``, or back to the queue."""
        async with self.hub.transaction() as tx:
            await self.router.serialise(tx)
            row = await self.sessions.own_session(tx, agent, session_id)
            target = None
            if to_name is not None:
                target = await self._target(tx, agent, to_name)
            view = await self._move(tx, row, agent.name, target, "transferred", note)
        if target is None:
            self.router.kick()
        return view

    async def _target(self, tx: Tx, agent: Agent, name: str) -> Agent:
        if name == agent.name:
            raise ApiError("a session cannot be transferred to its own agent", code=ErrorCode.invalid_field)
        target = await find_agent(tx.conn, name=name, lock=True)
        if target is None or target.disabled:
            raise ApiError(f"no agent named {name!r}", code=ErrorCode.no_such_agent)
        if not is_logged_in(target) or not await self.hub.bus.present(agent_key(target.id)):
            raise ApiError(f"{name} is not logged in or not connected", code=ErrorCode.agent_offline)
        n = (
            await tx.conn.execute(
                select(func.count()).where(sessions.c.agent_id == target.id, sessions.c.status == "open")
            )
        ).scalar_one()
        if n >= target.max_sessions:
            raise ApiError(
                f"{name} has {n} open sessions, the maximum is {target.max_sessions}",
                code=ErrorCode.no_capacity,
            )
        return target

    async def follow_call(self, tx: Tx, call_id: str, from_name: str, to_name: str, note: str | None) -> None:
        """A call went to ``to_name`` (issue 20): its open chat session with ``from_name``, if it
        has one, goes along in the same transaction (no capacity check: the call is taken)."""
        session_id = (
            await tx.conn.execute(select(calls.c.session_id).where(calls.c.id == call_id))
        ).scalar_one_or_none()
        if session_id is None:
            return
        row = (
            await tx.conn.execute(
                select(sessions).where(sessions.c.id == session_id, sessions.c.status == "open")
            )
        ).first()
        source = await find_agent(tx.conn, name=from_name)
        target = await find_agent(tx.conn, name=to_name, lock=True)
        if row is None or source is None or target is None or row.agent_id != source.id:
            return  # closed, or it had moved already
        await self._move(tx, row, from_name, target, "callTransferred", note)

    # --- moving one session (the one place that does it)

    async def _move(
        self, tx: Tx, row: Any, from_name: str, target: Agent | None, reason: str, note: str | None
    ) -> dict[str, Any]:
        record = {"transfer_from": from_name, "transfer_reason": reason, "transfer_note": note}
        where = (sessions.c.id == row.id, sessions.c.status == "open", sessions.c.agent_id == row.agent_id)
        if target is None:
            # SPEC §4.2's FIFO queue, at its head: the visitor keeps its place (issue 20)
            values: dict[str, Any] = {
                "status": "queued",
                "agent_id": None,
                "assigned_at": None,
                "priority": 1,
            }
        else:
            values = {"agent_id": target.id, "assigned_at": tx.now}
            await tx.conn.execute(
                update(agents).where(agents.c.id == target.id).values(last_assigned_at=tx.now)
            )
        done = await tx.conn.execute(update(sessions).where(*where).values(**values, **record))
        if done.rowcount != 1:  # it closed or moved meanwhile
            raise ApiError("the session is no longer the agent's open session", code=ErrorCode.invalid_state)
        fresh = await fetch_session(tx.conn, row.id)
        assert fresh is not None
        view = session_view(fresh)
        told: dict[str, Any] = {
            "sessionId": row.id,
            "from": from_name,
            "to": target.name if target is not None else None,
            "reason": reason,
        }
        if target is None:
            view["position"] = told["position"] = await self.router.position(tx.conn, 1, fresh.num)
            self.router.queue_changed(tx)
        else:
            history = await fetch_messages(tx.conn, row.id, last=self.s.history_in_assignment)
            await tx.push(agent_key(target.id), event("sessionAssigned", {**view, "messages": history}))
        await tx.push(visitor_key(row.visitor_id), event("sessionTransferred", told))
        await tx.push(agent_key(row.agent_id), event("sessionTransferred", {**told, "note": note}))
        await emit(
            tx,
            EventType.session_transferred,
            row.id,
            {**told, "visitorName": view["visitorName"], "note": note, "position": told.get("position")},
        )
        log.info("session %s: %s -> %s (%s)", row.id, from_name, told["to"] or "the queue", reason)
        return view

    async def give_back(self, agent_id: int, reason: str) -> list[str]:
        """Every open session of the agent back to the head of the queue; their ids."""
        moved: list[str] = []
        async with self.hub.transaction() as tx:
            await self.router.serialise(tx)
            agent = await find_agent(tx.conn, agent_id=agent_id)
            if agent is None:
                return moved
            rows = await tx.conn.execute(
                select(sessions)
                .where(sessions.c.agent_id == agent_id, sessions.c.status == "open")
                .order_by(sessions.c.num)
            )
            for row in list(rows):
                await self._move(tx, row, agent.name, None, reason, None)
                moved.append(row.id)
        if moved:
            log.info("agent %s: %d sessions back to the queue (%s)", agent.name, len(moved), reason)
            self.router.kick()
        return moved

    # --- the agent logs out, or is lost

    async def on_agent_change(self, change: Change) -> None:
        """The state setter's listener: a logout gives the agent's sessions back."""
        if change.after.state.code is Code.notLogin and change.before.state.code is not Code.notLogin:
            await self.give_back(change.after.id, "agentLoggedOut")

    def agent_gone(self, agent_id: int) -> None:
        """The agent's connection closed: its sessions go back unless it returns within the grace."""
        if self._closed:
            return
        old = self._grace.pop(agent_id, None)
        if old is not None:
            old.cancel()
        self._grace[agent_id] = asyncio.create_task(
            self._grace_over(agent_id), name=f"kefu-session-grace-{agent_id}"
        )

    def agent_back(self, agent_id: int) -> None:
        task = self._grace.pop(agent_id, None)
        if task is not None:
            task.cancel()

    async def _grace_over(self, agent_id: int) -> None:
        await asyncio.sleep(self.s.session_grace)
        if self._grace.get(agent_id) is asyncio.current_task():
            del self._grace[agent_id]
        if await self.hub.bus.present(agent_key(agent_id)):
            return  # back, on this node or another
        try:
            await self.give_back(agent_id, "agentLost")
        except Exception:
            log.exception("giving back the sessions of agent %s failed", agent_id)

    async def start(self) -> None:
        """Give back the open sessions of agents who are logged out (a crash after a logout)."""
        async with self.hub.store.read() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(agents.c.id)
                        .distinct()
                        .join(sessions, sessions.c.agent_id == agents.c.id)
                        .where(sessions.c.status == "open", agents.c.state == Code.notLogin.value)
                    )
                ).scalars()
            )
        for agent_id in ids:
            await self.give_back(agent_id, "agentLoggedOut")

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._grace.values())
        self._grace.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
