"""Media artifacts: photos, snapshots and recordings of calls (SPEC §4.4; issue 6).

Theory of operation
-------------------
The server never sees the media stream; it stores what the call's members
send it: a visitor's photo (``POST /api/visitor/photo``, answered by the
visitor's own client after the agent's ``takePhoto``), an agent's snapshot
(``POST /api/media/snapshot``) and the plugin's recording of the call, which
arrives in chunks during the call (``PUT /api/calls/{id}/recording?offset=``)
so a crash loses at most the last few seconds. Files live under the data
directory, named by the server (``media/<kind>/<id>.<ext>``): a caller never
chooses a path (reliability T6). Each artifact row records who, when, which
call and the file's SHA-256.

Photos and recordings are sensitive (reliability §4): only the agents of the
call and admins read them, and every read and write is kept in the ``audit``
table (who, what, which object, when, from which address) and logged
(``kefu.server.audit``).

Bounds (issue 15; every one a setting): a photo or snapshot is at most
``max_image_bytes``; a visitor's photo answers an open ``takePhoto`` request
of the call's agent, once, within ``photo_request_ttl`` (else
``no_such_request``), and a call has at most ``photo_max_open`` unanswered
requests. A recording grows without holes: a chunk starts at or before the
stored size (the muxer rewrites its header at the end), never after it; it
is at most ``max_recording_bytes`` in all; once ``final`` it is evidence and
never changes again (``recording_finished``). Its checksum is computed in a
thread, reading the file in blocks.

At rest (issue 17, :mod:`kefu.server.vault`): with a media key every photo,
snapshot and finished recording is stored encrypted (``<name>.enc``, the key's
id in ``key_id``); size and SHA-256 are those of the media itself, and a
download decrypts it while it is sent. A recording growing during a call is
in clear until its final chunk, then sealed and the clear file removed.
Retention (``retention_days``): :meth:`Media.expire` deletes the files of
older artifacts (the row stays, with ``deleted_at``, and an audit row).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import CallPhase, MemberKind, MemberStatus

from .accounts import Agent
from .audit import record_audit
from .events import EventType, emit
from .hub import agent_key
from .media_files import jpeg_size
from .media_recordings import MediaRecordings
from .photo_requests import answer_photo_request, open_photo_request, open_request_where
from .routing import event
from .schema import call_members, media_artifacts, photo_requests, visitors
from .store import new_id

__all__ = ["Media", "PhotoUpload", "answer_photo_request", "open_photo_request", "record_audit"]

log = logging.getLogger("kefu.server.media")


@dataclass(frozen=True)
class PhotoUpload:
    """A visitor's photo that may be sent: checked before its body is read."""

    visitor_name: str
    call_id: str
    request_id: str
    session_id: str | None
    agent_id: int


