"""Where media artifacts live: files under the data directory, sealed with the media key.

Files are named by the server (``media/<kind>/<id>.<ext>``): a caller never
chooses a path (reliability T6). With a media key (issue 17,
:mod:`kefu.server.vault`) a finished file is sealed (``<name>.enc``, the
key's id in ``key_id``) and the clear one removed. See :mod:`kefu.server.media`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call

from .hub import Hub
from .schema import calls
from .settings import Settings
from .store import aware, iso
from .vault import Vault

__all__ = ["MediaFiles", "jpeg_size", "recording_part", "sha256_file"]

log = logging.getLogger("kefu.server.media")


def jpeg_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                raise ApiError("the image is not a JPEG", code=ErrorCode.invalid_field)
            return img.size
    except (UnidentifiedImageError, OSError):
        raise ApiError("the body is not a JPEG image", code=ErrorCode.invalid_field) from None


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in blocks (never the whole file in memory); run in a thread."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def recording_part(meta: Any) -> int:
    """A recording row's part (hub mode, one per hub, D51; rows before it have none: part 1)."""
    part = (meta or {}).get("part", 1)
    return part if type(part) is int and part >= 1 else 1


class MediaFiles:
    """The media's files and the call they belong to; the artifacts' public view."""

    def __init__(self, push_hub: Hub, settings: Settings) -> None:
        self.push_hub = push_hub
        self.settings = settings
        self.root = Path(settings.data_dir) / "media"
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
        async with self.push_hub.store.read() as c:
            row = (await c.execute(select(calls).where(calls.c.id == call_id))).first()
        if row is None or row.snapshot is None:
            raise ApiError(code=ErrorCode.no_such_call)
        return row, Call.from_dict(row.snapshot)

    def _file_values(self, path: Path, size: int) -> dict[str, Any]:
        """Where a recording's file is, its size, and the key it is sealed with (None: clear)."""
        return {
            "path": str(path.relative_to(self.settings.data_dir)),
            "size": size,
            "key_id": self.vault.current_id if path.suffix == ".enc" else None,
        }

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
