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
call and admins read them, and every read is logged (``kefu.server.audit``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import insert, select, update

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, CallPhase, MemberKind, MemberStatus

from .accounts import Agent
from .events import EventType, emit
from .hub import Hub, agent_key
from .routing import event
from .schema import call_members, calls, media_artifacts, visitors
from .settings import Settings
from .store import aware, iso, new_id

__all__ = ["MAX_IMAGE_BYTES", "MAX_RECORDING_BYTES", "Media"]

log = logging.getLogger("kefu.server.media")
audit = logging.getLogger("kefu.server.audit")

MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_RECORDING_BYTES = 4 * 1024 * 1024 * 1024


def _jpeg_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                raise ApiError("the image is not a JPEG", code=ErrorCode.invalid_field)
            return img.size
    except (UnidentifiedImageError, OSError):
        raise ApiError("the body is not a JPEG image", code=ErrorCode.invalid_field) from None


class Media:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.s = settings
        self.root = Path(settings.data_dir) / "media"
        self._rec_locks: dict[str, asyncio.Lock] = {}

    def _path(self, kind: str, name: str) -> Path:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / name

    async def _call(self, call_id: str) -> tuple[Any, Call]:
        async with self.hub.store.read() as c:
            row = (await c.execute(select(calls).where(calls.c.id == call_id))).first()
        if row is None or row.snapshot is None:
            raise ApiError(code=ErrorCode.no_such_call)
        return row, Call.from_dict(row.snapshot)

    # --- photos from the visitor (takePhoto)

    async def visitor_photo(
        self, name: str, key: str, call_id: str, request_id: str, data: bytes
    ) -> dict[str, Any]:
        async with self.hub.store.read() as c:
            v = (await c.execute(select(visitors).where(visitors.c.name == name))).first()
        if v is None or not hmac.compare_digest(hashlib.sha256(key.encode()).hexdigest(), v.key_hash):
            raise ApiError("send X-Visitor-Name and X-Visitor-Key", code=ErrorCode.unauthenticated)
        row, call = await self._call(call_id)
        me = call.member(MemberKind.visitor, name)
        if me is None or me.status is not MemberStatus.joined or call.phase is CallPhase.ended:
            raise ApiError("not in this call", code=ErrorCode.forbidden)
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(code=ErrorCode.too_large)
        width, height = _jpeg_size(data)
        meta = {"requestId": request_id, "visitorName": name, "width": width, "height": height}
        art = await self._store("photo", call_id, row.session_id, row.agent_id, "image/jpeg", data, meta)
        async with self.hub.transaction() as tx:
            await tx.push(
                agent_key(row.agent_id),
                event("photo", {"callId": call_id, "requestId": request_id, **self.view(art)}),
            )
        return self.view(art)

    # --- snapshots from the agent's plugin

    async def agent_snapshot(self, agent: Agent, call_id: str, data: bytes) -> dict[str, Any]:
        row, call = await self._call(call_id)
        if call.member(MemberKind.agent, agent.name) is None:
            raise ApiError("not in this call", code=ErrorCode.forbidden)
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(code=ErrorCode.too_large)
        width, height = _jpeg_size(data)
        meta = {"agentName": agent.name, "width": width, "height": height}
        art = await self._store("snapshot", call_id, row.session_id, agent.id, "image/jpeg", data, meta)
        return self.view(art)

    async def _store(
        self,
        kind: str,
        call_id: str,
        session_id: str | None,
        agent_id: int | None,
        ctype: str,
        data: bytes,
        meta: dict[str, Any],
    ) -> Any:
        art_id = new_id()
        path = self._path(kind, f"{art_id}.jpg")
        await asyncio.to_thread(path.write_bytes, data)
        digest = hashlib.sha256(data).hexdigest()
        async with self.hub.transaction() as tx:
            await tx.conn.execute(
                insert(media_artifacts).values(
                    id=art_id,
                    kind=kind,
                    call_id=call_id,
                    session_id=session_id,
                    agent_id=agent_id,
                    content_type=ctype,
                    path=str(path.relative_to(self.s.data_dir)),
                    size=len(data),
                    sha256=digest,
                    created_at=tx.now,
                    meta=meta,
                )
            )
            art = (
                await tx.conn.execute(select(media_artifacts).where(media_artifacts.c.id == art_id))
            ).first()
            taken = EventType.photo_taken if kind == "photo" else EventType.snapshot_taken
            extra = {"requestId": meta["requestId"]} if kind == "photo" else {}
            await emit(tx, taken, call_id, {**self.view(art), **extra})
        log.info("stored %s %s of call %s (%d bytes)", kind, art_id, call_id, len(data))
        return art

    # --- the recording, in chunks during the call

    async def recording_chunk(
        self, agent: Agent, call_id: str, offset: int, data: bytes, final: bool
    ) -> dict[str, Any]:
        row, _call = await self._call(call_id)
        if row.agent_id != agent.id:
            raise ApiError("only the call's primary agent records it", code=ErrorCode.forbidden)
        if offset < 0 or offset + len(data) > MAX_RECORDING_BYTES:
            raise ApiError("offset out of range", code=ErrorCode.invalid_field)
        lock = self._rec_locks.setdefault(call_id, asyncio.Lock())
        async with lock:
            path = self._path("recording", f"{call_id}.webm")

            def write() -> int:
                mode = "r+b" if path.exists() else "w+b"
                with open(path, mode) as f:
                    f.seek(offset)
                    f.write(data)
                    f.seek(0, io.SEEK_END)
                    return f.tell()

            size = await asyncio.to_thread(write)
            art = await self._recording_row(call_id, row, agent, path, size, final)
        if final:
            self._rec_locks.pop(call_id, None)
        return self.view(art)

    async def _recording_row(
        self, call_id: str, row: Any, agent: Agent, path: Path, size: int, final: bool
    ) -> Any:
        digest = (
            await asyncio.to_thread(lambda: hashlib.sha256(path.read_bytes()).hexdigest()) if final else ""
        )
        meta = {"complete": final, "agentName": agent.name}
        async with self.hub.transaction() as tx:
            existing = (
                await tx.conn.execute(
                    select(media_artifacts.c.id).where(
                        media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                    )
                )
            ).scalar_one_or_none()
            if existing is None:
                existing = new_id()
                await tx.conn.execute(
                    insert(media_artifacts).values(
                        id=existing,
                        kind="recording",
                        call_id=call_id,
                        session_id=row.session_id,
                        agent_id=agent.id,
                        content_type="video/webm",
                        path=str(path.relative_to(self.s.data_dir)),
                        size=size,
                        sha256=digest,
                        created_at=tx.now,
                        meta=meta,
                    )
                )
            else:
                await tx.conn.execute(
                    update(media_artifacts)
                    .where(media_artifacts.c.id == existing)
                    .values(size=size, sha256=digest, meta=meta)
                )
            art = (
                await tx.conn.execute(select(media_artifacts).where(media_artifacts.c.id == existing))
            ).first()
            if final:
                await emit(tx, EventType.recording_ready, call_id, self.view(art))
            return art

    # --- reading (the call's agents and admins only, every read audited)

    async def _may_read(self, agent: Agent, call_id: str | None) -> None:
        if agent.admin:
            return
        if call_id is not None:
            async with self.hub.store.read() as c:
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

    async def read(self, agent: Agent, artifact_id: str) -> tuple[Any, bytes]:
        async with self.hub.store.read() as c:
            art = (
                await c.execute(select(media_artifacts).where(media_artifacts.c.id == artifact_id))
            ).first()
        if art is None:
            raise ApiError(code=ErrorCode.no_such_media)
        await self._may_read(agent, art.call_id)
        data = await asyncio.to_thread((Path(self.s.data_dir) / art.path).read_bytes)
        audit.info("agent %s read %s %s of call %s", agent.name, art.kind, art.id, art.call_id)
        return art, data

    async def recording_of(self, agent: Agent, call_id: str) -> tuple[Any, bytes]:
        async with self.hub.store.read() as c:
            art_id = (
                await c.execute(
                    select(media_artifacts.c.id).where(
                        media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                    )
                )
            ).scalar_one_or_none()
        if art_id is None:
            await self._may_read(agent, call_id)
            raise ApiError("this call has no recording", code=ErrorCode.no_such_media)
        return await self.read(agent, art_id)

    async def of_call(self, agent: Agent, call_id: str) -> list[dict[str, Any]]:
        await self._may_read(agent, call_id)
        async with self.hub.store.read() as c:
            rows = (
                await c.execute(
                    select(media_artifacts)
                    .where(media_artifacts.c.call_id == call_id)
                    .order_by(media_artifacts.c.created_at)
                )
            ).all()
        return [self.view(r) for r in rows]

    @staticmethod
    def view(art: Any) -> dict[str, Any]:
        return {
            "artifactId": art.id,
            "kind": art.kind,
            "callId": art.call_id,
            "contentType": art.content_type,
            "size": art.size,
            "sha256": art.sha256,
            "createdAt": iso(aware(art.created_at)),
            "meta": art.meta,
        }
