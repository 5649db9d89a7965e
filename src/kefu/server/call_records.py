"""The calls' records for the REST API (``GET /api/calls``, ``GET /api/calls/{id}``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol.call import MemberKind

from .media_files import recording_part
from .schema import call_members, calls, media_artifacts
from .store import Store, aware, iso
from .supervise import supervision_record

__all__ = ["CallRecords"]


class CallRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list_calls(
        self,
        *,
        agent_id: int | None = None,
        visitor: str | None = None,
        status: str | None = None,
        since: Any = None,
        until: Any = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        q = select(calls).order_by(desc(calls.c.created_at)).limit(limit).offset(offset)
        if agent_id is not None:
            with_agent = select(call_members.c.call_id).where(call_members.c.agent_id == agent_id)
            q = q.where(calls.c.id.in_(with_agent))
        if visitor is not None:
            with_visitor = select(call_members.c.call_id).where(
                call_members.c.kind == MemberKind.visitor.value, call_members.c.name == visitor
            )
            q = q.where(calls.c.id.in_(with_visitor))
        if status is not None:
            q = q.where(calls.c.status == status)
        if since is not None:
            q = q.where(calls.c.created_at >= since)
        if until is not None:
            q = q.where(calls.c.created_at < until)
        async with self.store.read() as conn:
            rows = (await conn.execute(q)).all()
            return [await self._record(conn, row) for row in rows]

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        async with self.store.read() as conn:
            row = (await conn.execute(select(calls).where(calls.c.id == call_id))).first()
            return await self._record(conn, row) if row is not None else None

    async def _record(self, conn: AsyncConnection, call: Any) -> dict[str, Any]:
        members = (
            await conn.execute(
                select(call_members).where(call_members.c.call_id == call.id).order_by(call_members.c.num)
            )
        ).all()
        return {
            "callId": call.id,
            "flow": call.flow,
            "sessionId": call.session_id,
            "status": call.status,
            "createdAt": iso(aware(call.created_at)),
            "answeredAt": iso(aware(call.answered_at)),
            "endedAt": iso(aware(call.ended_at)),
            "endedBy": call.ended_by,
            "endReason": call.end_reason,
            "recording": call.recording,  # the SFU mode's: its status, start and failure (server/sfu.py)
            "recordingParts": await _recording_parts(conn, call.id),  # hub mode, D51
            "transfers": call.snapshot.get("transfers", []),  # issue 20: kind, from, to, note, outcome, at
            "supervision": await supervision_record(conn, call.id),  # issue 20: who helped, how, when
            "members": [
                {
                    "kind": m.kind,
                    "name": m.name,
                    "role": m.role,
                    "status": m.status,
                    "invitedAt": iso(aware(m.invited_at)),
                    "joinedAt": iso(aware(m.joined_at)),
                    "leftAt": iso(aware(m.left_at)),
                    "outcome": m.outcome,
                    "reason": m.reason,
                }
                for m in members
            ],
        }


async def _recording_parts(conn: AsyncConnection, call_id: str) -> list[dict[str, Any]]:
    """The call's recording, part by part (hub mode: one per hub, D51): each part's artifact,
    agent, SHA-256 (empty until final), size and whether it is final."""
    rows = await conn.execute(
        select(media_artifacts).where(
            media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
        )
    )
    parts = []
    for r in rows:
        meta = r.meta or {}
        parts.append(
            {
                "part": recording_part(meta),
                "artifactId": r.id,
                "agentName": meta.get("agentName"),
                "sha256": r.sha256,
                "size": r.size,
                "complete": bool(meta.get("complete")),
            }
        )
    return sorted(parts, key=lambda p: p["part"])
