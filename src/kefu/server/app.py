"""The FastAPI application: ``create_app(settings)``.

The app opens :class:`~kefu.server.services.Services` on start (which
migrates the database) and closes them on shutdown. Routes: ``/doLogin`` and
``/api/…`` (:mod:`kefu.server.api`), ``/ws/agent`` and ``/ws/visitor``
(:mod:`kefu.server.connection`), OpenAPI docs at ``/docs``.

The two WebSockets go straight from the ASGI call to their connection
(:class:`KefuApp`), past FastAPI's middleware stack and router: a socket lives
for hours, and every layer of the stack keeps a frame, an exit stack or an
exception-handler closure alive for as long as it does (~10 KiB of the
~40 KiB an idle visitor cost, docs/benchmarks.md). They use none of it: no
dependencies, no HTTP middleware, no exception handlers (a failure is logged
by uvicorn, as before).

Logging: uvicorn's access log is off, because it would print ``/doLogin``'s
query string, which holds the password (reliability T14). The app logs each
request's method, path (never the query), status and time instead.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kefu.protocol import CATALOGUE, ApiError, ErrorCode, error_body
from kefu.protocol.close import CloseCode
from kefu.protocol.hosts import host_allowed

from . import api, floor_api, integrations
from .agent_connection import AgentConnection
from .auth import LoginLocked
from .services import Services
from .settings import Settings
from .store import storage_full
from .visitor_connection import VisitorConnection

__all__ = ["WEB", "KefuApp", "create_app"]

#: The static pages and imclient.js (no build step).
WEB = Path(__file__).resolve().parent.parent / "web"
# the pages may use the camera and the screen; they are never framed by others
_PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}

access_log = logging.getLogger("kefu.server.access")
log = logging.getLogger("kefu.server.app")


class AccessLog:
    """``GET /api/sessions 200 3.1 ms``: no query strings, no headers, no bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            ms = (time.perf_counter() - start) * 1000
            access_log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, ms)


def _error(code: ErrorCode, msg: str | None = None, status: int | None = None, **extra: Any) -> JSONResponse:
    body = error_body(code, msg)
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status or CATALOGUE[code].http_status)


#: The WebSocket paths and the connection class serving each.
SOCKETS: dict[str, type[AgentConnection | VisitorConnection]] = {
    "/ws/agent": AgentConnection,
    "/ws/visitor": VisitorConnection,
}


def _host_of(scope: Scope) -> str | None:
    """The request's one ``Host`` header (None if none, or more than one)."""
    found = [v for k, v in scope["headers"] if k == b"host"]
    return found[0].decode("latin-1") if len(found) == 1 else None


class KefuApp(FastAPI):
    """FastAPI, with :data:`SOCKETS` served directly (see the module's docstring), and every
    request's ``Host`` checked first (DNS rebinding: :func:`kefu.protocol.hosts.host_allowed`)."""

    host_names: frozenset[str] = frozenset()

    async def _refuse_host(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.info("refused a %s request for another host (DNS rebinding?)", scope["type"])
        names = ", ".join(sorted(self.host_names))
        resp = _error(ErrorCode.host_refused, f"this server answers to {names}; see --public-name")
        if scope["type"] == "http":
            await resp(scope, receive, send)
            return
        ws = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await ws.send_denial_response(resp)  # before the upgrade: HTTP 403 with the error
        else:
            await ws.close(CloseCode.policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not host_allowed(_host_of(scope), self.host_names):
            await self._refuse_host(scope, receive, send)
            return
        if scope["type"] == "websocket":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            conn = SOCKETS.get(path)
            if conn is not None:
                await conn(WebSocket(scope, receive, send), self.state.services).serve()
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, made true: invalid input is our 400 ``{"error": …}``
        (the ``invalid`` handler), never FastAPI's 422, which is removed."""
        if self.openapi_schema is None:
            schema = super().openapi()
            for item in schema.get("paths", {}).values():
                for op in item.values():
                    if isinstance(op, dict):
                        op.get("responses", {}).pop("422", None)
            comps = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(settings: Settings) -> KefuApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await Services.open(settings)
        try:
            yield
        finally:
            await app.state.services.close()

    app = KefuApp(
        title="kefu server",
        summary="Video customer service: agents, visitors, IM sessions, calls.",
        version="1",
        lifespan=lifespan,
    )
    app.host_names = settings.host_names
    app.add_middleware(AccessLog)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        if isinstance(exc, LoginLocked):
            retry = max(1, round(exc.retry_after))
            resp = _error(exc.code, exc.msg, retryAfter=retry)
            resp.headers["Retry-After"] = str(retry)
            return resp
        return _error(exc.code, exc.msg)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path"))
        if err.get("type") == "missing":
            return _error(ErrorCode.missing_field, f"{loc} is required", field=loc)
        return _error(ErrorCode.invalid_field, f"{loc}: {err.get('msg', 'invalid')}", field=loc)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = ErrorCode.unauthenticated if exc.status_code == 401 else ErrorCode.bad_request
        return _error(code, str(exc.detail), status=exc.status_code)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        """An unexpected error: ``storage_full`` (507) when a write found no space, so the
        caller knows nothing was stored and may try again once space returns; any other,
        ``internal`` (500) in the spec's form, never a plain-text page."""
        if storage_full(exc):
            log.error("%s %s: the storage is full (%s)", request.method, request.url.path, type(exc).__name__)
            return _error(ErrorCode.storage_full)
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(ErrorCode.internal)

    # the database's and the file system's errors are answered here; any other error reaches
    # Starlette's last handler, which answers with this too and then lets uvicorn log it
    for kind in (OSError, SQLAlchemyError, sqlite3.Error, Exception):
        app.add_exception_handler(kind, failed)

    app.include_router(api.router)
    app.include_router(integrations.router)  # webhooks and the event stream (issue 21)
    app.include_router(floor_api.router)  # the floor, figures, reasons, teams (issue 20)

    # the pages: the visitor page, the agent console (the spec's ssoTo), imclient.js
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/visitor", include_in_schema=False)
    async def visitor_page() -> FileResponse:
        return FileResponse(WEB / "visitor.html", headers=_PAGE_HEADERS)

    @app.get("/agent", include_in_schema=False)
    async def agent_page() -> FileResponse:
        return FileResponse(WEB / "agent.html", headers=_PAGE_HEADERS)

    @app.get("/supervisor", include_in_schema=False)
    async def supervisor_page() -> FileResponse:
        return FileResponse(WEB / "supervisor.html", headers=_PAGE_HEADERS)

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/visitor")

    return app  # /ws/agent and /ws/visitor: KefuApp.__call__