class Media(MediaRecordings):
    """Photos, snapshots and recordings of calls: stored, read (audited), expired."""

    # --- photos from the visitor (takePhoto)

    async def photo_allowed(self, name: str, key: str, call_id: str, request_id: str) -> PhotoUpload:
        """Who sends, in which call, for which open request: all checked before the body is read."""
        v = None
        if 0 < len(name) <= 64 and name.isprintable():  # PostgreSQL refuses NUL: no 500 for "%00"
            async with self.push_hub.store.read() as c:
                v = (await c.execute(select(visitors).where(visitors.c.name == name))).first()
        if v is None or not hmac.compare_digest(hashlib.sha256(key.encode()).hexdigest(), v.key_hash):
            raise ApiError("send X-Visitor-Name and X-Visitor-Key", code=ErrorCode.unauthenticated)
        row, call = await self._call(call_id)
        me = call.member(MemberKind.visitor, name)
        if me is None or me.status is not MemberStatus.joined or call.phase is CallPhase.ended:
            raise ApiError("not in this call", code=ErrorCode.forbidden)
        now = self.settings.now()
        async with self.push_hub.store.read() as c:
            req = (
                await c.execute(
                    select(photo_requests.c.id).where(
                        *open_request_where(self.settings, request_id, call_id, name, now)
                    )
                )
            ).first()
        if req is None:
            raise ApiError(
                "no open takePhoto request with this id for you in this call", code=ErrorCode.no_such_request
            )
        return PhotoUpload(name, call_id, request_id, row.session_id, int(row.agent_id))

    async def visitor_photo(self, up: PhotoUpload, data: bytes, address: str) -> dict[str, Any]:
        if len(data) > self.settings.max_image_bytes:
            raise ApiError(
                f"a photo is at most {self.settings.max_image_bytes} bytes", code=ErrorCode.too_large
            )
        width, height = jpeg_size(data)
        meta = {"requestId": up.request_id, "visitorName": up.visitor_name, "width": width, "height": height}
        art_id = new_id()
        path = await self._write_new("photo", art_id, data)
        try:
            async with self.push_hub.transaction() as tx:
                # one answer per request: the claim and the artifact commit together
                await answer_photo_request(
                    tx.conn,
                    self.settings,
                    request_id=up.request_id,
                    call_id=up.call_id,
                    visitor_name=up.visitor_name,
                    answer="photo",
                    now=tx.now,
                )
                art = await self._insert(
                    tx, art_id, "photo", up.call_id, up.session_id, up.agent_id, path, data, meta
                )
                await record_audit(
                    tx.conn,
                    at=tx.now,
                    actor=f"visitor:{up.visitor_name}",
                    action="write",
                    kind="photo",
                    object_id=art_id,
                    call_id=up.call_id,
                    address=address,
                    detail=f"{len(data)} bytes for request {up.request_id}",
                )
                await tx.push(
                    agent_key(up.agent_id),
                    event("photo", {"callId": up.call_id, "requestId": up.request_id, **self.view(art)}),
                )
        except BaseException:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        return self.view(art)

    async def agent_snapshot(self, agent: Agent, call_id: str, data: bytes, address: str) -> dict[str, Any]:
        row, call = await self._call(call_id)
        if call.member(MemberKind.agent, agent.name) is None:
            raise ApiError("not in this call", code=ErrorCode.forbidden)
        if len(data) > self.settings.max_image_bytes:
            raise ApiError(
                f"a snapshot is at most {self.settings.max_image_bytes} bytes", code=ErrorCode.too_large
            )
        width, height = jpeg_size(data)
        meta = {"agentName": agent.name, "width": width, "height": height}
        art_id = new_id()
        path = await self._write_new("snapshot", art_id, data)
        try:
            async with self.push_hub.transaction() as tx:
                art = await self._insert(
                    tx, art_id, "snapshot", call_id, row.session_id, agent.id, path, data, meta
                )
                await record_audit(
                    tx.conn,
                    at=tx.now,
                    actor=f"agent:{agent.name}",
                    action="write",
                    kind="snapshot",
                    object_id=art_id,
                    call_id=call_id,
                    address=address,
                    detail=f"{len(data)} bytes",
                )
        except BaseException:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        return self.view(art)

    async def _write_new(self, kind: str, art_id: str, data: bytes) -> Path:
        """Write a new image file; a failed write (e.g. the disk is full) leaves no file behind."""
        sealed = self.vault.enabled
        path = self._path(kind, f"{art_id}.jpg.enc" if sealed else f"{art_id}.jpg")

        def write() -> None:
            try:
                with open(path, "xb") as f:
                    f.write(self.vault.seal_bytes(data) if sealed else data)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                path.unlink(missing_ok=True)
                raise

        await asyncio.to_thread(write)
        return path

    async def _insert(
        self,
        tx: Any,
        art_id: str,
        kind: str,
        call_id: str,
        session_id: str | None,
        agent_id: int | None,
        path: Path,
        data: bytes,
        meta: dict[str, Any],
    ) -> Any:
        await tx.conn.execute(
            insert(media_artifacts).values(
                id=art_id,
                kind=kind,
                call_id=call_id,
                session_id=session_id,
                agent_id=agent_id,
                content_type="image/jpeg",
                path=str(path.relative_to(self.settings.data_dir)),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                created_at=tx.now,
                meta=meta,
                key_id=self.vault.current_id if path.suffix == ".enc" else None,
            )
        )
        art = (await tx.conn.execute(select(media_artifacts).where(media_artifacts.c.id == art_id))).first()
        taken = EventType.photo_taken if kind == "photo" else EventType.snapshot_taken
        extra = {"requestId": meta["requestId"]} if kind == "photo" else {}
        await emit(tx, taken, call_id, {**self.view(art), **extra})
        log.info("stored %s %s of call %s (%d bytes)", kind, art_id, call_id, len(data))
        return art

    async def expire(self) -> int:
        """Delete the files of artifacts older than ``retention_days`` (each audited); how many."""
        if self.settings.retention_days is None:
            return 0
        before = self.settings.now() - timedelta(days=self.settings.retention_days)
        async with self.push_hub.store.read() as c:
            rows = (
                await c.execute(
                    select(media_artifacts)
                    .where(media_artifacts.c.created_at < before, media_artifacts.c.deleted_at.is_(None))
                    .order_by(media_artifacts.c.created_at)
                    .limit(500)
                )
            ).all()
        for art in rows:
            await asyncio.to_thread((Path(self.settings.data_dir) / art.path).unlink, missing_ok=True)
            async with self.push_hub.transaction() as tx:
                await tx.conn.execute(
                    update(media_artifacts).where(media_artifacts.c.id == art.id).values(deleted_at=tx.now)
                )
                await record_audit(
                    tx.conn,
                    at=tx.now,
                    actor=f"server:{self.settings.node_id}",
                    action="expire",
                    kind=art.kind,
                    object_id=art.id,
                    call_id=art.call_id,
                    address="-",
                    detail=f"older than {self.settings.retention_days:g} days",
                )
        return len(rows)

    async def _require_reader(self, agent: Agent, call_id: str | None) -> None:
        """``no_such_media`` unless ``agent`` is an admin or an agent of the call."""
        if agent.admin:
            return
        if call_id is not None:
            async with self.push_hub.store.read() as c:
                member = (
                    await c.execute(
                        select(call_members.c.num).where(
                            call_members.c.call_id == call_id, call_members.c.agent_id == agent.id
                        )
                    )
                ).first()
            if member is not None:
                return
        raise ApiError(code=ErrorCode.no_such_media)

    async def read(self, agent: Agent, artifact_id: str, address: str) -> tuple[Any, Path]:
        """The artifact and its file (sent from disk in blocks, never read whole), the read audited."""
        async with self.push_hub.store.read() as c:
            art = (
                await c.execute(select(media_artifacts).where(media_artifacts.c.id == artifact_id))
            ).first()
        if art is None:
            raise ApiError(code=ErrorCode.no_such_media)
        await self._require_reader(agent, art.call_id)
        if art.deleted_at is not None:
            raise ApiError("this artifact was deleted when its retention ended", code=ErrorCode.no_such_media)
        path = Path(self.settings.data_dir) / art.path
        if not await asyncio.to_thread(path.is_file):
            log.error("the file of %s %s is missing: %s", art.kind, art.id, path)
            raise ApiError("the file of this artifact is missing", code=ErrorCode.no_such_media)
        async with self.push_hub.transaction() as tx:
            await record_audit(
                tx.conn,
                at=tx.now,
                actor=f"agent:{agent.name}",
                action="read",
                kind=art.kind,
                object_id=art.id,
                call_id=art.call_id,
                address=address,
            )
        return art, path

    async def recording_of(self, agent: Agent, call_id: str, address: str, part: int = 1) -> tuple[Any, Path]:
        """Part ``part`` of the call's recording (hub mode: one per hub, D51)."""
        art = await self._recording_art(call_id, part)
        if art is None:
            await self._require_reader(agent, call_id)
            raise ApiError(
                "this call has no recording" if part == 1 else f"this call's recording has no part {part}",
                code=ErrorCode.no_such_media,
            )
        return await self.read(agent, art.id, address)

    async def of_call(self, agent: Agent, call_id: str) -> list[dict[str, Any]]:
        await self._require_reader(agent, call_id)
        async with self.push_hub.store.read() as c:
            rows = (
                await c.execute(
                    select(media_artifacts)
                    .where(media_artifacts.c.call_id == call_id)
                    .order_by(media_artifacts.c.created_at)
                )
            ).all()
        return [self.view(r) for r in rows]
