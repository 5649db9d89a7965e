"""Evidence at rest: media files encrypted with AES-256-GCM in segments (issue 17).

Theory of operation
-------------------
Recordings, photos and snapshots are bank evidence; a copied disk or backup
must not give them away. With a key configured (``--media-key-file`` or
``$KEFU_MEDIA_KEY``: 32 bytes in base64 or hex, one per line or comma, the first
one current, the others still read so keys can rotate), every media file is
written encrypted and decrypted only while an authorised reader downloads it.

A file is ``KEFUMED1`` | key id (8 bytes) | nonce prefix (8 random bytes) |
segment size (4 bytes, big-endian), then segments: each up to ``SEGMENT``
bytes of the media sealed by AES-GCM (its 16-byte tag after it) with the
nonce ``prefix | counter`` (4 bytes) and, as associated data, the header,
the counter and whether it is the last segment. So a segment cannot be
moved, dropped, reordered or the file cut short without the tag failing
(the STREAM construction), and a file is never read whole into memory: one
segment at a time both ways. The key id is the first 8 bytes of the key's
SHA-256 (it names the key, it does not reveal it); the artifact row keeps it
too (``media_artifacts.key_id``).

Without a key, files are stored as they are (the embedded demo), and the
server says so when it starts.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .atrest import parse_key

__all__ = ["MAGIC", "SEGMENT", "MediaKeyError", "Vault", "parse_keys"]

MAGIC = b"KEFUMED1"
SEGMENT = 1024 * 1024
TAG = 16
_HEADER = len(MAGIC) + 8 + 8 + 4


class MediaKeyError(ValueError):
    """A key that is not base64 of 32 bytes, or a file sealed with a key we do not have."""


def parse_keys(text: str) -> tuple[bytes, ...]:
    """Keys from a key file or ``$KEFU_MEDIA_KEY``: 32 bytes each in base64 or hex
    (:func:`kefu.server.atrest.parse_key`), one per line or comma, the current first."""
    try:
        return tuple(parse_key(word, "a media key") for word in text.replace(",", "\n").split())
    except ValueError as exc:
        raise MediaKeyError(str(exc)) from None


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:8]


class Vault:
    """Seals and opens media files with the current key (and reads with the older ones)."""

    def __init__(self, keys: tuple[bytes, ...], segment: int = SEGMENT) -> None:
        self._keys = {key_id(k): AESGCM(k) for k in keys}
        self._current = key_id(keys[0]) if keys else None
        self.segment = segment

    @property
    def enabled(self) -> bool:
        return self._current is not None

    @property
    def current_id(self) -> str | None:
        """The current key's id (hex), stored in the artifact rows it seals."""
        return self._current.hex() if self._current is not None else None

    # --- sealing

    def _header(self, kid: bytes, prefix: bytes) -> bytes:
        return MAGIC + kid + prefix + self.segment.to_bytes(4, "big")

    def seal_stream(self, src: BinaryIO, dst: BinaryIO) -> None:
        """Encrypt ``src`` into ``dst``, one segment at a time (blocking: run in a thread)."""
        assert self._current is not None
        aead = self._keys[self._current]
        prefix = secrets.token_bytes(8)
        header = self._header(self._current, prefix)
        dst.write(header)
        counter = 0
        block = src.read(self.segment)
        while True:
            following = src.read(self.segment) if len(block) == self.segment else b""
            last = not following
            nonce = prefix + counter.to_bytes(4, "big")
            dst.write(aead.encrypt(nonce, block, header + counter.to_bytes(4, "big") + bytes([last])))
            if last:
                return
            block, counter = following, counter + 1
            if counter >= 2**32:
                raise ValueError("a file of more than 2^32 segments")

    def seal_bytes(self, data: bytes) -> bytes:
        out = io.BytesIO()
        self.seal_stream(io.BytesIO(data), out)
        return out.getvalue()

    def seal_file(self, src: Path, dst: Path) -> None:
        """``src`` encrypted into a new file ``dst`` (synced); a failure leaves no ``dst``."""
        try:
            with open(src, "rb") as fin, open(dst, "xb") as fout:
                self.seal_stream(fin, fout)
                fout.flush()
                os.fsync(fout.fileno())
        except BaseException:
            dst.unlink(missing_ok=True)
            raise

    # --- opening

    def open_stream(self, src: BinaryIO) -> Iterator[bytes]:
        """The media in ``src``, segment by segment; ``MediaKeyError`` for a foreign or damaged file."""
        header = src.read(_HEADER)
        if len(header) != _HEADER or not header.startswith(MAGIC):
            raise MediaKeyError("not an encrypted media file")
        kid = header[len(MAGIC) : len(MAGIC) + 8]
        prefix = header[len(MAGIC) + 8 : len(MAGIC) + 16]
        segment = int.from_bytes(header[-4:], "big")
        aead = self._keys.get(kid)
        if aead is None:
            raise MediaKeyError(f"sealed with key {kid.hex()}, which this server does not have")
        counter = 0
        sealed = src.read(segment + TAG)
        while True:
            following = src.read(segment + TAG) if len(sealed) == segment + TAG else b""
            last = not following
            nonce = prefix + counter.to_bytes(4, "big")
            try:
                yield aead.decrypt(nonce, sealed, header + counter.to_bytes(4, "big") + bytes([last]))
            except InvalidTag:
                raise MediaKeyError(f"segment {counter} of the file is damaged or out of place") from None
            if last:
                return
            sealed, counter = following, counter + 1

    def open_file(self, path: Path) -> Iterator[bytes]:
        """The media of the sealed file at ``path``, segment by segment (blocking iterator)."""
        with open(path, "rb") as f:
            yield from self.open_stream(f)
