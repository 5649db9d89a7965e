"""The serving side of a kefu socket, without I/O: every frame in, a verdict out.

Theory of operation
-------------------
Both control sockets kefu serves (the server's ``/ws/agent`` and
``/ws/visitor``, :mod:`kefu.server.connection`; the plugin's control server,
:mod:`kefu.plugin.connection`) treat every frame as untrusted in the same
order. :meth:`ServerSession.receive` takes one frame and the time now (the
session reads no clock) and returns a :class:`Verdict`: a decoded
:class:`~kefu.protocol.wire.Request` to run, or an error reply to send, and
whether to close the connection (and with which
:class:`~kefu.protocol.close.CloseCode`). In order:

1. **Rate** (every frame counts, text or binary): a token bucket of
   ``rate`` tokens refilled at ``rate / window`` per second. A frame without a
   token is answered ``rate_limited`` (with ``retryAfter``), not run; with
   ``quiet_floods`` a frame without an id (binary, not JSON) is answered once
   per flood only. More than ``strikes`` such answers within one window close
   the connection (1008).
2. **Kind**: a binary frame is ``binary_frame``.
3. **Size**: a text over ``max_bytes`` is ``too_large``; the
   ``oversize_strikes``-th closes (1009).
4. **Decode** (:func:`~kefu.protocol.wire.decode_request`: JSON, envelope,
   params): a bad one is answered with its error under its id when it could be read.
5. **First message**: until :attr:`ServerSession.authenticated`, only
   ``first_mark`` runs. Anything else is ``unauthenticated``; with
   ``first_closes`` (the plugin's pairing) any first frame but a decoded
   ``first_mark`` is refused and the connection closes (1008), and that
   frame is checked before the rate (pairing is not counted).
6. **In flight** (``inflight``): a request whose id is still running is
   ``duplicate_request``; the adapter calls :meth:`ServerSession.finished`.

The connection stays open after every error but those that say to close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .close import CloseCode
from .errors import ErrorCode, ProtocolError
from .wire import Api, Json, Request, decode_request, error_message, protocol_error_message

__all__ = ["Limits", "ServerSession", "Verdict"]


@dataclass(frozen=True, slots=True)
class Limits:
    """One socket's limits (shared by its connections)."""

    rate: int  # frames per window, at most (the bucket's size)
    window: float  # seconds
    strikes: int | None = None  # rate_limited answers in a window before close 1008; None: never
    max_bytes: int | None = None  # a text longer is too_large; None: decode_request's own limit
    oversize_strikes: int | None = None  # too_large answers before close 1009; None: never
    quiet_floods: bool = False  # over the rate, frames without an id are answered once per flood
    inflight: bool = False  # refuse a request whose id is still running


class Verdict(NamedTuple):
    """What to do with one frame: run ``request``, send ``reply``, close with ``close``.

    A tuple, not a frozen dataclass: one is made per frame, and a frozen
    dataclass costs ~1 µs more to make (bench/session_layer.py, D37)."""

    request: Request | None = None
    reply: Json | None = None
    close: CloseCode | None = None
    reason: str = ""
    limited: bool = False  # ``reply`` is rate_limited: the frame was not looked at


_IGNORE = Verdict()


