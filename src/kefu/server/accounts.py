"""Agent accounts: add, list, disable, find (used by ``kefu agent …`` and login).

Passwords are hashed with scrypt (``hashlib``, a salt per password) and never
stored, logged or returned. The stored form names its parameters, so the
cost can rise later without breaking old hashes:
``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.codes import Code
from kefu.protocol.machine import AgentState, Flow

from .hub import agent_key, open_mailbox
from .schema import agents, sessions, tokens
from .settings import utcnow
from .store import Store, aware, iso

__all__ = [
    "Agent",
    "add_agent",
    "agent_from_row",
    "find_agent",
    "hash_password",
    "list_agents",
    "set_disabled",
    "verify_password",
]

_R, _P, _DKLEN = 8, 1, 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=256 * 1024 * 1024
    )


def hash_password(password: str, n: int = 2**14) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


async def verify_password_async(password: str, stored: str) -> bool:
    """:func:`verify_password` in a worker thread (scrypt takes tens of milliseconds)."""
    return await asyncio.to_thread(verify_password, password, stored)


@dataclass(frozen=True, slots=True)
class Agent:
    id: int
    name: str
    admin: bool
    max_sessions: int
    disabled: bool
    state: AgentState
    state_since: datetime

    def profile(self) -> dict[str, Any]:
        """The agent as the wire and the login answer show it (no secrets)."""
        return {"name": self.name, "admin": self.admin, "maxSessions": self.max_sessions}


def agent_from_row(row: Any) -> Agent:
    state = AgentState(
        Code(row.state),
        Flow(row.call_flow) if row.call_flow else None,
        Flow(row.third_flow) if row.third_flow else None,
        bool(row.picked_up),
    )
    since = aware(row.state_since)
    assert since is not None
    return Agent(row.id, row.name, bool(row.admin), row.max_sessions, bool(row.disabled), state, since)


_AGENT_BY = {
    (by, lock): (
        select(agents).where(agents.c[by] == bindparam("k")).with_for_update()
        if lock
        else select(agents).where(agents.c[by] == bindparam("k"))
    )
    for by in ("name", "id")
    for lock in (False, True)
}


async def find_agent(
    conn: AsyncConnection, *, name: str | None = None, agent_id: int | None = None, lock: bool = False
) -> Agent | None:
    by, key = ("name", name) if name is not None else ("id", agent_id)
    row = (await conn.execute(_AGENT_BY[by, lock], {"k": key})).first()
    return agent_from_row(row) if row is not None else None


async def password_hash_of(conn: AsyncConnection, name: str) -> tuple[Agent, str] | None:
    row = (await conn.execute(select(agents).where(agents.c.name == name))).first()
    if row is None:
        return None
    return agent_from_row(row), row.password_hash


async def add_agent(
    store: Store,
    name: str,
    password: str,
    *,
    admin: bool = False,
    max_sessions: int = 5,
    now: datetime,
    scrypt_n: int = 2**14,
) -> Agent:
    """Create an agent (not logged in). Raises :class:`ApiError` ``invalid_field`` if the name is taken."""
    if not 1 <= len(name) <= 64 or not name.isprintable() or name != name.strip():
        raise ApiError("an agent name is 1 to 64 printable characters", code=ErrorCode.invalid_field)
    if len(password) < 6:
        raise ApiError("a password has at least 6 characters", code=ErrorCode.invalid_field)
    if not 0 <= max_sessions <= 1000:
        raise ApiError("max sessions is from 0 to 1000", code=ErrorCode.invalid_field)
    digest = await asyncio.to_thread(hash_password, password, scrypt_n)
    try:
        async with store.write() as conn:
            agent_id = (
                await conn.execute(
                    insert(agents)
                    .values(
                        name=name,
                        password_hash=digest,
                        admin=admin,
                        max_sessions=max_sessions,
                        disabled=False,
                        created_at=now,
                        state=Code.notLogin.value,
                        picked_up=False,
                        state_since=now,
                    )
                    .returning(agents.c.id)
                )
            ).scalar_one()
            await open_mailbox(conn, agent_key(agent_id))
            agent = await find_agent(conn, agent_id=agent_id)
    except IntegrityError:
        raise ApiError(f"an agent named {name!r} exists already", code=ErrorCode.invalid_field) from None
    assert agent is not None
    return agent


async def set_disabled(
    store: Store, name: str, disabled: bool = True, *, now: datetime | None = None
) -> Agent:
    """Disable (or enable) an account; disabling also revokes its tokens, and every node
    closes the account's open sockets within ``login_check_interval``."""
    async with store.write() as conn:
        res = await conn.execute(update(agents).where(agents.c.name == name).values(disabled=disabled))
        if res.rowcount == 0:
            raise ApiError(f"no agent named {name!r}", code=ErrorCode.no_such_agent)
        agent = await find_agent(conn, name=name)
        assert agent is not None
        if disabled:
            await conn.execute(
                update(tokens)
                .where(tokens.c.agent_id == agent.id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=now or utcnow())
            )
    return agent


async def list_agents(conn: AsyncConnection, *, name: str | None = None) -> list[dict[str, Any]]:
    """Agents with their current state and number of open sessions (for the CLI and REST)."""
    open_count = (
        select(func.count())
        .where(sessions.c.agent_id == agents.c.id, sessions.c.status == "open")
        .scalar_subquery()
    )
    q = select(agents, open_count.label("open_sessions")).order_by(agents.c.name)
    if name is not None:
        q = q.where(agents.c.name == name)
    out = []
    for row in await conn.execute(q):
        a = agent_from_row(row)
        out.append(
            {
                "id": a.id,
                "name": a.name,
                "admin": a.admin,
                "maxSessions": a.max_sessions,
                "disabled": a.disabled,
                "state": a.state.code.value,
                "stateSince": iso(a.state_since),
                "openSessions": row.open_sessions,
            }
        )
    return out
