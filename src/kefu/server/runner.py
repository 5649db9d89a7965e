"""Running the server: in this process (tests, the demo) or as ``kefu server``.

:class:`ServerRunner` binds the socket itself, so ``port=0`` gives a free
port whose URL is known before the first request, then runs uvicorn with the
settings' limits: httptools for HTTP with a deadline for a request's head and a cap
of connections per client address (:mod:`kefu.server.guard`), ``websockets``
(sans-I/O) for WebSockets, compression off, frames up to ``transport_max_bytes``,
keepalive pings, no access log; with ``tls_cert``/``tls_key``, https and wss (the
key checked by :mod:`kefu.tls` first: readable by its user only).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import socket
from types import TracebackType

import uvicorn

from kefu.tls import server_context

from .app import create_app
from .guard import Gate, GuardedHttp, protocols
from .services import Services
from .settings import Settings

__all__ = ["ServerRunner", "freeze_heap", "uvicorn_config"]


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """Raises :class:`~kefu.tls.TlsError` for a TLS certificate or key that cannot serve."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        server_context(settings.tls_cert, settings.tls_key)  # the same checks as the plugin's, early
    http, ws = protocols(Gate(settings))
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=http,  # httptools, with the handshake deadline and the cap per address (guard.py)
        ws=ws,  # websockets (sans-I/O)
        forwarded_allow_ips=list(settings.trusted_proxies),
        ws_max_size=settings.transport_max_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        ws_per_message_deflate=False,
        lifespan="on",
        access_log=False,  # it would log /doLogin's query string: the password
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=max(1, round(settings.graceful_shutdown)),
        server_header=False,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # the floor's event streams never end by themselves: end them, or shutting down
        # would wait the whole graceful timeout for them
        services = getattr(getattr(self.config.app, "state", None), "services", None)  # an app of kefu's
        if services is not None:
            await services.floor.close()
        await super().shutdown(sockets)


def freeze_heap() -> None:
    """Once the server has started: collect, then move every object alive — modules,
    classes, the app, the statements built once, the pools: ~150,000 objects that live as
    long as the process — out of the garbage collector's sight (``gc.freeze``). A full
    collection walked them all each time (80–100 ms here, the event loop stopped: every
    message in flight waited); from here on it walks only what was made since (D69)."""
    gc.collect()
    gc.freeze()


def raise_fd_limit() -> int:
    """Let this process hold as many connections as its hard limit allows (one file each)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


class ServerRunner:
    """``async with ServerRunner(settings) as url:`` — the server, up, on ``url``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = uvicorn_config(settings)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""
        self.port = 0

    @property
    def gate(self) -> Gate:
        http: type[GuardedHttp] = self.config.http  # type: ignore[assignment]
        return http.gate

    @property
    def services(self) -> Services:
        app = self.config.app
        sv: Services = app.state.services  # type: ignore[union-attr]
        return sv

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
        # whose protocol says TCP, and a reply written right after a push otherwise waited
        # ~40 ms for the client's delayed ACK (measured: setAgentState 45-56 ms → 4 ms)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.settings.host, self.settings.port))
        except OSError:
            sock.close()
            raise
        sock.listen(self.settings.listen_backlog)  # a reconnect storm: SYNs dropped wait 1 s, 3 s…
        sock.set_inheritable(True)
        return sock

    async def start(self) -> str:
        raise_fd_limit()
        sock = self._bind()
        self.port = sock.getsockname()[1]
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        self.url = f"{self.settings.scheme}://{host}:{self.port}"
        self._server = server = _Server(self.config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="kefu-server")
        ready = asyncio.create_task(server.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            sock.close()
            await self._task  # raises the startup error, if any
            raise RuntimeError("the server stopped while starting; see the log above")
        return self.url

    async def wait(self) -> None:
        """Until the server stops (Ctrl-C, SIGTERM, or :meth:`stop`)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
