"""The plugin: the control server on ``127.0.0.1:<port>``, the agent's link
to the server, the window model.

Theory of operation
-------------------
:class:`Plugin` owns everything with a lifetime: the WebSocket server (bound
to 127.0.0.1 only), the :class:`~kefu.plugin.connection.ControlConnection`
of each SDK, the agent's :class:`~kefu.plugin.link.AgentLink`, the
:class:`~kefu.plugin.window.Window`, the pairing token file, and every task
it spawns (kept in a set, cancelled on close).

An SDK's request is answered in one of three places (``plugin_api``):

- ``LOCAL_MARKS`` here: ``startLogin`` (fetch the login URL, open the link),
  the window APIs, and ``isMultipleVideo`` / ``isShareState`` from the
  mirror of the agent's state;
- ``FORWARDED_MARKS`` on the link: the plugin sends the server the same mark
  under a fresh id and maps every answer back to the SDK's id and mark;
- ``MEDIA_MARKS``: ``not_available_yet`` until the media layer lands.

Every reply carries ``state``, the agent's code as the plugin knows it (the
server's, when the server sent one), so the v190307 ``callback(state,
payload)`` always gets a code.

The server's pushes become SDK pushes: ``state`` as is, ``sessionClosed`` as
``initInnerCallBack``/``chatCloseCB`` (SPEC §3.2), other events as
``event``/<subMark>; the link's own life as ``client`` events
(``ssoReady``, ``kefuReady``, ``kefuWSClose``, ``kefuWSOpen``, ``quit``).

The agent's login belongs to the plugin, not to an SDK connection: a page
reload closes one controller and opens the next, which is greeted with
``kefuReady`` and the current state. The token lives in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from kefu.protocol import (
    ApiError,
    ErrorCode,
    ProtocolError,
    Request,
    TopState,
    error_body,
    error_message,
    event_message,
    parse_code,
    reply_message,
)
from kefu.protocol.plugin_api import (
    FORWARDED_MARKS,
    MEDIA_MARKS,
    SetWindowSizeParams,
    StartLoginParams,
    is_final,
)
from kefu.protocol.wire import Json

from .connection import CLOSE_GOING_AWAY, ControlConnection
from .link import AgentLink
from .login import check_login_url, fetch_login
from .security import PairingGuard, PairingToken, check_handshake
from .settings import PluginSettings
from .window import Window

__all__ = ["Plugin", "client_event"]

log = logging.getLogger("kefu.plugin")

#: The browser SDK the plugin serves at ``/imclient.js`` (the same file the server serves).
IMCLIENT_JS = Path(__file__).resolve().parent.parent / "web" / "imclient.js"


def client_event(sub_mark: str, payload: Any = None) -> Json:
    """A connection event: ``{"v":1,"mark":"client","subMark":...}``."""
    return event_message(sub_mark, payload, mark="client")


@dataclass
class _OpenCall:
    """An SDK's call API request that goes on after its reply (SPEC §4.3)."""

    conn: ControlConnection
    rid: str  # the SDK's request id
    mark: str
    upstream: str  # the link's request id (the server's ``requestId``)
    done: asyncio.Event

    def close(self) -> None:
        self.done.set()


