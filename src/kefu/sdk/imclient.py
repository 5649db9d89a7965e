"""``kefu.sdk.IMClient``: the spec's ``IMClient`` (SPEC §3–§5), in Python.

Names, parameters, callbacks and data are the spec's, so code written
against the spec ports line by line::

    client = IMClient({
        "baseWsUrl": "ws://127.0.0.1:1040",
        "ssoTo": "http://127.0.0.1:8600/agent",
        "videoBarVisible": True,
        "success": lambda data: print("connected", data),
        "error": lambda data: print(data["error"]["msg"]),
        "ssoReady": lambda data: client.startLogin({"minimize": True, "data": {"url": LOGIN_URL}}),
        "kefuReady": lambda data: print("logged in"),
        "kefuWSClose": lambda data: print("the plugin lost the server"),
    })
    client.initInnerCallBack({"chatCloseCB": lambda data: print(data["payload"])})
    client.sessionCount({"success": lambda data: print(data["payload"]["sessionCount"])})

Both calling conventions work on every API, alone or together:

- v1204: one dict of parameters and callbacks named by ``subMark``
  (``{"visitorName": "v1", "inviteSuccess": fn, "error": fn}``); each
  callback gets the message (``data["payload"]``, ``data["error"]["msg"]``,
  ``data["data"]``);
- v190307: ``api(params, callback)`` with ``callback(state, payload)`` for
  every message of the request; ``params`` may be ``None``
  (``videoInviteCurrentVisitor(None, cb)``), or left out
  (``logout(cb)``). ``state`` is the 6-digit code; ``payload`` the message's
  ``payload``, or ``{"error": ...}`` / ``{"data": ...}`` for those replies.

Threads and loops: made outside a running event loop (a plain script), the
client runs its own asyncio loop in a daemon thread, ``kefu-imclient``, and
**every callback runs on that thread**; guard shared data accordingly. Made
inside a running loop (asyncio code), it uses that loop and the callbacks
run on it. Every API returns a :class:`Pending`: a
:class:`concurrent.futures.Future` of the request's first answer, set after
its callbacks ran, which asyncio code may ``await``. (In a client on the
caller's loop, ``await`` it; ``result()`` there would block the loop.)

Additions: options ``lang`` (``"en"``: error messages in English; by default
they are Chinese, as the seed prints them), ``token`` (the pairing token; default read from the
plugin's ``plugin.token``), ``dataDir`` (the plugin's data folder), ``kefuWSOpen``
(the link to the server is back), ``quit`` (the plugin is stopping),
``startupTimeout``; ``initInnerCallBack`` also takes ``stateChange(state,
payload)`` and the server's events by name (``sessionAssigned``,
``message``, ``supervisorChange`` ...); APIs ``sendMessage``, ``transferSession``,
``transferCall``, ``completeTransfer``, ``cancelTransfer``,
``monitorCall``, ``whisper``, ``barge``, ``leaveMonitor``, ``setAgentState``, ``logout``,
``getState``, ``getWindow``, ``multipleVideoRefuse``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kefu import aio
from kefu.paths import default_data_dir
from kefu.protocol import ErrorCode, error_body, error_message
from kefu.protocol.errors import DEFAULT_LANG, localize

from .calls import CallTracker
from .events import EventEmitter, RequestError, call_safely
from .launcher import launch_plugin
from .spec_api import Json, Options, Pending, SpecApi, StateCallback
from .token import read_token
from .transport import Transport

__all__ = ["CALLBACK_ALIASES", "IMClient", "Pending"]

#: A callback's other names: the v1204 release note calls kefuCloseVideoSuccess closeVideoSuccess.
CALLBACK_ALIASES = {"kefuCloseVideoSuccess": "closeVideoSuccess"}

log = logging.getLogger("kefu.sdk")


#: The options of ``new IMClient`` that are callbacks (SPEC §3.1), and the additions.
CLIENT_CALLBACKS = ("success", "error", "ssoReady", "kefuReady", "kefuWSClose", "kefuWSOpen", "quit")


def _payload_of(msg: Json) -> Any:
    """The second argument of the v190307 ``callback(state, payload)``."""
    if "payload" in msg:
        return msg["payload"]
    if "error" in msg:
        return {"error": msg["error"]}
    if "data" in msg:
        return {"data": msg["data"]}
    return None


class IMClient(SpecApi):
    """The spec's ``IMClient`` (see the module's docstring)."""

    def __init__(self, options: Options) -> None:
        base = options.get("baseWsUrl")
        sso_to = options.get("ssoTo")
        if not isinstance(base, str) or not base.startswith(("ws://", "wss://")):
            raise ValueError('IMClient needs baseWsUrl, e.g. "ws://127.0.0.1:1040"')
        if not isinstance(sso_to, str) or not sso_to:
            raise ValueError("IMClient needs ssoTo, the address of the customer-service app")
        self.options = dict(options)
        self.baseWsUrl = base
        self.ssoTo = sso_to
        self.videoBarVisible = bool(options.get("videoBarVisible", False))
        #: Connected to the plugin (the spec's sample keeps these two).
        self.linkStatus = False
        #: The agent is logged in (``kefuReady``).
        self.ready = False
        self._calls = CallTracker()
        self._token: str | None = options.get("token")
        data_dir = options.get("dataDir")
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._startup_timeout = float(options.get("startupTimeout", 20.0))
        self._inner = EventEmitter()
        self._transport: Transport | None = None
        self._quitting = False
        self._closed = False
        #: The ``kefu plugin`` process that ``startup`` started, if it did.
        self.plugin_process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = aio.new_event_loop()  # uvloop where installed (D26)
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(self._loop)
                self._loop.call_soon(ready.set)
                try:
                    self._loop.run_forever()
                finally:
                    self._loop.close()

            self._thread = threading.Thread(target=run, name="kefu-imclient", daemon=True)
            self._thread.start()
            ready.wait()
        self._connected: asyncio.Future[bool] | None = None
        self._connect_done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._submit(self._first_connect())

    # --- the loop

    def _submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _option(self, name: str) -> Callable[..., Any] | None:
        cb = self.options.get(name)
        return cb if callable(cb) else None

    def _emit_option(self, name: str, data: Json) -> None:
        cb = self._option(name)
        if cb is not None:
            call_safely(cb, self._localized(data), what=name)

    def _localized(self, msg: Json) -> Json:
        """``msg`` with its error in the client's language (the SDK's own errors too)."""
        error = msg.get("error")
        if isinstance(error, dict) and self.options.get("lang") != "en":
            return {**msg, "error": localize(error, DEFAULT_LANG)}
        return msg

    # --- connecting

    async def _first_connect(self) -> None:
        ok = await self._connect(report=True)
        if not self._connect_done.done():
            self._connect_done.set_result(ok)

    async def _connect(self, *, report: bool) -> bool:
        fut = self._loop.create_future()
        self._connected = fut
        try:
            token = self._token if self._token is not None else read_token(self._data_dir)
            transport = Transport(
                self.baseWsUrl,
                token=token,
                on_push=self._on_push,
                on_close=self._on_close,
                hello=self._hello_params(),
            )
            hello = await transport.open()
        except RequestError as exc:
            fut.set_result(False)
            self.linkStatus = False
            if report:
                self._emit_option("error", {"mark": "client", "subMark": "error", "error": exc.to_wire()})
            return False
        self._transport = transport
        self._quitting = False
        self.linkStatus = True
        self._calls.told(hello.get("payload"))
        fut.set_result(True)
        self._emit_option("success", hello)
        return True

    def wait_connected(self, timeout: float | None = 10.0) -> bool:
        """Block until the first connection attempt ended: True if connected.
        (From a thread other than the client's loop.)"""
        return self._connect_done.result(timeout)

    def _on_close(self, code: int | None, reason: str) -> None:
        self.linkStatus = False
        self.ready = False
        self._transport = None
        if self._quitting or self._closed:
            return
        self._emit_option(
            "error",
            {
                "mark": "client",
                "subMark": "error",
                "error": error_body(
                    ErrorCode.plugin_unreachable, f"the connection to the plugin closed ({code})"
                ),
            },
        )

    def _on_push(self, msg: Json) -> None:
        mark = msg.get("mark")
        sub_mark = msg.get("subMark")
        if mark == "client" and isinstance(sub_mark, str):
            if sub_mark == "kefuReady":
                self.ready = True
                self._calls.told(msg.get("payload"))
            elif sub_mark == "ssoReady":
                self.ready = False
                self._calls.logged_out()
            elif sub_mark == "quit":
                self._quitting = True
            elif sub_mark == "error":
                self._emit_option("error", msg)
                return
            self._emit_option(sub_mark, msg)
        elif mark == "state":
            self._inner.emit("stateChange", msg.get("state"), msg.get("payload"))
        elif sub_mark == "error":
            # an error without a request id: the plugin could not read a frame
            self._emit_option("error", msg)
        elif isinstance(sub_mark, str):
            if mark == "event" and sub_mark == "call":
                self._calls.on_call(msg.get("payload"))
            # initInnerCallBack (chatCloseCB, visitorStreamOffline ...) and the server's events
            self._inner.emit(sub_mark, msg)

    @property
    def currentCall(self) -> Json | None:
        """The call the agent is in (or rings in), as the plugin last told it
        (``hello``, ``kefuReady``, ``getState``) and the call events moved it:
        ``{callId, flow, phase, primary, members, share}``; None out of any call."""
        return self._calls.current

    # --- SPEC §3.2

    def initInnerCallBack(self, callbacks: Options) -> None:
        """Register the callbacks of events pushed from inside the plugin
        (``chatCloseCB``, ``videoCloseCB``, ``visitorStreamOffline``; additions:
        ``stateChange(state, payload)``, ``sessionAssigned``, ``message`` ...)."""
        for name, cb in callbacks.items():
            if callable(cb):
                for old in self._inner.handlers(name):
                    self._inner.off(name, old)
                self._inner.on(name, cb)

    # --- requests

    def _call(
        self, mark: str, options: Options | StateCallback | None, callback: StateCallback | None
    ) -> Pending:
        if callable(options) and callback is None:
            options, callback = None, options  # logout(cb), getState(cb)
        opts = dict(options) if isinstance(options, Mapping) else {}
        callbacks = {k: v for k, v in opts.items() if callable(v)}
        params = {k: v for k, v in opts.items() if not callable(v)}
        pending = Pending()
        if self._closed or self._loop.is_closed():
            # a closed client answers at once, on the caller's thread
            msg = error_message(mark, ErrorCode.plugin_unreachable, "this IMClient is closed", rid="local")
            self._handler(callbacks, callback, pending)(msg)
            return pending
        self._submit(self._request(mark, params, callbacks, callback, pending))
        return pending

    def _hello_params(self) -> Json:
        """``lang`` (errors in Chinese unless "en") and the page's ``videoBarVisible``, if it said."""
        params: Json = {"lang": "en" if self.options.get("lang") == "en" else DEFAULT_LANG}
        if "videoBarVisible" in self.options:
            params["videoBarVisible"] = self.videoBarVisible
        return params

    def _handler(
        self, callbacks: dict[str, Callable[..., Any]], callback: StateCallback | None, pending: Pending
    ) -> Callable[[Json], None]:
        def on_message(msg: Json) -> None:
            msg = self._localized(msg)
            sub_mark = msg.get("subMark")
            if msg.get("mark") == "getState" and sub_mark == "success":
                self._calls.told(msg.get("payload"))
            cb = callbacks.get(sub_mark) if isinstance(sub_mark, str) else None
            if cb is None and sub_mark in CALLBACK_ALIASES:
                cb = callbacks.get(CALLBACK_ALIASES[sub_mark])  # v1204's closeVideoSuccess
            if cb is not None:
                call_safely(cb, msg, what=str(sub_mark))
            if callback is not None:
                call_safely(callback, msg.get("state"), _payload_of(msg), what="state")
            if not pending.done():
                pending.set_result(msg)

        return on_message

    async def _request(
        self,
        mark: str,
        params: Json,
        callbacks: dict[str, Callable[..., Any]],
        callback: StateCallback | None,
        pending: Pending,
    ) -> None:
        handler = self._handler(callbacks, callback, pending)
        try:
            if mark == "startup" and not await self._ensure_plugin(handler):
                return  # _ensure_plugin answered the error
            if self._connected is not None:
                await asyncio.shield(self._connected)
            transport = self._transport
            if transport is None:
                handler(
                    error_message(
                        mark, ErrorCode.plugin_unreachable, "not connected to the plugin", rid="local"
                    )
                )
                return
            await transport.request(mark, params or None, handler)
        except Exception as exc:  # never lose a request silently
            log.exception("%s failed in the SDK", mark)
            if not pending.done():
                handler(error_message(mark, ErrorCode.internal, str(exc), rid="local"))

    # --- startup: launch the plugin when nothing answers (SPEC §4.1)

    async def _ensure_plugin(self, handler: Callable[[Json], None]) -> bool:
        """Connected to a plugin, starting one if nothing answers; else answer the error."""
        if self._connected is not None:
            await asyncio.shield(self._connected)
        if self._transport is not None:
            return True
        try:
            await self._launch_plugin()
        except RequestError as exc:
            handler(error_message("startup", exc.code, exc.msg, rid="local"))
            return False
        self._token = None  # the new plugin wrote a new token
        if await self._connect(report=True):
            return True
        handler(
            error_message(
                "startup", ErrorCode.plugin_unreachable, "the plugin started but refused us", rid="local"
            )
        )
        return False

    async def _launch_plugin(self) -> None:
        data_dir = self._data_dir if self._data_dir is not None else default_data_dir()
        self.plugin_process = await launch_plugin(self.baseWsUrl, self.ssoTo, data_dir, self._startup_timeout)

    # --- closing

    async def aclose(self) -> None:
        """Close the connection to the plugin (the plugin keeps running)."""
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection and stop the client's own thread, if any.
        (From asyncio code, ``await client.aclose()``.)"""
        if self._loop.is_closed():
            return  # closed already
        if self._thread is None:
            self._submit(self.aclose())
            return
        if threading.current_thread() is self._thread:
            # from a callback: the loop cannot wait for itself; close, then stop it
            task = self._loop.create_task(self.aclose())
            task.add_done_callback(lambda _t: self._loop.stop())
            return
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._submit(self.aclose()).result(timeout)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
