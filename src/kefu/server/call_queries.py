"""The SQL look-ups of call orchestration (:mod:`kefu.server.calls`).

Each answers one question about calls, members, visitors and sessions, in a
read of its own or inside an operation's transaction (:class:`Tx`). Nothing
here changes a row: the call engine (:mod:`kefu.server.call_engine`) does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, desc, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, CallPhase, MemberKind, MemberStatus

from .accounts import Agent, find_agent
from .hub import Tx, agent_key, visitor_key
from .schema import call_members, calls, sessions, visitors
from .store import Store
from .supervise import helped_in
from .visitors import Visitor

__all__ = ["IN_PROGRESS", "CallQueries", "member_id", "queue_position", "queued_calls", "waiting_calls"]

#: A member whose invitation rings or who is in the call.
IN_PROGRESS = (MemberStatus.invited.value, MemberStatus.joined.value)

# asked on every member's disconnect (is it in a call?): built once
_CALL_OF_MEMBER = (
    select(calls.c.id)
    .join(call_members, call_members.c.call_id == calls.c.id)
    .where(
        calls.c.status != CallPhase.ended.value,
        call_members.c.kind == bindparam("kind"),
        call_members.c.name == bindparam("name"),
        call_members.c.status.in_(bindparam("wanted", expanding=True)),
    )
    .order_by(desc(calls.c.created_at))
    .limit(1)
)

_VISITOR_ID = select(visitors.c.id).where(visitors.c.name == bindparam("name"))


async def member_id(tx: Tx, kind: MemberKind, name: str) -> Any:
    """The id of the agent or visitor called ``name`` (``None`` if there is none), looked up
    once per transaction: an operation names the same members in several effects."""
    key = (kind.value, name)
    if key not in tx.memo:
        if kind is MemberKind.agent:
            found = await find_agent(tx.conn, name=name)
            tx.memo[key] = found.id if found is not None else None
        else:
            tx.memo[key] = (await tx.conn.execute(_VISITOR_ID, {"name": name})).scalar_one_or_none()
    return tx.memo[key]


async def queue_position(tx: Tx, call: Call, team: str) -> int:
    """The call's place in ``team``'s queue of calls (D50): 1 + the calls waiting ahead of it
    (its first ``queued_at``, or now for a call joining the queue)."""
    mine = (await tx.conn.execute(select(calls.c.queued_at).where(calls.c.id == call.id))).scalar()
    ahead = (
        await tx.conn.execute(
            select(func.count()).where(
                calls.c.queue_team == team,
                calls.c.id != call.id,
                calls.c.queued_at <= (mine if mine is not None else tx.now),
            )
        )
    ).scalar_one()
    return int(ahead) + 1


async def queued_calls(conn: AsyncConnection, teams: list[str] | None = None) -> list[Any]:
    """The calls waiting in these teams' queues (``None``: every team's; not ringing an agent),
    first come first: rows of ``id``, ``team``, ``queued_at`` and the visitor's ``name``."""
    q = (
        select(calls.c.id, calls.c.queue_team.label("team"), calls.c.queued_at, visitors.c.name)
        .outerjoin(visitors, visitors.c.id == calls.c.visitor_id)
        .where(calls.c.queue_team.is_not(None), calls.c.status != CallPhase.ended.value)
        .order_by(calls.c.queued_at, calls.c.id)
    )
    if teams is not None:
        q = q.where(calls.c.queue_team.in_(teams))
    return list(await conn.execute(q))


async def waiting_calls(conn: AsyncConnection, teams: list[str]) -> list[str]:
    """The ids of the calls waiting in these teams' queues, first come first."""
    return [r.id for r in await queued_calls(conn, teams)]


def _no_such(kind: MemberKind) -> ApiError:
    return ApiError(code=ErrorCode.no_such_agent if kind is MemberKind.agent else ErrorCode.no_such_visitor)


