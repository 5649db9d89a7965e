"""The catalogue of not-ready reasons, and wrap-up codes (issue 20).

An admin defines the reasons an agent may give for being not ready
(``kefu reason add LUNCH "Lunch break"``, ``POST /api/reasons``). While the
catalogue is empty, ``setAgentState``'s ``reason`` stays free text, as the
spec has it; once it holds a reason, a not-ready ``reason`` must be one of its
codes, else ``invalid_field`` and the state does not change. The reason is
kept with the state change (``state_changes.reason``), so the history and the
floor's metrics report by reason.

Wrap-up codes are what an agent records about a session or a call during
after-call work (``POST /api/wrapups``): free codes, kept in ``wrap_ups``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode

from .accounts import Agent
from .schema import calls, reasons, sessions, wrap_ups
from .store import Store, aware, iso

__all__ = ["CODE", "add_reason", "check_reason", "list_reasons", "record_wrap_up", "remove_reason"]

#: A reason or wrap-up code: what setAgentState's ``reason`` allows (1 to 32 characters), no spaces.
CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")


def _check_code(code: str) -> None:
    if not CODE.match(code):
        raise ApiError(
            "a code is 1 to 32 letters, digits or _ . : - (no spaces)", code=ErrorCode.invalid_field
        )


async def add_reason(store: Store, code: str, label: str, *, now: datetime) -> dict[str, Any]:
    _check_code(code)
    if not 1 <= len(label) <= 128 or not label.isprintable():
        raise ApiError("a label is 1 to 128 printable characters", code=ErrorCode.invalid_field)
    try:
        async with store.write() as conn:
            await conn.execute(insert(reasons).values(code=code, label=label, created_at=now))
    except IntegrityError:
        raise ApiError(f"the reason {code!r} exists already", code=ErrorCode.invalid_field) from None
    return {"code": code, "label": label}


async def remove_reason(store: Store, code: str) -> None:
    async with store.write() as conn:
        if (await conn.execute(delete(reasons).where(reasons.c.code == code))).rowcount == 0:
            raise ApiError(f"no reason {code!r}", code=ErrorCode.invalid_field)


async def list_reasons(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(reasons.c.code, reasons.c.label).order_by(reasons.c.code))
    return [{"code": r.code, "label": r.label} for r in rows]


_KNOWN = select(reasons.c.code).where(reasons.c.code == bindparam("c"))
_ANY = select(reasons.c.code).limit(1)


async def check_reason(conn: AsyncConnection, reason: str | None) -> None:
    """A not-ready reason against the catalogue: ``invalid_field`` if the catalogue is not
    empty and does not hold it (no reason at all stays allowed, as in the spec)."""
    if reason is None or (await conn.execute(_KNOWN, {"c": reason})).first() is not None:
        return
    if (await conn.execute(_ANY)).first() is None:
        return  # no catalogue: free text (SPEC's setAgentState)
    raise ApiError(f"{reason!r} is not a not-ready reason of the catalogue", code=ErrorCode.invalid_field)


async def record_wrap_up(
    store: Store,
    agent: Agent,
    code: str,
    *,
    session_id: str | None,
    call_id: str | None,
    note: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Record a wrap-up code for one of the agent's sessions or calls."""
    _check_code(code)
    if (session_id is None) == (call_id is None):
        raise ApiError("give a sessionId or a callId", code=ErrorCode.missing_field)
    if note is not None and len(note) > 512:
        raise ApiError("a note is at most 512 characters", code=ErrorCode.invalid_field)
    async with store.write() as conn:
        if session_id is not None:
            owner = (
                await conn.execute(select(sessions.c.agent_id).where(sessions.c.id == session_id))
            ).first()
            if owner is None or owner.agent_id != agent.id:
                raise ApiError(code=ErrorCode.no_such_session)
        else:
            owner = (await conn.execute(select(calls.c.agent_id).where(calls.c.id == call_id))).first()
            if owner is None or owner.agent_id != agent.id:
                raise ApiError(code=ErrorCode.no_such_call)
        await conn.execute(
            insert(wrap_ups).values(
                agent_id=agent.id, session_id=session_id, call_id=call_id, code=code, note=note, at=now
            )
        )
    return {"code": code, "sessionId": session_id, "callId": call_id, "note": note, "at": iso(aware(now))}
