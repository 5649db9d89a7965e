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
  under a fresh id and maps every answer back to the SDK's id and mark; a
  call API's later progress (``state`` pushes naming it) reaches the SDK's
  request too, until its final callback (:mod:`kefu.protocol.mirror`);
- ``MEDIA_MARKS``: ``snapshot`` from the plugin's own media (a JPEG of the
  visitor's latest frame, stored on the server too); ``takePhoto`` and
  ``inviteShare`` through the server, answered when the visitor's photo or
  share arrives (``event``/``photo``, ``event``/``share``).

The media of the calls is :mod:`kefu.plugin.media` (``--no-media``: none; a
call is then signalling only).

Every reply carries ``state``, the agent's code as the plugin knows it (the
server's, when the server sent one), so the v190307 ``callback(state,
payload)`` always gets a code.

The server's pushes become SDK pushes: ``state`` as is, ``sessionClosed`` as
``initInnerCallBack``/``chatCloseCB`` (SPEC §3.2), other events as
``event``/<subMark> (but ``signal``, which is the media's); the end of each
call also as the deprecated ``initInnerCallBack``/``videoCloseCB`` (SPEC §2);
the link's own life as ``client`` events (``ssoReady``, ``kefuReady``,
``kefuWSClose``, ``kefuWSOpen``, ``quit``).

The agent's login belongs to the plugin, not to an SDK connection: a page
reload closes one controller and opens the next, which is greeted with
``kefuReady`` and the current state. The token lives in memory only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from kefu.protocol.mirror import CallMirror, CallRequests, CallView, OpenRequest, call_ended
from kefu.protocol.plugin_api import (
    CALL_MARKS,
    FORWARDED_MARKS,
    SetWindowSizeParams,
    StartLoginParams,
    is_final,
)
from kefu.protocol.wire import Json
from kefu.tls import dns_names, server_context

from .connection import CLOSE_GOING_AWAY, ControlConnection
from .link import AgentLink
from .login import check_login_url, fetch_login
from .security import PairingGuard, PairingToken, check_handshake
from .settings import PluginSettings
from .uploads import ServerApi
from .window import Window

if TYPE_CHECKING:  # kefu.media loads aiortc: only a plugin with media imports it
    from kefu.media import MediaHub, SfuMember

    from .media import PluginMedia

__all__ = ["Plugin", "client_event"]

log = logging.getLogger("kefu.plugin")

#: The browser SDK the plugin serves at ``/imclient.js`` (the same file the server serves).
IMCLIENT_JS = Path(__file__).resolve().parent.parent / "web" / "imclient.js"


def client_event(sub_mark: str, payload: Any = None) -> Json:
    """A connection event: ``{"v":1,"mark":"client","subMark":...}``."""
    return event_message(sub_mark, payload, mark="client")