class CallQueries:
    """Reads of the store about calls; each opens its own read."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def recipient(self, kind: MemberKind, name: str, *, tx: Tx | None = None) -> str:
        """The push recipient of the member called ``name`` (its ``agent:``/``visitor:`` key)."""
        if tx is not None:
            found = await member_id(tx, kind, name)
            if found is None:
                raise _no_such(kind)
            return agent_key(found) if kind is MemberKind.agent else visitor_key(str(found))
        async with self.store.read() as conn:
            if kind is MemberKind.agent:
                agent = await find_agent(conn, name=name)
                if agent is None:
                    raise _no_such(kind)
                return agent_key(agent.id)
            vid = (await conn.execute(_VISITOR_ID, {"name": name})).scalar_one_or_none()
        if vid is None:
            raise _no_such(kind)
        return visitor_key(vid)

    async def call_of(self, kind: MemberKind, name: str, *, status: MemberStatus | None = None) -> str | None:
        """The call in progress in which this member rings or is (or has ``status``)."""
        wanted = (status.value,) if status is not None else IN_PROGRESS
        async with self.store.read() as conn:
            params = {"kind": kind.value, "name": name, "wanted": list(wanted)}
            return (await conn.execute(_CALL_OF_MEMBER, params)).scalar_one_or_none()

    async def snapshot(self, call_id: str, *, in_progress: bool = False) -> Call | None:
        """The call as last saved (``None`` if there is none, or it ended and ``in_progress``)."""
        q = select(calls.c.snapshot).where(calls.c.id == call_id)
        if in_progress:
            q = q.where(calls.c.status != CallPhase.ended.value)
        async with self.store.read() as conn:
            snap = (await conn.execute(q)).scalar_one_or_none()
        return Call.from_dict(snap) if snap is not None else None

    async def ringing_request(self, session_id: str, agent_id: int) -> str | None:
        """The visitor's video request that rings for this agent in this session (``videoPickUp``)."""
        async with self.store.read() as conn:
            return (
                await conn.execute(
                    select(calls.c.id).where(
                        calls.c.session_id == session_id,
                        calls.c.agent_id == agent_id,
                        calls.c.status == CallPhase.ringing.value,
                    )
                )
            ).scalar_one_or_none()

    async def visitor_named(self, name: str) -> Visitor | None:
        async with self.store.read() as conn:
            row = (
                await conn.execute(select(visitors.c.id, visitors.c.name).where(visitors.c.name == name))
            ).first()
        return Visitor(row.id, row.name) if row is not None else None

    async def session_agent(self, visitor: Visitor) -> tuple[str, int] | None:
        """The visitor's open session and its agent, if any."""
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    select(sessions.c.id, sessions.c.agent_id).where(
                        sessions.c.visitor_id == visitor.id, sessions.c.status == "open"
                    )
                )
            ).first()
        return (row.id, int(row.agent_id)) if row is not None and row.agent_id is not None else None

    async def current_session(self, agent: Agent) -> tuple[str, Visitor] | None:
        """The agent's current session: the most recently assigned one still open."""
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    select(sessions.c.id, visitors.c.id.label("visitor_id"), visitors.c.name)
                    .join(visitors, visitors.c.id == sessions.c.visitor_id)
                    .where(sessions.c.agent_id == agent.id, sessions.c.status == "open")
                    .order_by(desc(sessions.c.assigned_at))
                    .limit(1)
                )
            ).first()
        return (row.id, Visitor(row.visitor_id, row.name)) if row is not None else None

    async def session_with_agent(self, visitor: Visitor) -> tuple[str, Agent] | None:
        """The visitor's open session and the agent it is with (a visitor's video request)."""
        found = await self.session_agent(visitor)
        if found is None:
            return None
        async with self.store.read() as conn:
            agent = await find_agent(conn, agent_id=found[1])
        return (found[0], agent) if agent is not None else None

    async def require_visitor_member(self, visitor: Visitor, call_id: str) -> None:
        """``no_such_call`` unless the visitor is (or was) a member of the call."""
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    select(call_members.c.num).where(
                        call_members.c.call_id == call_id,
                        call_members.c.kind == MemberKind.visitor.value,
                        call_members.c.name == visitor.name,
                    )
                )
            ).first()
        if row is None:
            raise ApiError("no such call", code=ErrorCode.no_such_call)

    async def primary_agent_id(self, call_id: str) -> int:
        """The id of the call's primary agent; ``no_such_call`` once the call is over."""
        async with self.store.read() as conn:
            row = (
                await conn.execute(select(calls.c.agent_id, calls.c.status).where(calls.c.id == call_id))
            ).first()
        if row is None or row.status == CallPhase.ended.value:
            raise ApiError("the call is over", code=ErrorCode.no_such_call)
        return int(row.agent_id)

    async def involves_agent(self, call_id: str, agent_id: int, *, supervisor: bool = False) -> bool:
        """Was the agent a member of the call (or, with ``supervisor``, helping in it)?"""
        async with self.store.read() as conn:
            row = (
                await conn.execute(
                    select(call_members.c.num).where(
                        call_members.c.call_id == call_id, call_members.c.agent_id == agent_id
                    )
                )
            ).first()
            if row is None and supervisor:
                row = (await conn.execute(helped_in(call_id, agent_id))).first()
        return row is not None
