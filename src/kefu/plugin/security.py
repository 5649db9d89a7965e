"""The plugin's gate (SPEC §6; reliability §1.4): any web page in the agent's
browser can reach ``127.0.0.1:1040``, so the handshake and the first message
decide who may control the plugin.

- :func:`check_handshake` — before the upgrade: the ``Host`` header is
  ``127.0.0.1:<port>`` or ``localhost:<port>`` exactly (:mod:`kefu.protocol.hosts`,
  the server's check too), or ``<name>:<port>`` for a DNS name of the plugin's
  TLS certificate (DNS rebinding: a page can make any name resolve to
  127.0.0.1, but not get a certificate for a name it does not own, and
  ``wss://`` checks the certificate), and an
  ``Origin``, when sent, is exactly one of the allowlist (cross-site WebSocket
  hijacking). A client without ``Origin`` is not a browser and must pair.
- :class:`PairingToken` — the per-start secret in ``<data-dir>/plugin.token``
  (mode 0600), compared in constant time.
- :class:`PairingGuard` — too many wrong tokens lock pairing for a while.
- :func:`canonical_path` / :func:`path_within` — a URL path from page input,
  percent-decoded and its dot segments resolved before it is checked.
- :func:`private_dir` / :func:`open_private` — the plugin's folder (0700) and
  files (0600) are the user's alone (:mod:`kefu.paths`, shared with the SDK).

The clock is passed in (``time.monotonic`` in the plugin), so tests drive it.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from kefu.paths import open_private, private_dir
from kefu.protocol import ErrorCode
from kefu.protocol.hosts import LOOPBACK_NAMES, host_allowed

__all__ = [
    "HandshakeVerdict",
    "PairingGuard",
    "PairingToken",
    "canonical_path",
    "certificate_host_allowed",
    "check_handshake",
    "open_private",
    "path_within",
    "private_dir",
]

Clock = Callable[[], float]


def certificate_host_allowed(host: str | None, port: int, names: Iterable[str] = ()) -> bool:
    """``host`` is allowed: a loopback name or a DNS name of the TLS certificate, on
    ``port`` (:func:`kefu.protocol.hosts.host_allowed`), or one label under a wildcard
    name of the certificate (``a.bank.example:<port>`` for ``*.bank.example``)."""
    names = tuple(names)
    exact = (*LOOPBACK_NAMES, *(n for n in names if "*" not in n))
    if host_allowed(host, exact, port=port):
        return True
    if not host or host.endswith("]"):
        return False
    name, _, _ = host.rpartition(":")
    label, dot, rest = name.partition(".")
    return bool(
        dot and label and "*" not in label and f"*.{rest}" in names and host_allowed(host, (name,), port=port)
    )


@dataclass(frozen=True, slots=True)
class HandshakeVerdict:
    """What the handshake decided: refused (with a code and message), or
    accepted as a browser (an allowed Origin) or a non-browser client."""

    refused: ErrorCode | None = None
    msg: str = ""
    browser: bool = False


def check_handshake(
    host: str | None,
    origins: Iterable[str | None],
    *,
    port: int,
    allowlist: frozenset[str],
    names: tuple[str, ...] = (),
) -> HandshakeVerdict:
    """Check the ``Host`` and ``Origin`` headers of a handshake.

    ``origins`` is every ``Origin`` header sent (a request with two is refused);
    ``names`` the DNS names of the plugin's TLS certificate (none without TLS).
    """
    if not certificate_host_allowed(host, port, names):
        also = "".join(f" or {n}:{port}" for n in names)
        return HandshakeVerdict(
            ErrorCode.host_refused,
            f"Host must be 127.0.0.1:{port} or localhost:{port}{also}",
        )
    sent = list(origins)
    if len(sent) > 1:
        return HandshakeVerdict(ErrorCode.origin_refused, "more than one Origin header")
    if not sent or sent[0] is None:
        return HandshakeVerdict(browser=False)
    if sent[0] not in allowlist:
        # Never echo the origin: the answer is the same for every refused page.
        return HandshakeVerdict(
            ErrorCode.origin_refused,
            "this page's origin may not control the plugin; "
            "start the plugin with --allow-origin <the page's origin>",
        )
    return HandshakeVerdict(browser=True)


class PairingToken:
    """The pairing secret, fresh at each start of the plugin.

    It is written to ``path`` readable and writable by the user only; the
    folder is created user-only too. Non-browser clients (the Python SDK)
    read it and send it in their first message.
    """

    def __init__(self, path: Path, value: str | None = None) -> None:
        self.path = path
        self._value = value if value is not None else secrets.token_urlsafe(32)

    def write(self) -> None:
        private_dir(self.path.parent)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, self._value.encode("ascii") + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        """Remove the file if it still holds this token (another plugin may have replaced it)."""
        try:
            if self.path.read_text(encoding="ascii").strip() == self._value:
                self.path.unlink()
        except (OSError, UnicodeDecodeError):
            pass

    def matches(self, candidate: str | None) -> bool:
        if candidate is None:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), self._value.encode("ascii"))

    @staticmethod
    def read(path: Path) -> str:
        """The token in ``path`` (what a client sends)."""
        return path.read_text(encoding="ascii").strip()


class PairingGuard:
    """At most ``failures`` wrong tokens within ``window`` seconds; then every
    pairing attempt is refused for ``lock`` seconds, right token or not.
    Connections already paired are not affected."""

    def __init__(self, clock: Clock, *, failures: int = 5, window: float = 60.0, lock: float = 60.0) -> None:
        self._clock = clock
        self._failures = failures
        self._window = window
        self._lock = lock
        self._recent: deque[float] = deque()
        self._locked_until = float("-inf")

    def locked_for(self) -> float:
        """Seconds left of the lock, 0 when pairing is open."""
        return max(0.0, self._locked_until - self._clock())

    def failed(self) -> None:
        now = self._clock()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self._window:
            self._recent.popleft()
        if len(self._recent) >= self._failures:
            self._locked_until = now + self._lock
            self._recent.clear()


# --- paths from page input


#: Percent-decoding rounds before a path that still decodes is refused (``%252e`` is two).
_DECODE_ROUNDS = 4


def canonical_path(path: str) -> str | None:
    """``path`` percent-decoded (until nothing changes, so ``%252e`` is a dot
    too) and its dot segments resolved (RFC 3986 §5.2.4); None when it is not
    an absolute path, holds a backslash or a control character, or climbs
    above the root (``/../x``).

    The plugin checks this form, never the raw one: a server (or a proxy in
    front of it) may decode ``%2e%2e`` or ``..%2f`` and resolve them itself."""
    decoded = path
    for _ in range(_DECODE_ROUNDS):
        try:
            once = unquote(decoded, errors="strict")
        except UnicodeDecodeError:
            return None  # not UTF-8 once decoded
        if once == decoded:
            break
        decoded = once
    else:
        return None
    if not decoded.startswith("/") or "\\" in decoded or any(ord(c) < 0x20 or c == "\x7f" for c in decoded):
        return None
    out: list[str] = []
    segments = decoded[1:].split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if not out:
                return None  # above the root: out of any prefix
            out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def path_within(path: str, allowed: str) -> bool:
    """Whether ``path`` is ``allowed`` exactly (or under it, when ``allowed``
    ends with ``/``), and was written that way: no percent-encoding and no dot
    segment that a server could resolve elsewhere."""
    canonical = canonical_path(path)
    if canonical is None or canonical != path:
        return False
    return canonical == allowed or (allowed.endswith("/") and canonical.startswith(allowed))
