"""The audit trail (reliability §4): who read, wrote, refused or expired which media, when, from where."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import audit

__all__ = ["record_audit"]

audit_log = logging.getLogger("kefu.server.audit")


async def record_audit(
    conn: AsyncConnection,
    *,
    at: Any,
    actor: str,
    action: str,
    kind: str,
    address: str,
    object_id: str | None = None,
    call_id: str | None = None,
    detail: str | None = None,
) -> None:
    """One row of the audit trail (in the caller's transaction) and its log line."""
    await conn.execute(
        insert(audit).values(
            at=at,
            actor=actor,
            action=action,
            object_kind=kind,
            object_id=object_id,
            call_id=call_id,
            address=address[:64],
            detail=detail[:256] if detail else None,
        )
    )
    audit_log.info(
        "%s %s %s %s of call %s from %s%s",
        actor,
        action,
        kind,
        object_id or "-",
        call_id,
        address,
        f" ({detail})" if detail else "",
    )
