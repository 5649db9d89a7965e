"""Reading sessions and messages, and their wire form (camelCase JSON).

A session on the wire::

    {"sessionId", "visitorName", "visitorId", "agentName", "status": "queued"|"open"|"closed",
     "since", "assignedAt", "closedAt", "closedBy", "closeReason", "lastMessage": {...}|null,
     "transfer": {"from", "reason", "note"}|null}     (the visitor's view has no "transfer")

A message::

    {"sessionId", "messageId", "from": "visitor"|"agent"|"system", "text", "at"}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import agents, messages, sessions, visitors
from .store import iso

__all__ = [
    "fetch_messages",
    "fetch_session",
    "fetch_sessions",
    "message_view",
    "session_query",
    "session_view",
    "visitor_view",
]

_m = messages.alias("last_m")


def session_query() -> Select[Any]:
    """Sessions with their visitor's and agent's names and their last message."""
    last = (
        select(func.max(messages.c.num))
        .where(messages.c.session_id == sessions.c.id)
        .correlate(sessions)
        .scalar_subquery()
    )
    return select(
        sessions,
        visitors.c.name.label("visitor_name"),
        agents.c.name.label("agent_name"),
        _m.c.id.label("m_id"),
        _m.c.sender.label("m_sender"),
        _m.c.text.label("m_text"),
        _m.c.created_at.label("m_at"),
    ).select_from(
        sessions.join(visitors, visitors.c.id == sessions.c.visitor_id)
        .outerjoin(agents, agents.c.id == sessions.c.agent_id)
        .outerjoin(_m, _m.c.num == last)
    )


def message_view(
    session_id: str, message_id: str, sender: str, text: str, at: datetime | None
) -> dict[str, Any]:
    return {"sessionId": session_id, "messageId": message_id, "from": sender, "text": text, "at": iso(at)}


def session_view(row: Any) -> dict[str, Any]:
    last = None
    if row.m_id is not None:
        last = message_view(row.id, row.m_id, row.m_sender, row.m_text, row.m_at)
    return {
        "sessionId": row.id,
        "visitorName": row.visitor_name,
        "visitorId": row.visitor_id,
        "agentName": row.agent_name,
        "status": row.status,
        "since": iso(row.created_at),
        "assignedAt": iso(row.assigned_at),
        "closedAt": iso(row.closed_at),
        "closedBy": row.closed_by,
        "closeReason": row.close_reason,
        "lastMessage": last,
        # issue 20: the latest transfer, for the agents (visitor_view leaves it out)
        "transfer": (
            {"from": row.transfer_from, "reason": row.transfer_reason, "note": row.transfer_note}
            if row.transfer_reason is not None
            else None
        ),
    }


def visitor_view(view: dict[str, Any]) -> dict[str, Any]:
    """A session as its visitor sees it: without the agents' transfer note."""
    return {k: v for k, v in view.items() if k != "transfer"}


_ONE_SESSION = session_query().where(sessions.c.id == bindparam("sid"))  # built once: a hot path


async def fetch_session(conn: AsyncConnection, session_id: str) -> Any | None:
    return (await conn.execute(_ONE_SESSION, {"sid": session_id})).first()


async def fetch_sessions(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    agent_id: int | None = None,
    visitor_id: str | None = None,
    visible_to_agent: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Sessions, oldest first, filtered. ``visible_to_agent`` keeps the agent's own and queued ones."""
    q = session_query()
    if status is not None:
        q = q.where(sessions.c.status == status)
    if agent_id is not None:
        q = q.where(sessions.c.agent_id == agent_id)
    if visitor_id is not None:
        q = q.where(sessions.c.visitor_id == visitor_id)
    if visible_to_agent is not None:
        q = q.where((sessions.c.agent_id == visible_to_agent) | (sessions.c.status == "queued"))
    if since is not None:
        q = q.where(sessions.c.created_at >= since)
    if until is not None:
        q = q.where(sessions.c.created_at < until)
    q = q.order_by(sessions.c.num).limit(limit).offset(offset)
    return [session_view(r) for r in await conn.execute(q)]


async def fetch_messages(
    conn: AsyncConnection, session_id: str, *, limit: int = 1000, offset: int = 0, last: int | None = None
) -> list[dict[str, Any]]:
    """A session's messages in order; ``last=n`` gives the newest n (still in order)."""
    q = select(messages).where(messages.c.session_id == session_id)
    if last is not None:
        q = q.order_by(messages.c.num.desc()).limit(last)
    else:
        q = q.order_by(messages.c.num).limit(limit).offset(offset)
    rows = list(await conn.execute(q))
    if last is not None:
        rows.reverse()
    return [message_view(r.session_id, r.id, r.sender, r.text, r.created_at) for r in rows]
