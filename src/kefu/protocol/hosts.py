"""The ``Host`` header check against DNS rebinding, shared by the plugin and the server.

A page of ``evil.example`` whose name the attacker re-points at 127.0.0.1 (or
at the bank's server) is same-origin with itself, so the browser lets it
talk to whatever answers there; but it still sends ``Host: evil.example``.
Answering only requests that name us refuses it. Names are compared exactly
(browsers send the host in lower case; an IPv6 address in brackets).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_NAMES", "host_allowed", "origin_of"]

#: The names of this machine a local client uses.
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def host_allowed(host: str | None, names: Iterable[str], *, port: int | None = None) -> bool:
    """Whether a ``Host`` header (``name[:port]``) names one of ``names``.

    With ``port`` the header must carry exactly that port (the plugin, reached
    directly); without, any port or none (the server, whose proxy in front may
    send its own port or none)."""
    if not host:
        return False
    if host.endswith("]"):  # [v6] without a port
        name, digits = host, None
    else:
        name, sep, rest = host.rpartition(":")
        if not sep:
            name, digits = rest, None
        elif not (rest.isascii() and rest.isdigit() and 0 < len(rest) <= 5):
            return False
        else:
            digits = rest
    if port is not None and (digits is None or int(digits) != port):
        return False
    return name in frozenset(names)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased, default ports dropped.

    Raises :class:`ValueError` for a URL that is not http(s) or ws(s) with a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = 443 if scheme in ("https", "wss") else 80
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"
