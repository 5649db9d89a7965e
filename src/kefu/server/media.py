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
import contextlib
import hashlib
import hmac
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, CallPhase, MemberKind, MemberStatus

from .accounts import Agent
from .events import EventType, emit
from .hub import Hub, Tx, agent_key
from .routing import event
from .schema import audit, call_members, calls, media_artifacts, photo_requests, visitors
from .settings import Settings
from .store import aware, iso, new_id
from .vault import Vault

__all__ = ["Media", "PhotoUpload", "answer_photo_request", "open_photo_request", "record_audit"]

log = logging.getLogger("kefu.server.media")
audit_log = logging.getLogger("kefu.server.audit")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                raise ApiError("the image is not a JPEG", code=ErrorCode.invalid_field)
            return img.size
    except (UnidentifiedImageError, OSError):
        raise ApiError("the body is not a JPEG image", code=ErrorCode.invalid_field) from None


def _sha256_file(path: Path) -> str:
    """The file's SHA-256, read in blocks (never the whole file in memory); run in a thread."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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


# --- the agent's takePhoto requests (SPEC §4.4): what a visitor's photo or photoAnswer answers


async def open_photo_request(
    conn: AsyncConnection, settings: Settings, *, call_id: str, agent_id: int, visitor_name: str, now: Any
) -> str:
    """Record a new takePhoto request of the call's agent; its id. More than
    ``photo_max_open`` unanswered ones in the call: ``rate_limited``."""
    since = now - timedelta(seconds=settings.photo_request_ttl)
    open_now = (
        await conn.execute(
            select(func.count())
            .select_from(photo_requests)
            .where(
                photo_requests.c.call_id == call_id,
                photo_requests.c.answered_at.is_(None),
                photo_requests.c.created_at >= since,
            )
        )
    ).scalar_one()
    if open_now >= settings.photo_max_open:
        raise ApiError(
            f"{open_now} photo requests of this call are not answered yet; wait for them",
            code=ErrorCode.rate_limited,
        )
    request_id = new_id()
    await conn.execute(
        insert(photo_requests).values(
            id=request_id, call_id=call_id, agent_id=agent_id, visitor_name=visitor_name, created_at=now
        )
    )
    return request_id


def _open_request(settings: Settings, request_id: str, call_id: str, visitor_name: str, now: Any) -> Any:
    return (
        photo_requests.c.id == request_id,
        photo_requests.c.call_id == call_id,
        photo_requests.c.visitor_name == visitor_name,
        photo_requests.c.answered_at.is_(None),
        photo_requests.c.created_at >= now - timedelta(seconds=settings.photo_request_ttl),
    )


async def answer_photo_request(
    conn: AsyncConnection,
    settings: Settings,
    *,
    request_id: str,
    call_id: str,
    visitor_name: str,
    answer: str,
    now: Any,
) -> None:
    """Mark the request answered (once); ``no_such_request`` if it is not open for this visitor."""
    done = await conn.execute(
        update(photo_requests)
        .where(*_open_request(settings, request_id, call_id, visitor_name, now))
        .values(answered_at=now, answer=answer)
    )
    if done.rowcount != 1:
        raise ApiError(
            "no open takePhoto request with this id for you in this call", code=ErrorCode.no_such_request
        )


@dataclass(frozen=True)
class PhotoUpload:
    """A visitor's photo that may be sent: checked before its body is read."""

    visitor_name: str
    call_id: str
    request_id: str
    session_id: str | None
    agent_id: int


