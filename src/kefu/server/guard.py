"""Before the app: a deadline for a request's head and a cap on connections per address.

Theory of operation
-------------------
uvicorn reads a request's line and headers with no deadline of its own (its
``timeout_keep_alive`` runs only *between* requests, and the first byte of a
request cancels it; ``limit_concurrency`` counts every connection of the
server, not one client's), so a client that connects and says nothing, or
drips a header every few seconds (slow loris), held a connection, a file and
memory for as long as it liked. :class:`GuardedHttp` is uvicorn's httptools
protocol with two additions, per TCP connection, before any app code runs:

- **the handshake deadline**: the request line and headers (for a WebSocket,
  its opening handshake) must be complete within ``handshake_timeout``
  seconds of the connection, or of the first byte of a later request on a
  kept-alive connection; else the connection is closed. After the headers a
  WebSocket's own ``auth_timeout`` takes over, and a request's body may take
  its time (a recording chunk is large).
- **the cap per address**: a client address holds at most
  ``max_connections_per_address`` connections (HTTP and WebSocket alike; a
  WebSocket counts until it closes). One more is answered, once its head has
  arrived, ``429 {"error": {"code": "too_many_connections", …}}`` and closed,
  before any upgrade. The addresses of ``trusted_proxies`` (default: this
  host, 127.0.0.1 and ::1) speak for many clients and are not capped: a proxy
  in front caps its own clients (docs/deploy.md).

:class:`Gate` holds the counts of one server; :func:`protocols` gives the
protocol classes bound to it, for ``uvicorn.Config(http=…, ws=…)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from kefu.protocol import CATALOGUE, ErrorCode, error_body

from .settings import Settings

__all__ = ["Gate", "GuardedHttp", "GuardedWebSocket", "protocols"]

log = logging.getLogger("kefu.server.guard")

#: A refused connection's head is read up to this many bytes before the answer.
_REFUSED_HEAD_BYTES = 16 * 1024


def _refusal() -> bytes:
    code = ErrorCode.too_many_connections
    body = json.dumps({"error": error_body(code)}, ensure_ascii=False).encode("utf-8")
    status = CATALOGUE[code].http_status
    head = (
        f"HTTP/1.1 {status} Too Many Requests\r\n"
        "content-type: application/json; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class Gate:
    """The open connections of one server, counted per client address."""

    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.handshake_timeout
        self.cap = settings.max_connections_per_address
        self.uncapped = frozenset(settings.trusted_proxies)
        self._counts: dict[str, int] = {}
        self._held: dict[asyncio.BaseTransport, str] = {}
        self.refusal = _refusal()

    def admit(self, transport: asyncio.BaseTransport, address: str) -> bool:
        """Count a new connection from ``address``; ``False`` if the address holds the cap already."""
        if self.cap <= 0 or address in self.uncapped:
            return True
        n = self._counts.get(address, 0)
        if n >= self.cap:
            return False
        self._counts[address] = n + 1
        self._held[transport] = address
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """The connection closed (idempotent: its HTTP and WebSocket protocols both say so)."""
        address = self._held.pop(transport, None)
        if address is None:
            return
        n = self._counts[address] - 1
        if n:
            self._counts[address] = n
        else:
            del self._counts[address]

    def count(self, address: str) -> int:
        return self._counts.get(address, 0)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP protocol with the handshake deadline and the cap (module docstring)."""

    gate: ClassVar[Gate]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        address = self.client[0] if self.client else ""
        self._refused: bytearray | None = None if self.gate.admit(transport, address) else bytearray()
        if self._refused is not None:
            log.warning("%s holds %d connections already: refusing one more", address, self.gate.cap)
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None and self.gate.timeout > 0:
            self._deadline = self.loop.call_later(self.gate.timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("a request's head took over %.1f s: closing the connection", self.gate.timeout)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused is None:
            super().data_received(data)
            return
        # over the cap: read the head (bounded, under the deadline), answer 429, close
        self._refused += data
        if b"\r\n\r\n" in self._refused or len(self._refused) > _REFUSED_HEAD_BYTES:
            self._disarm()
            self._refused = bytearray()
            if not self.transport.is_closing():
                self.transport.write(self.gate.refusal)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a later request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.gate.release(self.transport)
        super().connection_lost(exc)


class GuardedWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, releasing its connection's place in the cap."""

    gate: ClassVar[Gate]

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.release(self.transport)
        super().connection_lost(exc)


def protocols(gate: Gate) -> tuple[type[GuardedHttp], type[GuardedWebSocket]]:
    """The protocol classes of one server, bound to its gate."""
    http: Any = type("KefuHttp", (GuardedHttp,), {"gate": gate})
    ws: Any = type("KefuWebSocket", (GuardedWebSocket,), {"gate": gate})
    return cast(type[GuardedHttp], http), cast(type[GuardedWebSocket], ws)
