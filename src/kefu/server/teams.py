"""Supervisors and teams (issue 20): who sees which part of the floor.

An agent account may be a **supervisor** (``kefu agent add NAME --supervisor``,
or ``kefu agent role NAME --supervisor``). Agents belong to **teams**
(``kefu team add T``, ``kefu team assign T NAME``); a supervisor is a member
of the teams it supervises and sees their agents; an admin sees every agent.
Anyone else is refused the floor with ``forbidden`` (403).

A team also carries the after-call work policy of its agents (seconds of
wrap-up, whether the agent may extend it once); an agent in several teams
gets the longest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode

from .accounts import Agent
from .schema import agents, team_members, teams
from .store import Store

__all__ = [
    "Viewer",
    "WrapUpPolicy",
    "add_team",
    "assign",
    "list_teams",
    "set_supervisor",
    "viewer_of",
    "wrap_up_policies",
]


def _check_name(name: str, what: str) -> None:
    if not 1 <= len(name) <= 64 or not name.isprintable() or name != name.strip():
        raise ApiError(f"a {what} name is 1 to 64 printable characters", code=ErrorCode.invalid_field)


async def add_team(
    store: Store,
    name: str,
    *,
    now: datetime,
    wrap_up_seconds: float | None = None,
    wrap_up_extend: bool = False,
) -> dict[str, Any]:
    """Create a team. Raises ``invalid_field`` for a bad or taken name or a negative wrap-up."""
    _check_name(name, "team")
    if wrap_up_seconds is not None and not 0 <= wrap_up_seconds <= 24 * 3600:
        raise ApiError("wrap-up seconds are from 0 to 86400", code=ErrorCode.invalid_field)
    try:
        async with store.write() as conn:
            await conn.execute(
                insert(teams).values(
                    name=name, wrap_up_seconds=wrap_up_seconds, wrap_up_extend=wrap_up_extend, created_at=now
                )
            )
    except IntegrityError:
        raise ApiError(f"a team named {name!r} exists already", code=ErrorCode.invalid_field) from None
    return {"name": name, "wrapUpSeconds": wrap_up_seconds, "wrapUpExtend": wrap_up_extend, "members": []}


async def _ids(conn: AsyncConnection, team: str, agent: str) -> tuple[int, int]:
    team_id = (await conn.execute(select(teams.c.id).where(teams.c.name == team))).scalar()
    if team_id is None:
        raise ApiError(f"no team named {team!r}", code=ErrorCode.invalid_field)
    agent_id = (await conn.execute(select(agents.c.id).where(agents.c.name == agent))).scalar()
    if agent_id is None:
        raise ApiError(f"no agent named {agent!r}", code=ErrorCode.no_such_agent)
    return team_id, agent_id


async def assign(store: Store, team: str, agent: str, *, remove: bool = False) -> None:
    """Put an agent (or a supervisor) in a team, or take it out; idempotent."""
    async with store.write() as conn:
        team_id, agent_id = await _ids(conn, team, agent)
        where = (team_members.c.team_id == team_id, team_members.c.agent_id == agent_id)
        await conn.execute(delete(team_members).where(*where))
        if not remove:
            await conn.execute(insert(team_members).values(team_id=team_id, agent_id=agent_id))


async def set_supervisor(store: Store, name: str, supervisor: bool = True) -> None:
    async with store.write() as conn:
        res = await conn.execute(update(agents).where(agents.c.name == name).values(supervisor=supervisor))
        if res.rowcount == 0:
            raise ApiError(f"no agent named {name!r}", code=ErrorCode.no_such_agent)


async def list_teams(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Teams with their members (supervisors marked) and wrap-up policy, by name."""
    rows = await conn.execute(
        select(teams, agents.c.name.label("member"), agents.c.supervisor)
        .select_from(teams.outerjoin(team_members).outerjoin(agents, agents.c.id == team_members.c.agent_id))
        .order_by(teams.c.name, agents.c.name)
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = out.setdefault(
            r.name,
            {
                "name": r.name,
                "wrapUpSeconds": r.wrap_up_seconds,
                "wrapUpExtend": bool(r.wrap_up_extend),
                "members": [],
                "supervisors": [],
            },
        )
        if r.member is not None:
            t["supervisors" if r.supervisor else "members"].append(r.member)
    return list(out.values())


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at the floor and which agents and teams' call queues they see (``None``: all)."""

    name: str
    admin: bool
    agent_ids: frozenset[int] | None
    team_names: frozenset[str] | None = frozenset()

    def sees(self, agent_id: int) -> bool:
        return self.agent_ids is None or agent_id in self.agent_ids

    def sees_team(self, team: str) -> bool:
        return self.team_names is None or team in self.team_names


async def viewer_of(conn: AsyncConnection, agent: Agent) -> Viewer:
    """The floor as ``agent`` may see it; ``forbidden`` unless a supervisor or an admin."""
    if agent.admin:
        return Viewer(agent.name, True, None, None)
    supervisor = (await conn.execute(select(agents.c.supervisor).where(agents.c.id == agent.id))).scalar()
    if not supervisor:
        raise ApiError("the floor is for supervisors and admins", code=ErrorCode.forbidden)
    mine = select(team_members.c.team_id).where(team_members.c.agent_id == agent.id)
    rows = await conn.execute(select(team_members.c.agent_id).where(team_members.c.team_id.in_(mine)))
    names = await conn.execute(select(teams.c.name).where(teams.c.id.in_(mine)))
    return Viewer(
        agent.name, False, frozenset(r.agent_id for r in rows) | {agent.id}, frozenset(names.scalars())
    )


@dataclass(frozen=True, slots=True)
class WrapUpPolicy:
    seconds: float
    extend: bool


async def wrap_up_policies(conn: AsyncConnection) -> dict[int, WrapUpPolicy]:
    """The after-call work policy of every agent in a team that sets one (the longest wins)."""
    rows = await conn.execute(
        select(team_members.c.agent_id, teams.c.wrap_up_seconds, teams.c.wrap_up_extend)
        .join(teams, teams.c.id == team_members.c.team_id)
        .where(teams.c.wrap_up_seconds.is_not(None))
    )
    out: dict[int, WrapUpPolicy] = {}
    for r in rows:
        old = out.get(r.agent_id)
        if old is None or r.wrap_up_seconds > old.seconds:
            out[r.agent_id] = WrapUpPolicy(float(r.wrap_up_seconds), bool(r.wrap_up_extend))
    return out