class ServerSession:
    """See the module's docstring. Small (``__slots__``): a server holds thousands."""

    __slots__ = (
        "_flood_told",
        "_inflight",
        "_last",
        "_oversize",
        "_strike_start",
        "_strikes",
        "_tokens",
        "api",
        "authenticated",
        "first_closes",
        "first_hint",
        "first_mark",
        "limits",
    )

    def __init__(
        self,
        api: Api,
        limits: Limits,
        *,
        first_mark: str | None = None,
        first_closes: bool = False,
        first_hint: str | None = None,
        authenticated: bool = False,
    ) -> None:
        self.api = api
        self.limits = limits
        self.first_mark = first_mark
        self.first_closes = first_closes
        self.first_hint = first_hint or f"the first message must be {first_mark}"
        self.authenticated = authenticated or first_mark is None
        self._tokens = float(limits.rate)
        self._last: float | None = None
        self._strikes = 0
        self._strike_start = 0.0
        self._oversize = 0
        self._flood_told = False
        self._inflight: set[str] | None = set() if limits.inflight else None

    # --- the rate: a token bucket fed the time

    def _take(self, now: float) -> bool:
        lim = self.limits
        if self._last is not None and now > self._last:
            self._tokens = min(float(lim.rate), self._tokens + (now - self._last) * lim.rate / lim.window)
        self._last = now if self._last is None else max(now, self._last)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._flood_told = False
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next frame would have a token."""
        lim = self.limits
        return round(max(0.0, (1.0 - self._tokens) * lim.window / lim.rate), 3)

    def _strike(self, now: float) -> bool:
        """One more rate_limited answer; True when the flood must be closed."""
        strikes = self.limits.strikes
        if strikes is None:
            return False
        if now - self._strike_start >= self.limits.window:
            self._strike_start, self._strikes = now, 0
        self._strikes += 1
        return self._strikes > strikes

    def _limited(self, mark: str | None, rid: str | None) -> Verdict:
        if rid is None and self.limits.quiet_floods:
            if self._flood_told:
                return _IGNORE
            self._flood_told = True
        lim = self.limits
        msg = f"more than {lim.rate} messages in {lim.window:g} s; slow down"
        err = error_message(mark, ErrorCode.rate_limited, msg, rid=rid, retry_after=self.retry_after())
        return Verdict(reply=err, limited=True)

    # --- frames

    def receive(self, data: str | bytes, now: float) -> Verdict:
        """The verdict on one frame (see the module's docstring)."""
        lim = self.limits
        if not self.authenticated and self.first_closes:
            return self._first(data)  # pairing: not counted
        allowed = self._take(now)
        if not allowed and self._strike(now):
            return Verdict(close=CloseCode.policy, reason="too many messages")
        if isinstance(data, bytes):
            if not allowed:
                return self._limited(None, None)
            return Verdict(reply=error_message(None, ErrorCode.binary_frame))
        if (
            lim.max_bytes is not None
            and len(data) > lim.max_bytes // 4
            and len(data.encode("utf-8", "surrogatepass")) > lim.max_bytes
        ):
            self._oversize += 1
            if lim.oversize_strikes is not None and self._oversize >= lim.oversize_strikes:
                return Verdict(close=CloseCode.too_big, reason="messages too large")
            msg = f"a message is at most {lim.max_bytes} bytes"
            return Verdict(reply=error_message(None, ErrorCode.too_large, msg))
        try:
            req = decode_request(data, self.api)
        except ProtocolError as exc:
            if not allowed:
                return self._limited(exc.mark, exc.request_id)
            return Verdict(reply=protocol_error_message(exc))
        if not allowed:
            return self._limited(req.mark, req.id)  # answered, not run
        if not self.authenticated and req.mark != self.first_mark:
            msg = f"send {self.first_mark} first"
            return Verdict(reply=error_message(req.mark, ErrorCode.unauthenticated, msg, rid=req.id))
        if self._inflight is not None:
            if req.id in self._inflight:
                return Verdict(reply=error_message(req.mark, ErrorCode.duplicate_request, rid=req.id))
            self._inflight.add(req.id)
        return Verdict(request=req)

    def _first(self, data: str | bytes) -> Verdict:
        """``first_closes``: the first frame is ``first_mark`` or the connection closes."""
        req: Request | None = None
        if isinstance(data, str):
            try:
                req = decode_request(data, self.api)
            except ProtocolError:
                req = None
        if req is not None and req.mark == self.first_mark:
            return Verdict(request=req)
        err = error_message(
            req.mark if req is not None else None,
            ErrorCode.unauthenticated,
            self.first_hint,
            rid=req.id if req is not None else None,
        )
        return Verdict(reply=err, close=CloseCode.policy, reason="unauthenticated")

    def finished(self, rid: str) -> None:
        """A request accepted with ``inflight`` has ended: its id may be used again."""
        if self._inflight is not None:
            self._inflight.discard(rid)
