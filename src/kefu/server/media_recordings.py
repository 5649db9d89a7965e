"""A call's recording (issue 6; SPEC §4.4): the plugin's upload in chunks, or the server's own (SFU mode).

A recording grows without holes: a chunk starts at or before the stored size
(the muxer rewrites its header at the end), never after it; it is at most
``max_recording_bytes`` in all; once ``final`` it is evidence and never
changes again (``recording_finished``). Its checksum is computed in a thread,
reading the file in blocks. In the SFU mode the server makes the recording
(:mod:`kefu.server.sfu`, :mod:`kefu.server.recording`) and its status is in
the call's record and pushed to the call's agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from kefu.protocol import ApiError, ErrorCode, transfer

from .accounts import Agent
from .audit import record_audit
from .events import EventType, emit
from .hub import Hub, Tx, agent_key
from .media_files import MediaFiles, recording_part, sha256_file
from .routing import event
from .schema import call_members, calls, media_artifacts
from .settings import Settings
from .store import aware, iso, new_id

__all__ = ["MediaRecordings"]

log = logging.getLogger("kefu.server.media")


def _part_file(call_id: str, part: int) -> str:
    return f"{call_id}.webm" if part == 1 else f"{call_id}.part{part}.webm"


class MediaRecordings(MediaFiles):
    """The calls' recordings, on top of the media's files."""

    def __init__(self, push_hub: Hub, settings: Settings) -> None:
        super().__init__(push_hub, settings)
        self._rec_locks: dict[str, asyncio.Lock] = {}

    async def recording_chunk(
        self, agent: Agent, call_id: str, offset: int, data: bytes, final: bool, address: str
    ) -> dict[str, Any]:
        row, call = await self._call(call_id)
        # hub mode: part n is the n-th hub's, the call's first primary then each agent a
        # transfer made the primary (D51); an agent's upload goes to its first unfinished part
        mine = [n for n, name in enumerate(transfer.hubs(call), start=1) if name == agent.name]
        if not mine:
            raise ApiError(
                "only an agent whose plugin was the call's hub records it", code=ErrorCode.forbidden
            )
        arts = await self._recording_parts(call_id)
        part = next((n for n in mine if n not in arts or not (arts[n].meta or {}).get("complete")), mine[-1])
        key = f"{call_id}/{part}"
        lock = self._rec_locks.setdefault(key, asyncio.Lock())
        async with lock:
            existing = await self._recording_art(call_id, part)
            if existing is not None and (existing.meta or {}).get("complete"):
                await self._refuse_finished(agent, call_id, existing.id, offset, address)
            path = self._path("recording", _part_file(call_id, part))
            size = await asyncio.to_thread(lambda: path.stat().st_size if path.exists() else 0)
            if offset > size:
                raise ApiError(
                    f"offset {offset} would leave a hole: the recording has {size} bytes, "
                    f"so the next chunk starts at offset {size}",
                    code=ErrorCode.invalid_field,
                )
            end = max(size, offset + len(data))
            if end > self.settings.max_recording_bytes:
                raise ApiError(
                    f"a call's recording is at most {self.settings.max_recording_bytes} bytes",
                    code=ErrorCode.too_large,
                )

            def write() -> None:
                with open(path, "r+b" if path.exists() else "w+b") as f:
                    try:
                        f.seek(offset)
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    except BaseException:
                        # e.g. the disk is full: give back what this chunk added, so it can be sent again
                        with contextlib.suppress(OSError):
                            f.truncate(size)
                        raise

            if data or size == 0:
                await asyncio.to_thread(write)
            digest = await asyncio.to_thread(sha256_file, path) if final else ""
            stored = await self._seal(path) if final else path
            art = await self._recording_row(
                call_id,
                part,
                row,
                agent,
                stored,
                end,
                digest,
                final,
                address,
                f"part {part}, offset {offset}, {len(data)} bytes",
            )
            if isinstance(art, str):  # another node finished it meanwhile
                await self._refuse_finished(agent, call_id, art, offset, address)
        if final:
            self._rec_locks.pop(key, None)
        return self.view(art)

    async def _refuse_finished(
        self, agent: Agent, call_id: str, art_id: str, offset: int, address: str
    ) -> None:
        """A write to a recording after its final chunk: audited, refused (recording_finished)."""
        async with self.push_hub.transaction() as tx:
            await record_audit(
                tx.conn,
                at=tx.now,
                actor=f"agent:{agent.name}",
                action="refused",
                kind="recording",
                object_id=art_id,
                call_id=call_id,
                address=address,
                detail=f"a write at offset {offset} after the final chunk",
            )
        raise ApiError(code=ErrorCode.recording_finished)

    async def _recording_art(self, call_id: str, part: int = 1) -> Any:
        return (await self._recording_parts(call_id)).get(part)

    async def _recording_parts(self, call_id: str) -> dict[int, Any]:
        """The call's recording rows by part (1: the first hub's, or the SFU mode's one)."""
        async with self.push_hub.store.read() as c:
            rows = await c.execute(
                select(media_artifacts).where(
                    media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                )
            )
            return {recording_part(r.meta): r for r in rows}

    async def _recording_row(
        self,
        call_id: str,
        part: int,
        row: Any,
        agent: Agent,
        path: Path,
        size: int,
        digest: str,
        final: bool,
        address: str,
        detail: str,
    ) -> Any:
        """Store the recording's row; the id of the row, unchanged, when it was complete already.

        Exactly one ``recording.ready`` per call: the call's row is locked first (PostgreSQL;
        SQLite has one writer), so of two final chunks of one call on two nodes, the second
        finds the recording complete here, in its transaction, and changes and emits nothing."""
        meta = {"complete": final, "agentName": agent.name, "part": part}
        async with self.push_hub.transaction() as tx:
            await tx.conn.execute(select(calls.c.id).where(calls.c.id == call_id).with_for_update())
            rows = await tx.conn.execute(
                select(media_artifacts.c.id, media_artifacts.c.meta).where(
                    media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                )
            )
            found = next((r for r in rows if recording_part(r.meta) == part), None)
            if found is not None and (found.meta or {}).get("complete"):
                return str(found.id)
            existing = None if found is None else found.id
            if existing is None:
                existing = new_id()
                await self._insert_recording(
                    tx, existing, call_id, row.session_id, agent.id, path, size, digest, meta
                )
            else:
                await tx.conn.execute(
                    update(media_artifacts)
                    .where(media_artifacts.c.id == existing)
                    .values(sha256=digest, meta=meta, **self._file_values(path, size))
                )
            await record_audit(
                tx.conn,
                at=tx.now,
                actor=f"agent:{agent.name}",
                action="finish" if final else "write",
                kind="recording",
                object_id=existing,
                call_id=call_id,
                address=address,
                detail=detail,
            )
            art = (
                await tx.conn.execute(select(media_artifacts).where(media_artifacts.c.id == existing))
            ).first()
            if final:
                await emit(tx, EventType.recording_ready, call_id, self.view(art))
            return art

    async def _insert_recording(
        self,
        tx: Tx,
        art_id: str,
        call_id: str,
        session_id: str | None,
        agent_id: int | None,
        path: Path,
        size: int,
        digest: str,
        meta: dict[str, Any],
    ) -> None:
        """A call's recording row (the plugin's upload in the hub mode, the server's in the SFU mode)."""
        await tx.conn.execute(
            insert(media_artifacts).values(
                id=art_id,
                kind="recording",
                call_id=call_id,
                session_id=session_id,
                agent_id=agent_id,
                content_type="video/webm",
                sha256=digest,
                created_at=tx.now,
                meta=meta,
                **self._file_values(path, size),
            )
        )

    def recording_path(self, call_id: str) -> Path:
        """Where the server makes the call's recording (SFU mode): never the path a plugin's
        upload of the hub mode writes to, so one cannot overwrite the other."""
        return self._path("recording", f"{call_id}.sfu.webm")

    async def _call_agents(self, tx: Tx, call_id: str) -> list[int]:
        rows = await tx.conn.execute(
            select(call_members.c.agent_id)
            .where(call_members.c.call_id == call_id, call_members.c.agent_id.is_not(None))
            .distinct()
        )
        return [int(r.agent_id) for r in rows]

    async def _recording_news(self, tx: Tx, call_id: str, status: dict[str, Any]) -> None:
        """The call's recording status in its record, and a ``recording`` push to its agents."""
        await tx.conn.execute(update(calls).where(calls.c.id == call_id).values(recording=status))
        for agent_id in await self._call_agents(tx, call_id):
            await tx.push(agent_key(agent_id), event("recording", {"callId": call_id, **status}))

    async def recording_status(self, call_id: str) -> dict[str, Any] | None:
        """The SFU mode's recording status of the call (None: no media reached the media server)."""
        async with self.push_hub.store.read() as c:
            status: dict[str, Any] | None = (
                await c.execute(select(calls.c.recording).where(calls.c.id == call_id))
            ).scalar_one_or_none()
        return status

    async def recording_started(self, call_id: str, member: str, at: Any) -> bool:
        """The media server writes the call's first media; False if this was known already."""
        async with self.push_hub.transaction() as tx:
            now = (await tx.conn.execute(select(calls.c.recording).where(calls.c.id == call_id))).first()
            if now is None or now.recording is not None:
                return False
            status = {"status": "recording", "startedAt": iso(aware(at)), "member": member}
            await self._recording_news(tx, call_id, status)
            await emit(tx, EventType.recording_started, call_id, {"callId": call_id, **status})
        log.info("call %s: the recording started (%s's media)", call_id, member)
        return True

    async def recording_failed(self, call_id: str, reason: str) -> None:
        """The call's recording could not be made: said in its record, to its agents, audited."""
        async with self.push_hub.transaction() as tx:
            row = (await tx.conn.execute(select(calls.c.recording).where(calls.c.id == call_id))).first()
            status = {**((row.recording or {}) if row is not None else {}), "status": "failed"}
            status["reason"] = reason[:300]
            await self._recording_news(tx, call_id, status)
            await emit(
                tx, EventType.recording_failed, call_id, {"callId": call_id, "reason": status["reason"]}
            )
            await record_audit(
                tx.conn,
                at=tx.now,
                actor=f"server:{self.settings.node_id}",
                action="failed",
                kind="recording",
                call_id=call_id,
                address="-",
                detail=reason,
            )
        log.error("call %s: the recording failed: %s", call_id, reason)

    async def server_recording(self, call_id: str, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """Store the recording the server made at ``path`` (its final place) as the call's artifact."""
        row, _call = await self._call(call_id)
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        digest = await asyncio.to_thread(sha256_file, path)
        path = await self._seal(path)
        art_id = new_id()
        async with self.push_hub.transaction() as tx:
            existing = (
                await tx.conn.execute(
                    select(media_artifacts.c.id).where(
                        media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                    )
                )
            ).first()
            if existing is not None:
                raise ApiError("this call has a recording already", code=ErrorCode.recording_finished)
            await self._insert_recording(
                tx,
                art_id,
                call_id,
                row.session_id,
                row.agent_id,
                path,
                size,
                digest,
                {"complete": True, "source": "sfu", **meta},
            )
            art = (
                await tx.conn.execute(select(media_artifacts).where(media_artifacts.c.id == art_id))
            ).first()
            await record_audit(
                tx.conn,
                at=tx.now,
                actor=f"server:{self.settings.node_id}",
                action="finish",
                kind="recording",
                object_id=art_id,
                call_id=call_id,
                address="-",
                detail=f"{size} bytes from the media server's tracks",
            )
            started = (row.recording or {}).get("startedAt")
            status = {"status": "ready", "artifactId": art_id, "sha256": digest, "size": size}
            if started:
                status["startedAt"] = started
            await self._recording_news(tx, call_id, status)
            await emit(tx, EventType.recording_ready, call_id, self.view(art))
        log.info("call %s: recording %s stored (%d bytes)", call_id, art_id, size)
        return self.view(art)
