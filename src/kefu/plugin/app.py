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

The parts, each over the :class:`~kefu.plugin.host.PluginCore` interface the
plugin implements: :mod:`~kefu.plugin.control_server` (the WebSocket server),
:mod:`~kefu.plugin.agent_login` (``startLogin``, logout),
:mod:`~kefu.plugin.upstream` (forwarding, the plugin's own requests, TURN),
:mod:`~kefu.plugin.link_events` (the link's life and pushes, the call
mirror, ``videoCloseCB``) and :mod:`~kefu.plugin.media_api` (snapshot,
photo, share).

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
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from kefu.protocol import (
    ApiError,
    ErrorCode,
    Request,
    TopState,
    error_message,
    parse_code,
    reply_message,
)
from kefu.protocol.mirror import CallMirror, CallRequests
from kefu.protocol.plugin_api import FORWARDED_MARKS, SetWindowSizeParams
from kefu.protocol.wire import Json, event_message, state_message

from .agent_login import AgentLogin
from .connection import ControlConnection
from .control_server import IMCLIENT_JS, ControlServer
from .host import Replier
from .link import AgentLink
from .link_events import LinkEvents, client_event
from .media_api import MediaApi
from .security import PairingGuard, PairingToken
from .settings import PluginSettings
from .uploads import ServerApi
from .upstream import Upstream
from .window import Window

if TYPE_CHECKING:  # kefu.media loads aiortc: only a plugin with media imports it
    from kefu.media import MediaHub, SfuMember

    from .media import PluginMedia

__all__ = ["IMCLIENT_JS", "Plugin", "client_event"]

log = logging.getLogger("kefu.plugin")


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
        self.window = Window()
        self.token = PairingToken(settings.token_path, token)
        self.guard = PairingGuard(
            clock,
            failures=settings.pairing_failures,
            window=settings.pairing_window,
            lock=settings.pairing_lock,
        )
        self.control = ControlServer(settings, self, self._accepting)
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
        self.api_token: str | None = None  # the agent's token for the REST API (uploads)
        self.upstream = Upstream(self, self._logged_out)
        self.media_api = MediaApi(self, self.upstream)
        self.link_events = LinkEvents(self, self.upstream, self.media_api, self._logged_out)
        self.login = AgentLogin(self, self.upstream, self.link_events, rng)
        self._quitting = False
        self._closed = False
        self._stopped = asyncio.Event()
        #: Told every message the SDKs are told, and each state change (the desktop window).
        self.observers: list[Callable[[Json], None]] = []
        #: The marks answered here (``LOCAL_MARKS``, ``MEDIA_MARKS``); the rest is forwarded.
        self._local: dict[str, Callable[[Replier, Request], Awaitable[None]]] = {
            "startLogin": self.login.start,
            "setWindowSize": self._window_api,
            "minimize": self._window_api,
            "restore": self._window_api,
            "startup": self._window_api,
            "getWindow": self._window_api,
            "quit": self._quit_api,
            "isMultipleVideo": self._data_api,
            "isShareState": self._data_api,
            "snapshot": self.media_api.snapshot,
            "takePhoto": self.media_api.take_photo,
            "inviteShare": self.media_api.invite_share,
        }

    # --- lifetime

    @property
    def url(self) -> str:
        return self.control.url

    @property
    def port(self) -> int:
        return self.control.port

    @property
    def tls_names(self) -> tuple[str, ...]:
        return self.control.tls_names

    @property
    def _server(self) -> Any:
        return self.control.server

    @property
    def call_media(self) -> MediaHub | SfuMember | None:
        """The media of the call this agent is in now, if it has media (the window paints it):
        the relay's :class:`MediaHub` when it leads the call in ``media: "hub"``, an invited
        agent's peer's too (None), its subscriptions in the SFU mode."""
        call = self.mirror.current()
        if self.media is None or call is None:
            return None
        from .media import RelayCall, SfuCall

        media = self.media.calls.get(call.call_id)
        if isinstance(media, SfuCall):
            return media.member
        return media.hub if isinstance(media, RelayCall) else None

    @property
    def hub(self) -> MediaHub | SfuMember | None:
        """:attr:`call_media` by its name before D40 (tests and benchmarks of other branches)."""
        return self.call_media

    def _accepting(self) -> bool:
        return not (self._quitting or self._closed)

    async def start(self) -> None:
        """Listen on 127.0.0.1, then write a fresh pairing token (not before:
        a plugin that cannot bind must not replace a running one's token)."""
        await self.control.start()
        self.token.write()
        log.info("plugin listening on %s (server %s)", self.url, self.settings.server_origin)

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
                    await self.upstream.upstream(link, "logout", {})
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.upstream.close()
        await self.end_calls()  # recordings finish and upload while the token is good
        link, self.link = self.link, None
        if link is not None:
            await link.close()
        await self.api.aclose()
        await self.control.close()
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

    # --- the controllers

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
        self.media_api.forget_closed()

    def greet(self, conn: ControlConnection) -> None:
        """Tell a new controller where the agent is: logged in (``kefuReady``,
        and ``kefuWSClose`` while the link is down) or ready for a login."""
        if self.agent is not None:
            conn.send(client_event("kefuReady", self.ready_payload()))
            if self.someone_waits():
                conn.send(event_message("queue", self.queue, mark="event"))
            if self.link is not None and not self.link.up:
                conn.send(client_event("kefuWSClose", {"reason": "connection lost", "reconnecting": True}))
        elif not self.login.in_progress:
            conn.send(self.sso_ready())

    def ready_payload(self) -> Json:
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

    def sso_ready(self) -> Json:
        return client_event("ssoReady", {"server": self.settings.server_origin})

    async def handle(self, conn: Replier, req: Request) -> None:
        """Answer one decoded request of a controller."""
        local = self._local.get(req.mark)
        if local is not None:
            await local(conn, req)
        elif req.mark in FORWARDED_MARKS:
            await self.upstream.forward(conn, req)
        else:  # a mark of PLUGIN_API that nobody answers is a bug of this table
            conn.reply(error_message(req.mark, ErrorCode.internal, rid=req.id))

    async def _window_api(self, conn: Replier, req: Request) -> None:
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

    async def _data_api(self, conn: Replier, req: Request) -> None:
        if req.mark == "isMultipleVideo":
            # SPEC §4.6 (v1211): true in a three-party video (008xxx; the invited agent's, see calls.py)
            value = self.mirror.is_multiple_video(self.state)
        else:
            # isShareState: between the share's open and close
            value = self.mirror.is_share_state()
        conn.reply(reply_message(req.mark, "success", rid=req.id, data=value))

    async def _quit_api(self, conn: Replier, req: Request) -> None:
        conn.reply(reply_message(req.mark, "success", {"reason": "quit"}, rid=req.id))
        self.spawn(self.quit("quit"))

    def someone_waits(self) -> bool:
        """Whether the waiting list the plugin knows has anyone (else a new page has nothing to learn)."""
        waiting = self.queue.get("waiting") if isinstance(self.queue, dict) else None
        return isinstance(waiting, list) and len(waiting) > 0

    def set_state(self, value: object) -> None:
        try:
            state = parse_code(value).value
        except ValueError:
            log.warning("the server sent a state that is not a code: %r", value)
            return
        if state != self.state:
            self.state = state
            self._observe(state_message(state))

    async def end_calls(self) -> None:
        """The agent is gone (logout, another login, the plugin stops): its
        requests end without a word, its calls' media closes."""
        self.requests.close_where(lambda r: True)
        self.media_api.end()
        self.mirror.clear()
        if self.media is not None:
            await self.media.close()

    async def send_signal(self, call_id: str, kind: str, name: str, data: Json) -> None:
        """WebRTC signalling to a member of the call, through the server (the media's host)."""
        await self.upstream.send_signal(call_id, kind, name, data)

    async def media_failed(self, call_id: str, kind: str, name: str, reason: str) -> None:
        """The media with ``name`` could not connect: the server is told (the media's host)."""
        await self.upstream.media_failed(call_id, kind, name, reason)

    def share_changed(self, call_id: str, on: bool, why: str) -> None:
        """The visitor's screen share opened or closed (the media's host; :class:`MediaApi`)."""
        self.media_api.share_changed(call_id, on, why)

    async def _logged_out(self, link: AgentLink) -> None:
        await self.login.logged_out(link)

    def _token_now(self) -> str | None:
        return self.api_token
