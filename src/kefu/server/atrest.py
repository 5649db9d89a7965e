"""Secrets the server keeps in its database, encrypted at rest (webhook secrets, issue 21).

A webhook's secret is an HMAC key the server must use itself (to sign each delivery), so
it cannot be hashed like a password. With a key configured (``--secrets-key-file`` or
``$KEFU_SECRETS_KEY``: 32 random bytes, base64 or hex) it is stored as
``aesgcm1:<base64url(nonce ‖ ciphertext ‖ tag)>``: AES-256-GCM with a random 96-bit
nonce, the row's id as associated data (a sealed value copied to another row does not
open). It is opened only to sign. A database dump, a backup or a read-only SQL
account then holds no usable secret. Without a key secrets are stored as given (the
server says so at start); rows stored before a key was configured are sealed when the
server starts with one. Every node of a cluster needs the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SECRETS_KEY_ENV", "SecretBox", "SecretUnavailable", "load_key", "parse_key"]

SECRETS_KEY_ENV = "KEFU_SECRETS_KEY"
_PREFIX = "aesgcm1:"
_NONCE = 12


class SecretUnavailable(Exception):
    """A sealed secret that this server cannot open: no key, or another key."""


def parse_key(text: str, what: str = "the secrets key") -> bytes:
    """32 bytes from their base64 (standard or URL-safe) or hex spelling; ``ValueError``
    (naming ``what``, never the text) otherwise. Every key kefu reads goes through it."""
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        key = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValueError(
            f"{what} must be 32 random bytes, in base64 or hex (e.g. `openssl rand -base64 32`): "
            "this one does not decode to 32 bytes"
        )
    return key


def load_key(path: Path | None) -> bytes | None:
    """The key from ``path``, else from ``$KEFU_SECRETS_KEY``, else ``None``.
    ``ValueError`` (without the key's text) for a file that cannot be read or a bad key."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the secrets key file {path}: {exc.strerror}") from None
        return parse_key(text)
    given = os.environ.get(SECRETS_KEY_ENV)
    return parse_key(given) if given else None


class SecretBox:
    """Seals and opens stored secrets with the server's key (or keeps them as given without one)."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) != 32:
            raise ValueError("the secrets key must be 32 bytes")
        self._aead = AESGCM(key) if key is not None else None

    @property
    def sealing(self) -> bool:
        return self._aead is not None

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith(_PREFIX)

    def seal(self, secret: str, row_id: str) -> str:
        """What to store for ``secret`` of the row ``row_id``."""
        if self._aead is None:
            return secret
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, secret.encode(), row_id.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, stored: str, row_id: str) -> str:
        """The secret stored as ``stored`` in the row ``row_id``; ``SecretUnavailable`` if sealed
        and this server has no key or another one."""
        if not self.is_sealed(stored):
            return stored  # stored before a key was configured
        if self._aead is None:
            raise SecretUnavailable("the secret is encrypted and this server has no secrets key")
        raw = stored[len(_PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], row_id.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SecretUnavailable("the secret does not open with this server's secrets key") from None
