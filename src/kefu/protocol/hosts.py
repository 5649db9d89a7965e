"""The ``Host`` header check against DNS rebinding, shared by the plugin and the server.

A page of ``evil.example`` whose name the attacker re-points at 127.0.0.1 (or
at the bank's server) is same-origin with itself, so the browser lets it
talk to whatever answers there; but it still sends ``Host: evil.example``.
Answering only requests that name us refuses it. Names are compared exactly
(browsers send the host in lower case; an IPv6 address in brackets).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LOOPBACK_NAMES", "host_allowed"]

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