class Media:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.s = settings
        self.root = Path(settings.data_dir) / "media"
        self._rec_locks: dict[str, asyncio.Lock] = {}
        self.vault = Vault(settings.media_keys)
        if not self.vault.enabled:
            log.warning(
                "media (recordings, photos, snapshots) is stored UNENCRYPTED under %s: give "
                "--media-key-file or $KEFU_MEDIA_KEY to encrypt it at rest",
                self.root,
            )

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

    async def photo_allowed(self, name: str, key: str, call_id: str, request_id: str) -> PhotoUpload:
        """Who sends, in which call, for which open request: all checked before the body is read."""
        v = None
        if 0 < len(name) <= 64 and name.isprintable():  # PostgreSQL refuses NUL: no 500 for "%00"
            async with self.hub.store.read() as c:
                v = (await c.execute(select(visitors).where(visitors.c.name == name))).first()
        if v is None or not hmac.compare_digest(hashlib.sha256(key.encode()).hexdigest(), v.key_hash):
            raise ApiError("send X-Visitor-Name and X-Visitor-Key", code=ErrorCode.unauthenticated)
        row, call = await self._call(call_id)
        me = call.member(MemberKind.visitor, name)
        if me is None or me.status is not MemberStatus.joined or call.phase is CallPhase.ended:
            raise ApiError("not in this call", code=ErrorCode.forbidden)
        now = self.s.now()
        async with self.hub.store.read() as c:
            req = (
                await c.execute(
                    select(photo_requests.c.id).where(*_open_request(self.s, request_id, call_id, name, now))
                )
            ).first()
        if req is None:
            raise ApiError(
                "no open takePhoto request with this id for you in this call", code=ErrorCode.no_such_request
            )
        return PhotoUpload(name, call_id, request_id, row.session_id, int(row.agent_id))

    async def visitor_photo(self, up: PhotoUpload, data: bytes, address: str) -> dict[str, Any]:
        if len(data) > self.s.max_image_bytes:
            raise ApiError(f"a photo is at most {self.s.max_image_bytes} bytes", code=ErrorCode.too_large)
        width, height = _jpeg_size(data)
        meta = {"requestId": up.request_id, "visitorName": up.visitor_name, "width": width, "height": height}
        art_id = new_id()
        path = await self._write_new("photo", art_id, data)
        try:
            async with self.hub.transaction() as tx:
                # one answer per request: the claim and the artifact commit together
                await answer_photo_request(
                    tx.conn,
                    self.s,
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

    # --- snapshots from the agent's plugin

    async def agent_snapshot(self, agent: Agent, call_id: str, data: bytes, address: str) -> dict[str, Any]:
        row, call = await self._call(call_id)
        if call.member(MemberKind.agent, agent.name) is None:
            raise ApiError("not in this call", code=ErrorCode.forbidden)
        if len(data) > self.s.max_image_bytes:
            raise ApiError(f"a snapshot is at most {self.s.max_image_bytes} bytes", code=ErrorCode.too_large)
        width, height = _jpeg_size(data)
        meta = {"agentName": agent.name, "width": width, "height": height}
        art_id = new_id()
        path = await self._write_new("snapshot", art_id, data)
        try:
            async with self.hub.transaction() as tx:
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
                path=str(path.relative_to(self.s.data_dir)),
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

    # --- the recording, in chunks during the call

    async def recording_chunk(
        self, agent: Agent, call_id: str, offset: int, data: bytes, final: bool, address: str
    ) -> dict[str, Any]:
        row, _call = await self._call(call_id)
        if row.agent_id != agent.id:
            raise ApiError("only the call's primary agent records it", code=ErrorCode.forbidden)
        lock = self._rec_locks.setdefault(call_id, asyncio.Lock())
        async with lock:
            existing = await self._recording_art(call_id)
            if existing is not None and (existing.meta or {}).get("complete"):
                await self._refuse_finished(agent, call_id, existing.id, offset, address)
            path = self._path("recording", f"{call_id}.webm")
            size = await asyncio.to_thread(lambda: path.stat().st_size if path.exists() else 0)
            if offset > size:
                raise ApiError(
                    f"offset {offset} would leave a hole: the recording has {size} bytes, "
                    f"so the next chunk starts at offset {size}",
                    code=ErrorCode.invalid_field,
                )
            end = max(size, offset + len(data))
            if end > self.s.max_recording_bytes:
                raise ApiError(
                    f"a call's recording is at most {self.s.max_recording_bytes} bytes",
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
            digest = await asyncio.to_thread(_sha256_file, path) if final else ""
            stored = await self._seal(path) if final else path
            art = await self._recording_row(
                call_id,
                row,
                agent,
                stored,
                end,
                digest,
                final,
                address,
                f"offset {offset}, {len(data)} bytes",
            )
            if isinstance(art, str):  # another node finished it meanwhile
                await self._refuse_finished(agent, call_id, art, offset, address)
        if final:
            self._rec_locks.pop(call_id, None)
        return self.view(art)

    async def _refuse_finished(
        self, agent: Agent, call_id: str, art_id: str, offset: int, address: str
    ) -> None:
        """A write to a recording after its final chunk: audited, refused (recording_finished)."""
        async with self.hub.transaction() as tx:
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

    async def _recording_art(self, call_id: str) -> Any:
        async with self.hub.store.read() as c:
            return (
                await c.execute(
                    select(media_artifacts).where(
                        media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                    )
                )
            ).first()

    async def _recording_row(
        self,
        call_id: str,
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
        meta = {"complete": final, "agentName": agent.name}
        async with self.hub.transaction() as tx:
            await tx.conn.execute(select(calls.c.id).where(calls.c.id == call_id).with_for_update())
            found = (
                await tx.conn.execute(
                    select(media_artifacts.c.id, media_artifacts.c.meta).where(
                        media_artifacts.c.call_id == call_id, media_artifacts.c.kind == "recording"
                    )
                )
            ).first()
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

    def _file_values(self, path: Path, size: int) -> dict[str, Any]:
        """Where a recording's file is, its size, and the key it is sealed with (None: clear)."""
        return {
            "path": str(path.relative_to(self.s.data_dir)),
            "size": size,
            "key_id": self.vault.current_id if path.suffix == ".enc" else None,
        }

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

    # --- the SFU mode: the server makes the recording (kefu.server.sfu, kefu.server.recording)

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
        async with self.hub.store.read() as c:
            status: dict[str, Any] | None = (
                await c.execute(select(calls.c.recording).where(calls.c.id == call_id))
            ).scalar_one_or_none()
        return status

    async def recording_started(self, call_id: str, member: str, at: Any) -> bool:
        """The media server writes the call's first media; False if this was known already."""
        async with self.hub.transaction() as tx:
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
        async with self.hub.transaction() as tx:
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
                actor=f"server:{self.s.node_id}",
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
        digest = await asyncio.to_thread(_sha256_file, path)
        path = await self._seal(path)
        art_id = new_id()
        async with self.hub.transaction() as tx:
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
                actor=f"server:{self.s.node_id}",
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

    async def _seal(self, path: Path) -> Path:
        """A finished file sealed with the current key beside it (``.enc``), the clear one
        removed; ``path`` itself without a key."""
        if not self.vault.enabled:
            return path
        sealed = path.with_name(path.name + ".enc")
        await asyncio.to_thread(sealed.unlink, missing_ok=True)  # a half-sealed one from a crash
        await asyncio.to_thread(self.vault.seal_file, path, sealed)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return sealed

    def content(self, art: Any, path: Path) -> Iterator[bytes] | None:
        """The media of a sealed artifact's file, segment by segment (a blocking iterator, checked
        on its first step); None for a file stored in clear (sent as it is)."""
        if art.key_id is None:
            return None
        return self.vault.open_file(path)

    async def expire(self) -> int:
        """Delete the files of artifacts older than ``retention_days`` (each audited); how many."""
        if self.s.retention_days is None:
            return 0
        before = self.s.now() - timedelta(days=self.s.retention_days)
        async with self.hub.store.read() as c:
            rows = (
                await c.execute(
                    select(media_artifacts)
                    .where(media_artifacts.c.created_at < before, media_artifacts.c.deleted_at.is_(None))
                    .order_by(media_artifacts.c.created_at)
                    .limit(500)
                )
            ).all()
        for art in rows:
            await asyncio.to_thread((Path(self.s.data_dir) / art.path).unlink, missing_ok=True)
            async with self.hub.transaction() as tx:
                await tx.conn.execute(
                    update(media_artifacts).where(media_artifacts.c.id == art.id).values(deleted_at=tx.now)
                )
                await record_audit(
                    tx.conn,
                    at=tx.now,
                    actor=f"server:{self.s.node_id}",
                    action="expire",
                    kind=art.kind,
                    object_id=art.id,
                    call_id=art.call_id,
                    address="-",
                    detail=f"older than {self.s.retention_days:g} days",
                )
        return len(rows)

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

    async def read(self, agent: Agent, artifact_id: str, address: str) -> tuple[Any, Path]:
        """The artifact and its file (sent from disk in blocks, never read whole), the read audited."""
        async with self.hub.store.read() as c:
            art = (
                await c.execute(select(media_artifacts).where(media_artifacts.c.id == artifact_id))
            ).first()
        if art is None:
            raise ApiError(code=ErrorCode.no_such_media)
        await self._may_read(agent, art.call_id)
        if art.deleted_at is not None:
            raise ApiError("this artifact was deleted when its retention ended", code=ErrorCode.no_such_media)
        path = Path(self.s.data_dir) / art.path
        if not await asyncio.to_thread(path.is_file):
            log.error("the file of %s %s is missing: %s", art.kind, art.id, path)
            raise ApiError("the file of this artifact is missing", code=ErrorCode.no_such_media)
        async with self.hub.transaction() as tx:
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

    async def recording_of(self, agent: Agent, call_id: str, address: str) -> tuple[Any, Path]:
        art = await self._recording_art(call_id)
        if art is None:
            await self._may_read(agent, call_id)
            raise ApiError("this call has no recording", code=ErrorCode.no_such_media)
        return await self.read(agent, art.id, address)

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
