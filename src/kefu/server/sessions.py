"""IM sessions: messages both ways, closing, and the queries of SPEC §4.6.

A visitor's first message opens a session (queued, FIFO); later ones go to
the same session until it closes. Every message is stored before anyone
hears of it, in order (``messages.num``), and pushed to the other side as
``message``. A repeated ``clientMsgId`` (the sender's idempotency key) gets
the first result back and stores nothing new (reliability F11).

A message to an existing session is stored by group commit (many senders'
messages in one transaction, :mod:`kefu.server.groupcommit`, D42); a first
message, and any message the batch could not decide, takes the one-message
path below.

Either side closes a session; both get ``sessionClosed {sessionId, by,
reason}`` (the plugin reports it to the SDK as ``chatCloseCB``, SPEC §3.2).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode

from .accounts import Agent
from .events import EventType, emit
from .groupcommit import ACTIVE, STORE_MESSAGE, MessageJob, MessageWriter, not_own
from .hub import Hub, Tx, agent_key, latest_seq, visitor_key
from .routing import Router, event
from .schema import messages, sessions
from .settings import Settings
from .store import new_id, ordered_ids
from .views import fetch_session, fetch_sessions, message_view, session_view, visitor_view
from .visitors import Visitor

__all__ = ["Sessions"]

log = logging.getLogger("kefu.server.sessions")


# The statements of the hot paths, built once (see kefu.server.hub).
_REPEAT = select(messages).where(
    messages.c.sender_key == bindparam("k"), messages.c.client_msg_id == bindparam("c")
)
# FOR UPDATE (PostgreSQL; SQLite has one writer anyway): a message and the session's assignment
# or closing take turns on the session's row, and nothing else takes turns with them.
_ACTIVE_OF = (
    select(sessions.c.id, sessions.c.num, sessions.c.priority, sessions.c.status, sessions.c.agent_id)
    .where(sessions.c.visitor_id == bindparam("vid"), ACTIVE)
    .with_for_update()
)
_NEW_SESSION = (
    insert(sessions)
    .values(id=bindparam("sid"), visitor_id=bindparam("vid"), status="queued", created_at=bindparam("t"))
    .returning(sessions.c.num)
)
#: Attempts at a visitor's message when its session was created meanwhile (see visitor_send).
_ATTEMPTS = 3


class Sessions:
    def __init__(self, hub: Hub, settings: Settings, router: Router) -> None:
        self.hub = hub
        self.s = settings
        self.router = router
        #: Messages to existing sessions, many senders' in one transaction (D42).
        self.writer = MessageWriter(hub, router, writers=settings.db_writers, gather=settings.db_gather)

    async def close(self) -> None:
        await self.writer.close()

    # --- messages

    async def _repeat(self, tx: Tx, sender_key: str, client_msg_id: str | None) -> dict[str, Any] | None:
        if client_msg_id is None:
            return None
        row = (await tx.conn.execute(_REPEAT, {"k": sender_key, "c": client_msg_id})).first()
        if row is None:
            return None
        return {
            **message_view(row.session_id, row.id, row.sender, row.text, row.created_at),
            "clientMsgId": client_msg_id,
            "repeated": True,
        }

    async def _store(
        self, tx: Tx, session_id: str, sender: str, sender_key: str, text: str, client_msg_id: str | None
    ) -> dict[str, Any]:
        (mid,) = ordered_ids(1)
        await tx.conn.execute(
            STORE_MESSAGE,
            {
                "id": mid,
                "sid": session_id,
                "sender": sender,
                "k": sender_key,
                "text": text,
                "c": client_msg_id,
                "t": tx.now,
            },
        )
        msg = message_view(session_id, mid, sender, text, tx.now)
        await emit(tx, EventType.message_created, session_id, msg)
        return msg

    async def visitor_send(self, visitor: Visitor, text: str, client_msg_id: str | None) -> dict[str, Any]:
        """A visitor's message; opens a queued session if the visitor has none.

        A message to an existing session locks that session's row only, never the
        cluster-wide routing lock. Only a message that queues a new session takes
        that lock (the queue changes in turns: FIFO order, exact positions). Two
        first messages of one visitor racing (two connections or nodes) cannot make
        two sessions: the second looks again once it holds the lock, and the unique
        index on the visitor's active session (r0008) stops it in any case; it then
        runs again and finds the first's session."""
        job = MessageJob(
            visitor.recipient,
            text,
            client_msg_id,
            alone=lambda: self._visitor_alone(visitor, text, client_msg_id),
            visitor_id=visitor.id,
        )
        return await self.writer.send(job)  # type: ignore[no-any-return]

    async def _visitor_alone(self, visitor: Visitor, text: str, client_msg_id: str | None) -> dict[str, Any]:
        """A visitor's message in a transaction of its own."""
        for attempt in range(_ATTEMPTS):
            try:
                return await self._visitor_send(visitor, text, client_msg_id)
            except IntegrityError:
                # the same clientMsgId raced in on another connection: answer with the first
                async with self.hub.transaction() as tx:
                    first = await self._repeat(tx, visitor.recipient, client_msg_id)
                if first is not None:
                    return first
                if attempt == _ATTEMPTS - 1:
                    raise
                log.debug("visitor %s: its session was created meanwhile; sending again", visitor.id)
        raise AssertionError("unreachable")

    async def _visitor_send(self, visitor: Visitor, text: str, client_msg_id: str | None) -> dict[str, Any]:
        queued = False
        async with self.hub.transaction() as tx:
            first = await self._repeat(tx, visitor.recipient, client_msg_id)
            if first is not None:
                return first
            row = (await tx.conn.execute(_ACTIVE_OF, {"vid": visitor.id})).first()
            if row is None:
                # queueing takes turns with the other queue changes (FIFO order, exact positions)
                await self.router.serialise(tx)
                row = (await tx.conn.execute(_ACTIVE_OF, {"vid": visitor.id})).first()
            if row is None:
                sid = new_id()
                num = (
                    await tx.conn.execute(_NEW_SESSION, {"sid": sid, "vid": visitor.id, "t": tx.now})
                ).scalar_one()
                status, agent_id, priority = "queued", None, 0
                await emit(tx, EventType.session_queued, sid, {"sessionId": sid, "visitorName": visitor.name})
            else:
                sid, num, status, agent_id, priority = row.id, row.num, row.status, row.agent_id, row.priority
            msg = await self._store(tx, sid, "visitor", visitor.recipient, text, client_msg_id)
            if row is None:
                self.router.queue_changed(tx)
                queued = True
            elif status == "open" and agent_id is not None:
                await tx.push(agent_key(agent_id), event("message", msg))
            reply = {**msg, "clientMsgId": client_msg_id, "status": status}
            if status == "queued":
                reply["position"] = await self.router.position(tx.conn, priority, num)
        if queued:
            self.router.kick()
        return reply

    async def agent_send(
        self, agent: Agent, session_id: str, text: str, client_msg_id: str | None
    ) -> dict[str, Any]:
        """An agent's message in one of its open sessions."""
        job = MessageJob(
            agent_key(agent.id),
            text,
            client_msg_id,
            alone=lambda: self._agent_alone(agent, session_id, text, client_msg_id),
            agent_id=agent.id,
            session_id=session_id,
        )
        return await self.writer.send(job)  # type: ignore[no-any-return]

    async def _agent_alone(
        self, agent: Agent, session_id: str, text: str, client_msg_id: str | None
    ) -> dict[str, Any]:
        """An agent's message in a transaction of its own."""
        try:
            async with self.hub.transaction() as tx:
                first = await self._repeat(tx, agent_key(agent.id), client_msg_id)
                if first is not None:
                    return first
                row = await self.own_session(tx, agent, session_id)
                msg = await self._store(tx, row.id, "agent", agent_key(agent.id), text, client_msg_id)
                await tx.push(visitor_key(row.visitor_id), event("message", msg))
                return {**msg, "clientMsgId": client_msg_id}
        except IntegrityError:
            async with self.hub.transaction() as tx:
                first = await self._repeat(tx, agent_key(agent.id), client_msg_id)
            if first is None:
                raise
            return first

    async def own_session(self, tx: Tx, agent: Agent, session_id: str) -> Any:
        """The agent's open session ``session_id``, or the error that says why not."""
        row = (await tx.conn.execute(select(sessions).where(sessions.c.id == session_id))).first()
        problem = not_own(row, agent.id)
        if problem is not None:
            raise problem
        return row

    # --- closing

    async def _close(self, tx: Tx, row: Any, by: str, reason: str) -> dict[str, Any]:
        await tx.conn.execute(
            update(sessions)
            .where(sessions.c.id == row.id)
            .values(status="closed", closed_at=tx.now, closed_by=by, close_reason=reason)
        )
        payload = {"sessionId": row.id, "by": by, "reason": reason}
        await emit(tx, EventType.session_closed, row.id, await self._closed_view(tx, row.id, by, reason))
        await tx.push(visitor_key(row.visitor_id), event("sessionClosed", payload))
        if row.agent_id is not None:
            await tx.push(agent_key(row.agent_id), event("sessionClosed", payload))
        if row.status == "queued":
            self.router.queue_changed(tx)
        log.info("session %s closed by %s (%s)", row.id, by, reason)
        return payload

    @staticmethod
    async def _closed_view(tx: Tx, session_id: str, by: str, reason: str) -> dict[str, Any]:
        view = session_view(await fetch_session(tx.conn, session_id))
        names = {k: view[k] for k in ("sessionId", "visitorName", "agentName")}
        return {**names, "by": by, "reason": reason}

    async def close_by_agent(self, agent: Agent, session_id: str | None) -> dict[str, Any]:
        """``chatClose`` (SPEC §4.2): the named session, or the agent's most recent open one."""
        async with self.hub.transaction() as tx:
            await self.router.serialise(tx)
            if session_id is None:
                sid = (
                    await tx.conn.execute(
                        select(sessions.c.id)
                        .where(sessions.c.agent_id == agent.id, sessions.c.status == "open")
                        .order_by(sessions.c.assigned_at.desc(), sessions.c.num.desc())
                        .limit(1)
                    )
                ).scalar_one_or_none()
                if sid is None:
                    raise ApiError("the agent has no open session", code=ErrorCode.no_such_session)
                session_id = sid
            row = await self.own_session(tx, agent, session_id)
            payload = await self._close(tx, row, "agent", "chatClose")
        self.router.kick()
        return payload

    async def close_by_visitor(self, visitor: Visitor) -> dict[str, Any]:
        async with self.hub.transaction() as tx:
            await self.router.serialise(tx)
            sid = (
                await tx.conn.execute(
                    select(sessions.c.id).where(sessions.c.visitor_id == visitor.id, ACTIVE)
                )
            ).scalar_one_or_none()
            if sid is None:
                raise ApiError("the visitor has no open session", code=ErrorCode.no_such_session)
            row = (await tx.conn.execute(select(sessions).where(sessions.c.id == sid))).first()
            payload = await self._close(tx, row, "visitor", "closeSession")
        self.router.kick()
        return payload

    # --- reads (SPEC §4.6 sessionCount / sessionState)

    async def open_of_agent(self, agent_id: int) -> list[dict[str, Any]]:
        async with self.hub.store.read() as conn:
            return await fetch_sessions(conn, status="open", agent_id=agent_id, limit=10_000)

    @staticmethod
    async def resume(conn: AsyncConnection, visitor: Visitor) -> tuple[int, dict[str, Any] | None]:
        """What a visitor's ``hello`` answer tells: its latest push ``seq`` and its active
        session (with its place when queued), read on the connection that identified it."""
        return await latest_seq(conn, visitor.recipient), await Sessions._active(conn, visitor.id)

    @staticmethod
    async def _active(conn: AsyncConnection, visitor_id: str) -> dict[str, Any] | None:
        sid = (
            await conn.execute(select(sessions.c.id).where(sessions.c.visitor_id == visitor_id, ACTIVE))
        ).scalar_one_or_none()
        if sid is None:
            return None
        row = await fetch_session(conn, sid)
        if row is None:
            return None
        view = visitor_view(session_view(row))
        if row.status == "queued":
            view["position"] = await Router.position(conn, row.priority, row.num)
        return view