@dataclass(eq=False)
class _ShareWait:
    """An ``inviteShare`` request: ``open`` when the share is on, ``close`` when it stops."""

    req: OpenRequest
    call_id: str
    timer: asyncio.TimerHandle | None = None
    opened: bool = False


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
        #: The DNS names of the TLS certificate (``--tls-cert``), allowed as Host.
        self.tls_names: tuple[str, ...] = ()
        self._server: Server | None = None
        self._connections: set[ControlConnection] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self.controllers: list[ControlConnection] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.link: AgentLink | None = None
        self.agent: dict[str, Any] | None = None
        #: The waiting list as the server last described it (the auth reply, ``queue``
        #: pushes): pushed after ``kefuReady``, when someone waits, so that a page sees
        #: who waits from the start.
        self.queue: Json | None = None
        #: The agent's state code as the plugin last heard it (000000 when not logged in).
        self.state: str = TopState.notLogin.value
        #: The calls as the server's ``call`` pushes describe them, and the share of each.
        self.mirror = CallMirror()
        #: The SDKs' call API requests still going on (their progress comes later).
        self.requests = CallRequests()
        #: The TLS context of the links to an https server (``--server-ca``), made once.
        self.server_ssl = settings.server_ssl()
        self.api = ServerApi(
            settings.http_base, self._token_now, timeout=settings.http_timeout, ssl=self.server_ssl
        )
        #: The media of the calls; None with ``--no-media``.
        self.media: PluginMedia | None = None
        if settings.media is not None:
            from .media import PluginMedia

            self.media = PluginMedia(
                self,
                settings.media,
                self.api,
                settings.data_dir,
                connect_timeout=settings.media_connect_timeout,
            )
        self._ice_renewal: asyncio.TimerHandle | None = None
        self._photos: dict[str, asyncio.Future[Json]] = {}  # takePhoto: server requestId → event
        self._early_photos: OrderedDict[str, Json] = OrderedDict()  # photo events before their reply
        self._shares: list[_ShareWait] = []
        self._closed_calls: OrderedDict[str, None] = OrderedDict()  # videoCloseCB told once per call
        self._api_token: str | None = None  # the agent's token for the REST API (uploads)
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
            "snapshot": self._snapshot_api,
            "takePhoto": self._take_photo_api,
            "inviteShare": self._invite_share_api,
        }

    # --- lifetime

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``; with TLS ``wss://<the certificate's first name>:<port>``
        (a name resolving to 127.0.0.1, as ``lccp-ex.easemob.com`` of SPEC §3)."""
        if self.settings.tls:
            # a wildcard cannot be a URL's host; it is still accepted as Host (security.certificate_host_allowed)
            host = next((n for n in self.tls_names if "*" not in n), "127.0.0.1")
            return f"wss://{host}:{self.port}"
        return f"ws://127.0.0.1:{self.port}"

    @property
    def hub(self) -> MediaHub | SfuMember | None:
        """The media of the call this agent is in now, if it has media (the window paints it):
        its hub when it leads the call, its subscriptions in the SFU mode."""
        call = self.mirror.current()
        if self.media is None or call is None:
            return None
        from .media import HubCall, SfuCall

        media = self.media.calls.get(call.call_id)
        if isinstance(media, SfuCall):
            return media.member
        return media.hub if isinstance(media, HubCall) else None

    async def start(self) -> None:
        """Listen on 127.0.0.1, then write a fresh pairing token (not before:
        a plugin that cannot bind must not replace a running one's token)."""
        s = self.settings
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = server_context(s.tls_cert, s.tls_key)  # raises TlsError, saying what to do
            self.tls_names = dns_names(s.tls_cert)
            if not self.tls_names:
                log.warning(
                    "the TLS certificate %s has no DNS name: only 127.0.0.1 will match it", s.tls_cert
                )
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            s.port,
            ssl=tls,
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
        if self._ice_renewal is not None:
            self._ice_renewal.cancel()
        await self._end_calls()  # recordings finish and upload while the token is good
        link, self.link = self.link, None
        if link is not None:
            await link.close()
        await self.api.aclose()
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
        self.requests.close_where(lambda r: getattr(r.send, "__self__", None) is conn)
        self._shares = [w for w in self._shares if not w.req.closed]

    def greet(self, conn: ControlConnection) -> None:
        """Tell a new controller where the agent is: logged in (``kefuReady``,
        and ``kefuWSClose`` while the link is down) or ready for a login."""
        if self.agent is not None:
            conn.send(client_event("kefuReady", self._ready_payload()))
            if self._someone_waits():
                conn.send({"v": 1, "mark": "event", "subMark": "queue", "payload": self.queue})
            if self.link is not None and not self.link.up:
                conn.send(client_event("kefuWSClose", {"reason": "connection lost", "reconnecting": True}))
        elif not self._logging_in:
            conn.send(self._sso_ready())

    def _ready_payload(self) -> Json:
        """``kefuReady``'s payload: the agent, its state, and the call it is in
        (a page reloaded mid-call learns the call, not only the state code)."""
        return {"agent": self.agent, "state": self.state, "currentCall": self.current_call()}

    def current_call(self) -> Json | None:
        """The call the agent is in (or rings in), as the SDKs are told it; None out of any."""
        return self.mirror.current_json() if self.agent is not None else None

    def set_video_bar(self, visible: bool) -> None:
        """The page's ``videoBarVisible`` (its client's hello): the window shows or hides its bar."""
        self.window.set_video_bar(visible)

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
            # SPEC §4.6 (v1211): true in a three-party video (008xxx; the invited agent's, see calls.py)
            value = self.mirror.is_multiple_video(self.state)
        else:
            # isShareState: between the share's open and close
            value = self.mirror.is_share_state()
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
            form = check_login_url(req.params.data.url, self.settings.server_origin)
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
                result = await fetch_login(
                    form,
                    self.settings.http_base,
                    http_timeout=self.settings.login_timeout,
                    ssl=self.server_ssl,
                )
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
                auth = await link.start(self._login_params())
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
        self._use_ice(payload)
        agent = payload.get("agent") if isinstance(payload, dict) else None
        if not isinstance(agent, dict):
            agent = result.agent
        if self.mirror.me is not None and self.mirror.me != agent.get("name"):
            await self._end_calls()  # another agent: the first one's calls are not ours
        self.link = link
        self.agent = agent
        self._api_token = link.token
        self.mirror.me = agent.get("name") if isinstance(agent.get("name"), str) else None
        self._set_state(auth.get("state"))
        log.info("agent logged in")
        ready = self._ready_payload()
        conn.reply(reply_message(req.mark, "success", ready, rid=req.id))
        self.broadcast(client_event("kefuReady", ready))
        queue = payload.get("queue") if isinstance(payload, dict) else None
        self.queue = queue if isinstance(queue, dict) else None
        if self._someone_waits():
            self.broadcast({"v": 1, "mark": "event", "subMark": "queue", "payload": self.queue})

    def _login_params(self) -> Json:
        """What the plugin holds as it logs in: the calls whose media it has.
        A connected call of the agent not among them lost its media with a
        previous plugin process: the server ends it (``agent_media_lost``,
        docs/calls.md). Without media (``--no-media``) there is none to lose."""
        if self.media is None:
            return {}
        return {"mediaCalls": sorted(self.media.calls)}

    def _someone_waits(self) -> bool:
        """Whether the waiting list the plugin knows has anyone (else a new page has nothing to learn)."""
        waiting = self.queue.get("waiting") if isinstance(self.queue, dict) else None
        return isinstance(waiting, list) and len(waiting) > 0

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
            ssl=self.server_ssl,
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
        await link.close()
        await self._end_calls()
        self._api_token = None
        self.broadcast(self._sso_ready())

    async def _end_calls(self) -> None:
        """The agent is gone (logout, another login, the plugin stops): its
        requests end without a word, its calls' media closes."""
        self.requests.close_where(lambda r: True)
        for wait in self._shares:
            self._end_share_wait(wait)
        self._shares.clear()
        for fut in self._photos.values():
            if not fut.done():
                fut.set_exception(ApiError("the agent logged out", code=ErrorCode.not_logged_in))
        self._photos.clear()
        self._early_photos.clear()
        self.mirror.clear()
        if self.media is not None:
            await self.media.close()

    # --- forwarding to the server

    async def _forward(self, conn: ControlConnection, req: Request) -> None:
        link = self.link
        if link is None or self.agent is None:
            conn.reply(error_message(req.mark, ErrorCode.not_logged_in, rid=req.id))
            return
        params = req.params.model_dump(exclude_none=True)
        done = asyncio.Event()
        uid = link.new_id()
        # a call API goes on after its reply: its progress comes as state pushes
        # (docs/calls.md), possibly before the reply, so it is registered first
        call = (
            self.requests.open(conn.reply, req.id, req.mark, uid, done.set)
            if req.mark in CALL_MARKS
            else None
        )

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
            if req.mark == "getState" and sub_mark == "success":
                payload = out.get("payload")
                out["payload"] = {
                    **(payload if isinstance(payload, dict) else {}),
                    "currentCall": self.current_call(),
                }
            if call is not None:
                call.reply(out)
            else:
                conn.reply(out)
                if is_final(req.mark, sub_mark if isinstance(sub_mark, str) else None):
                    done.set()
            if req.mark == "logout" and sub_mark == "success":
                self.spawn(self._logged_out(link))

        try:
            await link.request(req.mark, params, on_message, uid=uid)
        except ApiError as exc:
            if call is not None:
                call.close()
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
        self._use_ice(auth.get("payload"))
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
        self.spawn(link.close())
        self.spawn(self._end_calls())
        self.broadcast(client_event("kefuWSClose", {"reason": reason, "code": code, "reconnecting": False}))
        self.broadcast(self._sso_ready())

    def _on_link_push(self, msg: Json) -> None:
        mark = msg.get("mark")
        sub_mark = msg.get("subMark")
        payload = msg.get("payload")
        out: Json
        if mark == "state":
            self._on_state(msg.get("state"), payload)
            return
        if mark == "event" and isinstance(payload, dict):
            if sub_mark == "signal":
                if self.media is not None:
                    self.media.on_signal(payload)
                return  # WebRTC signalling is the media's, not the SDKs'
            if sub_mark == "call":
                self._on_call(payload)
            elif sub_mark == "share":
                self._on_share(payload)
            elif sub_mark == "photo":
                self._on_photo(payload)
            elif sub_mark == "queue":
                self.queue = payload
        if mark == "event" and sub_mark == "sessionClosed":
            out = event_message("chatCloseCB", payload)  # SPEC §3.2
        elif mark == "event" and sub_mark == "supervisor":
            out = event_message("supervisorChange", payload)  # issue 20: a supervisor in the call
        else:
            out = {k: v for k, v in msg.items() if k != "seq"}
        self.broadcast(out)

    # --- calls (docs/calls.md, "The plugin")

    def _on_state(self, state: object, payload: object) -> None:
        """A state push: to the SDKs as is; to the request of the API it names;
        and when it ends the agent's call, the end of every call request."""
        before = self.state
        self._set_state(state)
        out: Json = {"v": 1, "mark": "state", "state": state}
        if payload is not None:
            out["payload"] = payload
        self.broadcast(out)
        if not isinstance(payload, dict):
            return
        self.requests.progress(state, payload)
        old = payload.get("old") if isinstance(payload.get("old"), str) else before
        if call_ended(old, state):
            self.requests.call_over(state, payload)
            call_id = payload.get("callId")
            if isinstance(call_id, str):
                self._share_over(call_id, "call ended")
            self._video_closed(call_id if isinstance(call_id, str) else None, state, payload)

    def _video_closed(self, call_id: str | None, state: object, payload: Json) -> None:
        """``initInnerCallBack``/``videoCloseCB``, once per ended call (SPEC §2:
        deprecated since v1204, kept for old integrations)."""
        if call_id is not None:
            if call_id in self._closed_calls:
                return
            self._closed_calls[call_id] = None
            while len(self._closed_calls) > 256:
                self._closed_calls.popitem(last=False)
        info = {k: payload.get(k) for k in ("callId", "mark", "subMark", "reason", "flow")}
        self.broadcast(event_message("videoCloseCB", {**info, "state": state}))

    def _on_call(self, payload: Json) -> None:
        view = self.mirror.update(payload)
        if view is None:
            log.warning("a call push without callId, primary or members: dropped")
            return
        me = self.mirror.me
        if view.ended or (me is not None and view.status_of("agent", me) not in ("joined", "invited")):
            self._share_over(view.call_id, "call ended")
        if self.media is not None and me is not None:
            self.media.on_call(me, view)

    # --- the network: TURN credentials from the server, media that cannot connect (issue 16)

    def _use_ice(self, payload: object) -> None:
        """The server's ``iceServers`` (auth reply or ``iceServers`` answer) for
        the next calls' media; asked again after ``iceRenewIn`` seconds."""
        if self.media is None or not isinstance(payload, dict):
            return
        from kefu.media import MediaError, ice_servers_from_wire

        try:
            servers = ice_servers_from_wire(payload.get("iceServers"))
        except MediaError as exc:
            log.warning("the server's iceServers are unusable: %s", exc.msg)
            return
        self.media.use_ice_servers(servers)
        renew_in = payload.get("iceRenewIn")
        if self._ice_renewal is not None:
            self._ice_renewal.cancel()
            self._ice_renewal = None
        if isinstance(renew_in, int | float) and renew_in > 0:
            self._ice_renewal = asyncio.get_running_loop().call_later(
                renew_in, lambda: self.spawn(self._renew_ice(float(renew_in)))
            )

    async def _renew_ice(self, renew_in: float) -> None:
        link = self.link
        if link is None or not link.up:
            return  # the next auth reply brings fresh ones
        try:
            answer = await self._upstream(link, "iceServers", {})
        except (ApiError, TimeoutError) as exc:
            log.warning("renewing the TURN credential failed: %s; trying again", exc)
            answer = {}
        if answer.get("subMark") == "success":
            self._use_ice(answer.get("payload"))
        else:
            retry = max(1.0, renew_in / 10)
            self._ice_renewal = asyncio.get_running_loop().call_later(
                retry, lambda: self.spawn(self._renew_ice(renew_in))
            )

    async def media_failed(self, call_id: str, kind: str, name: str, reason: str) -> None:
        """Tell the server the media with ``name`` could not connect: it ends that
        member's part of the call with ``media_unreachable``."""
        link = self.link
        if link is None:
            return
        params = {"callId": call_id, "member": {"kind": kind, "name": name}, "reason": reason[:128]}
        try:
            answer = await self._upstream(link, "mediaFailed", params)
        except (ApiError, TimeoutError) as exc:
            log.warning("call %s: reporting the media failure failed: %s", call_id, exc)
            return
        if answer.get("subMark") == "error":
            log.info("call %s: mediaFailed refused: %s", call_id, (answer.get("error") or {}).get("msg"))

    # --- media (SPEC §4.4, §4.5)

    def _token_now(self) -> str | None:
        return self._api_token

    async def send_signal(self, call_id: str, kind: str, name: str, data: Json) -> None:
        """WebRTC signalling to a member of the call, through the server (docs/calls.md)."""
        link = self.link
        if link is None:
            raise ApiError("no link to the server", code=ErrorCode.upstream_down)

        def on_answer(msg: Json) -> None:
            if msg.get("subMark") == "error":
                error = msg.get("error") or {}
                # no_such_call / forbidden: the call or the member ended while this was on its way
                ended = error.get("code") in ("no_such_call", "forbidden")
                log.log(
                    logging.INFO if ended else logging.WARNING,
                    "call %s: signal to %s %s refused: %s",
                    call_id,
                    kind,
                    name,
                    error.get("msg"),
                )

        params = {"callId": call_id, "to": {"kind": kind, "name": name}, "data": data}
        await link.request("signal", params, on_answer)

    def _current_call(self, conn: ControlConnection, req: Request) -> CallView | None:
        """The call the agent is in, or an error answered (not logged in, not in a call)."""
        if self.link is None or self.agent is None:
            conn.reply(error_message(req.mark, ErrorCode.not_logged_in, rid=req.id))
            return None
        call = self.mirror.current()
        me = self.mirror.me
        if call is None or me is None or call.status_of("agent", me) != "joined":
            conn.reply(
                error_message(req.mark, ErrorCode.not_in_call, "the agent is not in a call", rid=req.id)
            )
            return None
        return call

    async def _snapshot_api(self, conn: ControlConnection, req: Request) -> None:
        """snapshot (SPEC §4.4): a JPEG of the visitor's latest received frame,
        taken here, stored on the server as a media artifact, returned to the SDK."""
        call = self._current_call(conn, req)
        if call is None:
            return
        if self.media is None:
            msg = "this plugin runs without media (--no-media): no video to take a snapshot of"
            conn.reply(error_message(req.mark, ErrorCode.no_media, msg, rid=req.id))
            return
        try:
            image = await self.media.snapshot(call)
            stored = await self.api.upload_snapshot(call.call_id, image.jpeg)
        except ApiError as exc:
            conn.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
            return
        payload = {
            **image.to_payload(),
            "artifactId": stored.get("artifactId"),
            "sha256": stored.get("sha256"),
            "size": len(image.jpeg),
            "callId": call.call_id,
            "visitorName": call.first_visitor,
            "createdAt": stored.get("createdAt"),
        }
        conn.reply(reply_message(req.mark, "success", payload, rid=req.id))

    async def _take_photo_api(self, conn: ControlConnection, req: Request) -> None:
        """takePhoto (SPEC §4.4): the visitor's client takes a full-resolution
        still and uploads it; the agent gets the artifact (``event``/``photo``),
        fetched here and answered with the image."""
        call = self._current_call(conn, req)
        if call is None:
            return
        if call.primary != self.mirror.me:
            msg = "only the call's primary agent asks the visitor for a photo"
            conn.reply(error_message(req.mark, ErrorCode.invalid_state, msg, rid=req.id))
            return
        link = self.link
        assert link is not None
        request_id: str | None = None
        try:
            async with asyncio.timeout(self.settings.media_timeout):
                answer = await self._upstream(link, "takePhoto", {})
                if answer.get("subMark") == "error":
                    answer.pop("id", None)
                    conn.reply({**answer, "id": req.id, "mark": req.mark, "v": 1})
                    return
                body = answer.get("payload") or {}
                request_id = body.get("requestId") if isinstance(body, dict) else None
                if not isinstance(request_id, str):
                    raise ApiError("the server's takePhoto answer has no requestId", code=ErrorCode.internal)
                event = self._early_photos.pop(request_id, None)
                if event is None:
                    fut: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
                    self._photos[request_id] = fut
                    event = await fut
                error = event.get("error")
                if isinstance(error, dict):
                    # SPEC §4.4: photos disabled is exactly {"type":"snapShotDisabled","msg":"snapShotDisabled"}
                    conn.reply({"v": 1, "id": req.id, "mark": req.mark, "subMark": "error", "error": error})
                    return
                artifact_id = event.get("artifactId")
                if not isinstance(artifact_id, str):
                    raise ApiError("the photo event has no artifact", code=ErrorCode.internal)
                jpeg = await self.api.fetch_artifact(artifact_id)
        except TimeoutError:
            msg = f"no photo from the visitor within {self.settings.media_timeout:g} s"
            conn.reply(error_message(req.mark, ErrorCode.timeout, msg, rid=req.id))
            return
        except ApiError as exc:
            conn.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
            return
        finally:
            if request_id is not None:
                self._photos.pop(request_id, None)
        raw_meta = event.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        payload = {
            "base64": base64.b64encode(jpeg).decode("ascii"),
            "width": meta.get("width"),
            "height": meta.get("height"),
            "mime": event.get("contentType", "image/jpeg"),
            "artifactId": artifact_id,
            "sha256": event.get("sha256"),
            "size": len(jpeg),
            "callId": event.get("callId"),
            "requestId": request_id,
            "visitorName": meta.get("visitorName"),
            "createdAt": event.get("createdAt"),
        }
        conn.reply(reply_message(req.mark, "success", payload, rid=req.id))

    def _on_photo(self, payload: Json) -> None:
        request_id = payload.get("requestId")
        if not isinstance(request_id, str):
            return
        fut = self._photos.pop(request_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(payload)
            return
        self._early_photos[request_id] = payload  # before takePhoto's reply
        while len(self._early_photos) > 32:
            self._early_photos.popitem(last=False)

    async def _invite_share_api(self, conn: ControlConnection, req: Request) -> None:
        """inviteShare (SPEC §4.5): the visitor is asked; ``open`` when its share
        is on, ``close`` when it stops (or the call ends), ``error`` when it
        refuses or does not answer within the media timeout."""
        call = self._current_call(conn, req)
        if call is None:
            return
        if call.primary != self.mirror.me:
            msg = "only the call's primary agent asks the visitor to share the screen"
            conn.reply(error_message(req.mark, ErrorCode.invalid_state, msg, rid=req.id))
            return
        link = self.link
        assert link is not None
        done = asyncio.Event()
        uid = link.new_id()
        wait = _ShareWait(self.requests.open(conn.reply, req.id, req.mark, uid, done.set), call.call_id)
        self._shares.append(wait)

        def on_answer(msg: Json) -> None:
            if msg.get("subMark") == "error":
                msg.pop("id", None)
                wait.req.reply({**msg, "id": req.id, "mark": req.mark, "v": 1})
                return
            # the visitor was asked: the spec has no callback for that; its answer follows
            wait.req.accepted()

        wait.timer = asyncio.get_running_loop().call_later(
            self.settings.media_timeout, self._share_timeout, wait
        )
        try:
            await link.request("inviteShare", {}, on_answer, uid=uid)
        except ApiError as exc:
            wait.req.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
        try:
            await done.wait()
        finally:
            self._end_share_wait(wait)
            if wait in self._shares:
                self._shares.remove(wait)

    def _share_timeout(self, wait: _ShareWait) -> None:
        wait.timer = None
        if not wait.opened:
            msg = f"the visitor did not answer within {self.settings.media_timeout:g} s"
            wait.req.tell("error", None, error=error_body(ErrorCode.timeout, msg))

    @staticmethod
    def _end_share_wait(wait: _ShareWait) -> None:
        if wait.timer is not None:
            wait.timer.cancel()
            wait.timer = None
        wait.req.close()

    def _on_share(self, payload: Json) -> None:
        """The visitor's answer to ``inviteShare``, and the end of its share (``event``/``share``)."""
        call_id, state = payload.get("callId"), payload.get("state")
        if not isinstance(call_id, str):
            return
        reason = payload.get("reason")
        if state == "open":
            self.share_changed(call_id, True, "visitor")
        elif state == "close":
            self.share_changed(call_id, False, "visitor")
        elif state in ("refused", "error"):
            code = ErrorCode.share_refused if state == "refused" else ErrorCode.no_media
            msg = reason if isinstance(reason, str) and reason else None
            for wait in [w for w in self._shares if w.call_id == call_id and not w.opened]:
                wait.req.tell("error", None, error=error_body(code, msg))

    def share_changed(self, call_id: str, on: bool, why: str) -> None:
        """The visitor's screen share opened or closed (its answer, or the hub saw the track).

        A screen track's removal closes only the share its arrival belonged to:
        the track of a share the visitor closed already may go after the next
        share opened (the renegotiation that removes it is on its way)."""
        view = self.mirror.calls.get(call_id)
        if why == "track":
            if view is None:
                return
            if on:
                view.screen_epoch = view.share_epoch + (0 if view.share else 1)
            elif view.screen_epoch != view.share_epoch:
                return  # the end of a share that is over already
        changed = view is not None and view.share != on
        if view is not None:
            if on and not view.share:
                view.share_epoch += 1
            view.share = on
        info = {"callId": call_id, "by": why}
        for wait in [w for w in self._shares if w.call_id == call_id]:
            if on and not wait.opened:
                wait.opened = True
                if wait.timer is not None:
                    wait.timer.cancel()
                    wait.timer = None
                wait.req.tell("open", None, info)
            elif not on and wait.opened:
                wait.req.tell("close", None, info)
        if changed:
            log.info("call %s: the visitor's screen share is %s (%s)", call_id, "on" if on else "off", why)

    def _share_over(self, call_id: str, why: str) -> None:
        """The call ended: its share is over; a request still waiting for an answer fails."""
        self.share_changed(call_id, False, why)
        for wait in [w for w in self._shares if w.call_id == call_id and not w.opened]:
            wait.req.tell("error", None, error=error_body(ErrorCode.not_in_call, "the call ended"))
