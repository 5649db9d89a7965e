"""Short-lived TURN credentials for the plugin and the visitors (DESIGN §6).

The agent's PC and the visitor cannot reach each other; their media meets in
the data centre, at a TURN server (coturn). The server hands each client an
``iceServers`` list with a credential of the *TURN REST* scheme that coturn
implements with ``use-auth-secret`` / ``static-auth-secret``::

    username   = "<expiry, unix seconds>:<who>"
    credential = base64(HMAC-SHA1(secret, username))

coturn recomputes the credential from the secret it shares with us, and
refuses a username whose expiry has passed (on every authenticated request,
allocation refreshes included: the TTL must cover the longest call). The
client asks again (``iceServers``) at 2/3 of the TTL (``iceRenewIn``), so a
new call always starts with a fresh credential.

Pure: the time comes in as an argument. The secret is never logged (nor put
in a repr).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["TurnIssuer", "turn_credential"]

#: A client renews its credential after this share of the TTL.
RENEW_SHARE = 2 / 3


def turn_credential(secret: str, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``: coturn's ``use-auth-secret`` check."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnIssuer:
    """Issues ``iceServers`` for ``urls`` with credentials that live ``ttl`` seconds."""

    urls: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)
    ttl: float = 86400.0

    def __post_init__(self) -> None:
        if self.urls and not self.secret:
            raise ValueError("TURN servers need the shared secret (--turn-secret-file or $KEFU_TURN_SECRET)")
        for url in self.urls:
            if not url.startswith(("turn:", "turns:", "stun:", "stuns:")):
                raise ValueError(
                    f"TURN URL {url!r}: use turn:host:port[?transport=udp|tcp] or turns:host:port"
                )
        if self.ttl < 60:
            raise ValueError("the TURN credential's TTL must be at least 60 s")

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def ice_servers(self, who: str, now: datetime) -> list[dict[str, Any]]:
        """The ``iceServers`` for client ``who`` (e.g. ``agent-3``), valid ``ttl`` from ``now``."""
        if not self.urls:
            return []
        assert self.secret is not None
        username = f"{int(now.timestamp() + self.ttl)}:{who}"
        turn = [u for u in self.urls if u.startswith("turn")]
        stun = [u for u in self.urls if u.startswith("stun")]
        out: list[dict[str, Any]] = []
        if turn:
            out.append(
                {"urls": turn, "username": username, "credential": turn_credential(self.secret, username)}
            )
        if stun:
            out.append({"urls": stun})
        return out

    def payload(self, who: str, now: datetime) -> dict[str, Any]:
        """``{"iceServers": [...], "iceRenewIn": seconds}`` for a reply (renewal only with TURN)."""
        out: dict[str, Any] = {"iceServers": self.ice_servers(who, now)}
        if self.urls:
            out["iceRenewIn"] = round(self.ttl * RENEW_SHARE, 3)
        return out
