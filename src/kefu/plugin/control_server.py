"""The plugin's control server: the WebSocket server on ``127.0.0.1:<port>`` for the SDKs.

It checks each handshake (Host and Origin allowlist, :mod:`kefu.plugin.security`),
serves ``/imclient.js``, and runs one
:class:`~kefu.plugin.connection.ControlConnection` per SDK over its host (the
plugin, through :class:`~kefu.plugin.connection.ConnectionHost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from kefu.protocol import ErrorCode, error_body
from kefu.tls import dns_names, server_context

from .connection import CLOSE_GOING_AWAY, ConnectionHost, ControlConnection
from .security import check_handshake
from .settings import PluginSettings

__all__ = ["IMCLIENT_JS", "ControlServer"]

log = logging.getLogger("kefu.plugin")

#: The browser SDK the plugin serves at ``/imclient.js`` (the same file the server serves).
IMCLIENT_JS = Path(__file__).resolve().parent.parent / "web" / "imclient.js"


class ControlServer:
    """Listens on 127.0.0.1 only; ``accepting()`` says whether new SDKs may still come."""

    def __init__(self, settings: PluginSettings, host: ConnectionHost, accepting: Callable[[], bool]) -> None:
        self.settings = settings
        self.host = host
        self.accepting = accepting
        self.port = settings.port
        self._origins: frozenset[str] = frozenset()
        #: The DNS names of the TLS certificate (``--tls-cert``), allowed as Host.
        self.tls_names: tuple[str, ...] = ()
        self.server: Server | None = None
        self.connections: set[ControlConnection] = set()
        self._drained = asyncio.Event()
        self._drained.set()

    async def start(self) -> None:
        """Listen on 127.0.0.1 (with TLS when ``--tls-cert`` is given)."""
        settings = self.settings
        tls = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            tls = server_context(settings.tls_cert, settings.tls_key)  # raises TlsError, saying what to do
            self.tls_names = dns_names(settings.tls_cert)
            if not self.tls_names:
                log.warning(
                    "the TLS certificate %s has no DNS name: only 127.0.0.1 will match it", settings.tls_cert
                )
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            settings.port,
            ssl=tls,
            process_request=self._process_request,
            compression=None,
            max_size=settings.max_frame,
            max_queue=16,
            open_timeout=settings.open_timeout,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            server_header=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self._origins = settings.origins(self.port)

    async def close(self) -> None:
        """Close every SDK's connection (going away), wait a little for them, stop listening."""
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "the plugin stopped")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._drained.wait()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``; with TLS ``wss://<the certificate's first name>:<port>``
        (a name resolving to 127.0.0.1, as ``lccp-ex.easemob.com`` of SPEC §3)."""
        if self.settings.tls:
            # a wildcard cannot be a URL's host; it is still accepted as Host (security.certificate_host_allowed)
            host = next((n for n in self.tls_names if "*" not in n), "127.0.0.1")
            return f"wss://{host}:{self.port}"
        return f"ws://127.0.0.1:{self.port}"

    def _http_error(self, conn: ServerConnection, status: int, body: dict[str, Any]) -> Response:
        response = conn.respond(status, json.dumps(body, ensure_ascii=False) + "\n")
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        return response

    def _process_request(self, conn: ServerConnection, request: HttpRequest) -> Response | None:
        hosts = request.headers.get_all("Host")
        verdict = check_handshake(
            hosts[0] if len(hosts) == 1 else None,
            request.headers.get_all("Origin"),
            port=self.port,
            allowlist=self._origins,
            names=self.tls_names,
        )
        if verdict.refused is not None:
            log.warning("handshake refused: %s", verdict.refused.value)
            return self._http_error(conn, 403, {"error": error_body(verdict.refused, verdict.msg)})
        path = request.path.split("?", 1)[0]
        if path == "/imclient.js":
            # the browser SDK (SPEC §3), for pages that load it from the plugin
            response = conn.respond(200, IMCLIENT_JS.read_text(encoding="utf-8"))
            response.headers["Content-Type"] = "application/javascript; charset=utf-8"
            response.headers["Cache-Control"] = "no-cache"
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
        if path != "/":
            body = error_body(ErrorCode.bad_request, f"no such page; the control socket is {self.url}/")
            return self._http_error(conn, 404, {"error": body})
        if len(self.connections) >= self.settings.max_connections or not self.accepting():
            return self._http_error(
                conn, 503, {"error": error_body(ErrorCode.rate_limited, "too many connections")}
            )
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        browser = bool(ws.request is not None and ws.request.headers.get_all("Origin"))
        conn = ControlConnection(self.host, ws, browser=browser)
        self.connections.add(conn)
        self._drained.clear()
        log.info("%r connected", conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            if not self.connections:
                self._drained.set()
            log.info("%r disconnected", conn)