class _LinkEvents:
    """The listener of one link; it goes quiet once the plugin moved on to another link."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.link: AgentLink | None = None

    def _current(self) -> bool:
        return self.link is not None and self.plugin.link is self.link

    def link_up(self, auth: Json, recovered: bool) -> None:
        if self._current():
            self.plugin._on_link_up(auth)

    def link_down(self, reason: str, code: int | None) -> None:
        if self._current():
            self.plugin._on_link_down(reason, code)

    def link_ended(self, reason: str, code: int | None) -> None:
        if self._current():
            assert self.link is not None
            self.plugin._on_link_ended(self.link, reason, code)

    def link_push(self, msg: Json) -> None:
        if self._current():
            self.plugin._on_link_push(msg)


class Plugin:
    """The plugin process's state (see the module's docstring)."""

    def __init__(
        self,
        settings: PluginSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        token: str | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._rng = rng
        self.window = Window()
        self.token = PairingToken(settings.token_path, token)
        self.guard = PairingGuard(
            clock,
            failures=settings.pairing_failures,
            window=settings.pairing_window,
            lock=settings.pairing_lock,
        )
        self.port = settings.port
        self._origins: frozenset[str] = frozenset()
        self._server: Server | None = None
        self._connections: set[ControlConnection] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self.controllers: list[ControlConnection] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.link: AgentLink | None = None
        self.agent: dict[str, Any] | None = None
        #: The agent's state code as the plugin last heard it (000000 when not logged in).
        self.state: str = TopState.notLogin.value
        self._open_calls: list[_OpenCall] = []
        self._logging_in = False
        self._quitting = False
        self._closed = False
        self._stopped = asyncio.Event()
        #: Told every message the SDKs are told, and each state change (the desktop window).
        self.observers: list[Callable[[Json], None]] = []
        self._local: dict[str, Callable[[ControlConnection, Request], Awaitable[None]]] = {
            "startLogin": self._start_login,
            "setWindowSize": self._window_api,
            "minimize": self._window_api,
            "restore": self._window_api,
            "startup": self._window_api,
            "getWindow": self._window_api,
            "quit": self._quit_api,
            "isMultipleVideo": self._data_api,
            "isShareState": self._data_api,
        }

    # --- lifetime

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1, then write a fresh pairing token (not before:
        a plugin that cannot bind must not replace a running one's token)."""
        s = self.settings
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            s.port,
            process_request=self._process_request,
            compression=None,
            max_size=s.max_frame,
            max_queue=16,
            open_timeout=s.open_timeout,
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._origins = s.origins(self.port)
        self.token.write()
        log.info("plugin listening on %s (server %s)", self.url, s.server_origin)

    async def __aenter__(self) -> Plugin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def wait_stopped(self) -> None:
        """Until ``quit`` (or :meth:`aclose`) has stopped the plugin."""
        await self._stopped.wait()

    async def quit(self, reason: str = "quit") -> None:
        """Stop cleanly: tell the SDKs, log the agent out, close everything."""
        if self._quitting or self._closed:
            return
        self._quitting = True
        log.info("plugin quitting (%s)", reason)
        self.window.close()
        self.broadcast(client_event("quit", {"reason": reason}))
        link = self.link
        if link is not None and link.up:
            with contextlib.suppress(ApiError, TimeoutError):
                async with asyncio.timeout(self.settings.quit_logout_timeout):
                    await self._upstream(link, "logout", {})
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        link, self.link = self.link, None
        if link is not None:
            await link.close()
        for conn in list(self._connections):
            conn.close(CLOSE_GOING_AWAY, "the plugin stopped")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._drained.wait()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.token.remove()
        self._stopped.set()
        log.info("plugin stopped")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the plugin keeps and cancels on close."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("plugin task failed", exc_info=task.exception())

    # --- the handshake and connections

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
        if len(self._connections) >= self.settings.max_connections or self._quitting or self._closed:
            return self._http_error(
                conn, 503, {"error": error_body(ErrorCode.rate_limited, "too many connections")}
            )
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        browser = bool(ws.request is not None and ws.request.headers.get_all("Origin"))
        conn = ControlConnection(self, ws, browser=browser)
        self._connections.add(conn)
        self._drained.clear()
        log.info("%r connected", conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            if not self._connections:
                self._drained.set()
            log.info("%r disconnected", conn)

    def attach(self, conn: ControlConnection) -> bool:
        """Make ``conn`` a controller; False when another one controls the plugin."""
        if self._quitting or self._closed:
            return False
        if self.controllers and not self.settings.allow_many:
            return False
        conn.controller = True
        self.controllers.append(conn)
        return True

    def detach(self, conn: ControlConnection) -> None:
        if conn in self.controllers:
            self.controllers.remove(conn)
        self._close_calls(lambda c: c.conn is conn)

    def _close_calls(self, which: Callable[[_OpenCall], bool]) -> None:
        for call in [c for c in self._open_calls if which(c)]:
            self._open_calls.remove(call)
            call.close()

    def greet(self, conn: ControlConnection) -> None:
        """Tell a new controller where the agent is: logged in (``kefuReady``,
        and ``kefuWSClose`` while the link is down) or ready for a login."""
        if self.agent is not None:
            conn.send(client_event("kefuReady", {"agent": self.agent, "state": self.state}))
            if self.link is not None and not self.link.up:
                conn.send(client_event("kefuWSClose", {"reason": "connection lost", "reconnecting": True}))
        elif not self._logging_in:
            conn.send(self._sso_ready())

    def broadcast(self, msg: Json) -> None:
        for conn in list(self.controllers):
            conn.send(dict(msg))
        self._observe(msg)

    def _observe(self, msg: Json) -> None:
        for observer in list(self.observers):
            try:
                observer(msg)
            except Exception:
                log.exception("plugin observer failed")

    def _sso_ready(self) -> Json:
        return client_event("ssoReady", {"server": self.settings.server_origin})

    # --- requests

    async def handle(self, conn: ControlConnection, req: Request) -> None:
        """Answer one decoded request of a controller."""
        local = self._local.get(req.mark)
        if local is not None:
            await local(conn, req)
        elif req.mark in MEDIA_MARKS:
            conn.reply(
                error_message(
                    req.mark,
                    ErrorCode.not_available_yet,
                    f"{req.mark} is not available yet: it comes with the media layer",
                    rid=req.id,
                )
            )
        elif req.mark in FORWARDED_MARKS:
            await self._forward(conn, req)
        else:  # a mark of PLUGIN_API that nobody answers is a bug of this table
            conn.reply(error_message(req.mark, ErrorCode.internal, rid=req.id))

    async def _window_api(self, conn: ControlConnection, req: Request) -> None:
        w = self.window
        if isinstance(req.params, SetWindowSizeParams):
            # the validator made them ints
            w.set_size(int(req.params.width), int(req.params.height))
        elif req.mark == "minimize":
            w.minimize()
        elif req.mark == "restore":
            w.restore()
        elif req.mark == "startup":
            w.startup()
        conn.reply(reply_message(req.mark, "success", w.snapshot(), rid=req.id))

    async def _data_api(self, conn: ControlConnection, req: Request) -> None:
        if req.mark == "isMultipleVideo":
            # SPEC §4.6 (v1211): true in a three-party video, i.e. in 008xxx
            value = self.state.startswith(TopState.threeParty.value[:3])
        else:
            # isShareState: a share needs the media layer, which is not built yet
            value = False
        conn.reply(reply_message(req.mark, "success", rid=req.id, data=value))

    async def _quit_api(self, conn: ControlConnection, req: Request) -> None:
        conn.reply(reply_message(req.mark, "success", {"reason": "quit"}, rid=req.id))
        self.spawn(self.quit("quit"))

    # --- login

    async def _start_login(self, conn: ControlConnection, req: Request) -> None:
        assert isinstance(req.params, StartLoginParams)

        def fail(code: ErrorCode, msg: str | None = None, field: str | None = None) -> None:
            out = error_message(req.mark, code, msg, rid=req.id, field_name=field)
            # SPEC §4.1's sample reads ``err.code == -1``: the code is at the top as well
            out["code"] = out["error"]["code"]
            conn.reply(out)

        try:
            url = check_login_url(req.params.data.url, self.settings.server_origin)
        except ProtocolError as exc:
            fail(exc.code, exc.msg, exc.field)
            return
        if self._logging_in:
            fail(ErrorCode.invalid_state, "a login is in progress")
            return
        self._logging_in = True
        if req.params.minimize:
            self.window.minimize()  # SPEC §4.1: minimised while logging in
        link: AgentLink | None = None
        try:
            async with asyncio.timeout(self.settings.login_timeout):
                result = await fetch_login(url, http_timeout=self.settings.login_timeout)
                old, old_agent = self.link, self.agent
                self.link, self.agent = None, None
                if old is not None:
                    if old.up and (old_agent or {}).get("name") != result.agent.get("name"):
                        # another agent logs in on this plugin: the first one leaves properly
                        with contextlib.suppress(ApiError, TimeoutError):
                            async with asyncio.timeout(self.settings.quit_logout_timeout):
                                await self._upstream(old, "logout", {})
                    await old.close()
                self.state = TopState.notLogin.value
                listener = _LinkEvents(self)
                link = self._new_link(result.token, listener)
                listener.link = link
                auth = await link.start()
        except TimeoutError:
            if link is not None:
                await link.close()
            log.warning("login timed out after %.1f s", self.settings.login_timeout)
            fail(ErrorCode.login_timeout, "login timed out")
            self._logging_in = False
            self._after_failed_login()
            return
        except ApiError as exc:
            log.warning("login failed: %s", exc.code.value)
            fail(exc.code, exc.msg)
            self._logging_in = False
            self._after_failed_login()
            return
        self._logging_in = False
        payload = auth.get("payload")
        agent = payload.get("agent") if isinstance(payload, dict) else None
        if not isinstance(agent, dict):
            agent = result.agent
        self.link = link
        self.agent = agent
        self._set_state(auth.get("state"))
        log.info("agent logged in")
        ready = {"agent": agent, "state": self.state}
        conn.reply(reply_message(req.mark, "success", ready, rid=req.id))
        self.broadcast(client_event("kefuReady", ready))

    def _after_failed_login(self) -> None:
        if self.agent is None:
            self.broadcast(self._sso_ready())

    def _new_link(self, token: str, listener: _LinkEvents) -> AgentLink:
        s = self.settings
        return AgentLink(
            s.agent_ws_url,
            token,
            listener,
            request_timeout=s.request_timeout,
            open_timeout=s.open_timeout,
            backoff_min=s.backoff_min,
            backoff_max=s.backoff_max,
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            rng=self._rng,
        )

    def _set_state(self, value: object) -> None:
        try:
            state = parse_code(value).value
        except ValueError:
            log.warning("the server sent a state that is not a code: %r", value)
            return
        if state != self.state:
            self.state = state
            self._observe({"v": 1, "mark": "state", "state": state})

    async def _logged_out(self, link: AgentLink) -> None:
        if self.link is not link:
            return
        self.link = None
        self.agent = None
        self.state = TopState.notLogin.value
        self._close_calls(lambda c: True)
        await link.close()
        self.broadcast(self._sso_ready())

    # --- forwarding to the server

    async def _forward(self, conn: ControlConnection, req: Request) -> None:
        link = self.link
        if link is None or self.agent is None:
            conn.reply(error_message(req.mark, ErrorCode.not_logged_in, rid=req.id))
            return
        params = req.params.model_dump(exclude_none=True)
        done = asyncio.Event()

        def on_message(msg: Json) -> None:
            out: Json = {"v": 1, "id": req.id, "mark": req.mark}
            out.update((k, v) for k, v in msg.items() if k not in ("v", "id", "seq", "mark"))
            sub_mark = msg.get("subMark")
            if (
                req.mark in ("setAgentState", "logout", "getState")
                and sub_mark == "success"
                and "state" in msg
            ):
                self._set_state(msg["state"])
            conn.reply(out)
            if req.mark == "logout" and sub_mark == "success":
                self.spawn(self._logged_out(link))
            if is_final(req.mark, sub_mark if isinstance(sub_mark, str) else None):
                done.set()
            else:
                # a call API goes on: its progress comes as state pushes (docs/calls.md)
                upstream = msg.get("id")
                self._open_calls.append(_OpenCall(conn, req.id, req.mark, str(upstream), done))

        try:
            await link.request(req.mark, params, on_message)
        except ApiError as exc:
            conn.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
            return
        await done.wait()

    async def _upstream(self, link: AgentLink, mark: str, params: dict[str, Any]) -> Json:
        """Send ``mark`` and wait for its first answer."""
        answer: asyncio.Future[Json] = asyncio.get_running_loop().create_future()

        def on_message(msg: Json) -> None:
            if not answer.done():
                answer.set_result(msg)

        await link.request(mark, params, on_message)
        return await answer

    # --- the link's events

    def _on_link_up(self, auth: Json) -> None:
        self._set_state(auth.get("state"))
        last = self.link.last_seq if self.link is not None else 0
        self.broadcast(client_event("kefuWSOpen", {"state": self.state, "lastSeq": last}))

    def _on_link_down(self, reason: str, code: int | None) -> None:
        self.broadcast(client_event("kefuWSClose", {"reason": reason, "code": code, "reconnecting": True}))

    def _on_link_ended(self, link: AgentLink, reason: str, code: int | None) -> None:
        if reason == "logout":
            self.spawn(self._logged_out(link))
            return
        self.link = None
        self.agent = None
        self.state = TopState.notLogin.value
        self._close_calls(lambda c: True)
        self.spawn(link.close())
        self.broadcast(client_event("kefuWSClose", {"reason": reason, "code": code, "reconnecting": False}))
        self.broadcast(self._sso_ready())

    def _call_progress(self, state: Any, payload: dict[str, Any]) -> None:
        """A state push that names a call API and its callback (docs/calls.md)
        is also that API's progress: the SDK's open request of that API hears
        it under its own id (the latest such request, when there are several).
        A change the server already answered in the request's reply
        (``requestId`` is the request's) is not told twice."""
        mark, sub_mark = payload.get("mark"), payload.get("subMark")
        if not isinstance(mark, str) or not isinstance(sub_mark, str):
            return
        call = next((c for c in reversed(self._open_calls) if c.mark == mark), None)
        if call is None or payload.get("requestId") == call.upstream:
            return
        progress: Json = {"v": 1, "id": call.rid, "mark": mark, "subMark": sub_mark}
        if isinstance(state, str):
            progress["state"] = state
        progress["payload"] = payload
        call.conn.reply(progress)
        if is_final(mark, sub_mark):
            self._close_calls(lambda c: c is call)

    def _on_link_push(self, msg: Json) -> None:
        mark = msg.get("mark")
        payload = msg.get("payload")
        out: Json
        if mark == "state":
            self._set_state(msg.get("state"))
            out = {"v": 1, "mark": "state", "state": msg.get("state")}
            if payload is not None:
                out["payload"] = payload
            if isinstance(payload, dict):
                self._call_progress(msg.get("state"), payload)
        elif mark == "event" and msg.get("subMark") == "sessionClosed":
            out = event_message("chatCloseCB", payload)  # SPEC §3.2
        else:
            out = {k: v for k, v in msg.items() if k != "seq"}
        self.broadcast(out)
