"""``kefu.sdk.Client``: the plugin's API for asyncio code.

The same API as :class:`~kefu.sdk.imclient.IMClient`, the asyncio way:
snake_case coroutines that return the result or raise a typed error,
``async with`` for the connection's lifetime, ``async for`` over the
plugin's pushes::

    async with Client(token=token) as client:
        await client.start_login("http://127.0.0.1:8600/doLogin?name=a1&pwd=pw&returnTo=")
        await client.set_agent_state("idle")
        async for change in client.states():
            print(change.code, change.flow, change.event)

Errors: every error answer raises :class:`~kefu.sdk.events.RequestError`, an
:class:`~kefu.protocol.errors.ApiError` whose ``code`` is the wire's
``error.code`` (an :class:`~kefu.protocol.errors.ErrorCode`), e.g.
``not_logged_in``, ``no_such_session``, ``login_timeout`` (-1),
``plugin_unreachable`` when the plugin is gone. A closed client refuses reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from kefu.protocol import Code, ErrorCode, parse_code
from kefu.protocol.plugin_api import is_final

from .calls import CallTracker
from .events import EventEmitter, PluginEvent, Reply, RequestError, StateChange, api_error
from .token import read_token
from .transport import Transport

__all__ = ["Client", "EventStream", "StateStream"]

log = logging.getLogger("kefu.sdk")

Json = dict[str, Any]

_DEFAULT_URL = "ws://127.0.0.1:1040"


class EventStream:
    """An ``async for`` over the plugin's pushes from the moment it was made.

    Ends when the client closes. ``kinds`` keeps only pushes of those marks.
    """

    def __init__(self, client: Client, kinds: frozenset[str] | None = None) -> None:
        self._client = client
        self._kinds = kinds
        self._queue: asyncio.Queue[PluginEvent | None] = asyncio.Queue()
        self._done = False
        client._streams.add(self)
        if client.closed:
            self._queue.put_nowait(None)

    def _put(self, event: PluginEvent | None) -> None:
        if event is None or self._kinds is None or event.kind in self._kinds:
            self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> PluginEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._done = True
            self._client._streams.discard(self)
            raise StopAsyncIteration
        return event

    def pending(self) -> list[PluginEvent]:
        """The events that arrived and were not taken yet, without waiting."""
        out: list[PluginEvent] = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if event is None:
                self._queue.put_nowait(None)  # the end stays the end
                break
            out.append(event)
        return out

    async def aclose(self) -> None:
        self._done = True
        self._client._streams.discard(self)


class StateStream:
    """An ``async for`` over the agent's state changes from the moment it was made."""

    def __init__(self, events: EventStream) -> None:
        self._events = events

    def __aiter__(self) -> StateStream:
        return self

    async def __anext__(self) -> StateChange:
        while True:
            change = (await self._events.__anext__()).state_change()
            if change is not None:
                return change

    async def aclose(self) -> None:
        await self._events.aclose()


class Client:
    """The plugin's API for asyncio code (see the module's docstring).

    ``url`` is the plugin's socket; ``token`` the pairing token (default: read
    from ``data_dir``'s ``plugin.token``, ``data_dir`` defaulting to the
    plugin's per-user folder). ``timeout`` bounds each request. ``lang``: the
    language of error messages, ``"zh"`` (the default, as the seed prints them) or ``"en"``.
    """

    def __init__(
        self,
        url: str = _DEFAULT_URL,
        *,
        token: str | None = None,
        data_dir: Path | None = None,
        timeout: float = 30.0,
        open_timeout: float = 10.0,
        lang: str = "zh",
    ) -> None:
        self.url = url
        self._token = token
        self.lang = lang  # of error messages: "zh" (the default) or "en"
        self._data_dir = data_dir
        self.timeout = timeout
        self._transport: Transport | None = None
        self._open_timeout = open_timeout
        self._streams: set[EventStream] = set()
        self.emitter = EventEmitter()
        self.closed = False
        self._opened = False
        #: The agent's state code as last heard (replies and state pushes).
        self.state: Code = Code.notLogin
        #: The agent, once logged in (``kefuReady``).
        self.agent: Json | None = None
        #: The link between the plugin and the server is up (``kefuWSClose`` / ``kefuWSOpen``).
        self.link_up = False
        self.hello: Json = {}
        self._calls = CallTracker()

    # --- lifetime

    async def connect(self) -> Client:
        if self.closed:
            raise RuntimeError("this Client is closed; make a new one")
        if self._opened:
            return self
        token = self._token if self._token is not None else read_token(self._data_dir)
        self._transport = Transport(
            self.url,
            token=token,
            on_push=self._on_push,
            on_close=self._on_close,
            open_timeout=self._open_timeout,
            hello={"lang": self.lang},
        )
        self.hello = await self._transport.open()
        self._calls.told(self.hello.get("payload"))
        self._opened = True
        return self

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._transport is not None:
            await self._transport.close()
        self._end_streams()

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream._put(None)

    # --- pushes

    def _on_push(self, msg: Json) -> None:
        event = PluginEvent.from_message(msg)
        if event.kind == "state":
            change = event.state_change()
            if change is not None:
                self.state = change.code
        elif event.kind == "client":
            payload = event.payload if isinstance(event.payload, dict) else {}
            if event.name == "kefuReady":
                self.agent = payload.get("agent")
                self._calls.told(payload)
                self.link_up = True
                self._note_state(payload.get("state"))
            elif event.name == "kefuWSClose":
                self.link_up = False
                if not payload.get("reconnecting", True):
                    self.agent = None
            elif event.name == "kefuWSOpen":
                self.link_up = True
                self._note_state(payload.get("state"))
            elif event.name == "ssoReady":
                self.agent = None
                self._calls.logged_out()
                self.link_up = False
                self.state = Code.notLogin
        elif event.kind == "event" and event.name == "call":
            self._calls.on_call(event.payload)
        for stream in list(self._streams):
            stream._put(event)
        self.emitter.emit(event.name, event)

    @property
    def current_call(self) -> Json | None:
        """The call the agent is in (or rings in): ``currentCall`` (docs/sdk.md); None out of any."""
        return self._calls.current

    def _on_close(self, code: int | None, reason: str) -> None:
        log.info("connection to the plugin closed (%s %s)", code, reason)
        self.closed = True
        self._end_streams()
        self.emitter.emit("close", code, reason)

    def _note_state(self, value: object) -> None:
        with contextlib.suppress(ValueError):
            self.state = parse_code(value)

    def events(self, *kinds: str) -> EventStream:
        """Every push from now on (``client``, ``initInnerCallBack``, ``event``,
        ``state``), or only those of ``kinds``."""
        return EventStream(self, frozenset(kinds) if kinds else None)

    def states(self) -> StateStream:
        """Every state change of the agent from now on."""
        return StateStream(self.events("state"))

    def on(self, name: str, callback: Callable[[PluginEvent], Any]) -> Callable[[PluginEvent], Any]:
        """Call ``callback(event)`` for each push named ``name`` (a subMark, or ``state``)."""
        return self.emitter.on(name, callback)

    # --- requests

    def stream(self, mark: str, params: Json | None = None) -> AsyncIterator[Reply]:
        """Every message answering one request, up to its last (a call API's progress)."""
        return self._stream(mark, params)

    async def _send(self, mark: str, params: Json | None, handler: Callable[[Json], None]) -> None:
        if self.closed or self._transport is None:
            raise RequestError("the client is not connected", code=ErrorCode.plugin_unreachable)

        def on_message(msg: Json) -> None:
            if mark in ("setAgentState", "logout", "getState") and msg.get("subMark") == "success":
                self._note_state(msg.get("state"))
            handler(msg)

        await self._transport.request(mark, params, on_message)

    async def _stream(self, mark: str, params: Json | None) -> AsyncIterator[Reply]:
        queue: asyncio.Queue[Json] = asyncio.Queue()
        await self._send(mark, params, queue.put_nowait)
        while True:
            reply = Reply.from_message(await queue.get())
            yield reply
            if is_final(mark, reply.sub_mark):
                return

    async def request(self, mark: str, params: Json | None = None) -> Reply:
        """Send ``mark`` and return its first answer; raise on an error answer.

        A call API's later progress is not kept: follow it with :meth:`stream`.
        """
        first: asyncio.Future[Json] = asyncio.get_running_loop().create_future()

        def on_message(msg: Json) -> None:
            if not first.done():
                first.set_result(msg)

        await self._send(mark, params, on_message)
        try:
            async with asyncio.timeout(self.timeout):
                msg = await first
        except TimeoutError:
            raise RequestError(
                f"{mark}: no answer within {self.timeout:g} s", code=ErrorCode.timeout
            ) from None
        reply = Reply.from_message(msg)
        if reply.is_error:
            raise api_error(msg)
        return reply

    # SPEC §4.1 the window, and the login

    async def start_login(self, url: str, *, minimize: bool = False) -> Json:
        """Log in with the spec's login URL; the agent and state (``kefuReady``'s payload)."""
        reply = await self.request("startLogin", {"minimize": minimize, "data": {"url": url}})
        return dict(reply.payload or {})

    async def set_window_size(self, width: int | str, height: int | str) -> Json:
        return dict((await self.request("setWindowSize", {"width": width, "height": height})).payload)

    async def minimize(self) -> Json:
        return dict((await self.request("minimize")).payload)

    async def restore(self) -> Json:
        return dict((await self.request("restore")).payload)

    async def startup(self, client_url: str = "pocprotocol://") -> Json:
        return dict((await self.request("startup", {"clientUrl": client_url})).payload)

    async def get_window(self) -> Json:
        """The window model: ``width``, ``height``, ``minimized``, ``visible``."""
        return dict((await self.request("getWindow")).payload)

    async def quit(self) -> None:
        """Stop the plugin (it logs the agent out and closes every connection)."""
        await self.request("quit")

    # SPEC §4.2 IM

    async def pick_up_session(self, session_id: str) -> Any:
        return (await self.request("pickUpSession", {"session_id": session_id})).payload

    async def chat_close(self, session_id: str | None = None) -> Any:
        params = {"session_id": session_id} if session_id is not None else None
        return (await self.request("chatClose", params)).payload

    async def send_message(self, session_id: str, text: str, *, client_msg_id: str | None = None) -> Any:
        params: Json = {"session_id": session_id, "text": text}
        if client_msg_id is not None:
            params["clientMsgId"] = client_msg_id
        return (await self.request("sendMessage", params)).payload

    async def transfer_session(
        self, session_id: str, agent_name: str | None = None, *, note: str | None = None
    ) -> Any:
        """Addition (issue 20): the session to ``agent_name``, or back to the head of the queue
        when it is None, with a note for whoever takes it; the session as it is now."""
        params: Json = {"session_id": session_id}
        if agent_name is not None:
            params["agentName"] = agent_name
        if note is not None:
            params["note"] = note
        return (await self.request("transferSession", params)).payload

    async def transfer_call(
        self,
        agent_name: str | None = None,
        *,
        team_name: str | None = None,
        mode: str = "blind",
        note: str | None = None,
    ) -> Reply:
        """Addition (issue 20): the agent's call to ``agent_name`` (or to the ready agent of
        ``team_name`` routing would pick), ``"blind"`` or ``"consult"``; the first reply
        (``inviteSuccess``, 007003 / 007004). Follow the rest with ``stream``."""
        params: Json = {"mode": mode}
        if agent_name is not None:
            params["agentName"] = agent_name
        if team_name is not None:
            params["teamName"] = team_name
        if note is not None:
            params["note"] = note
        return await self.request("transferCall", params)

    async def complete_transfer(self) -> Reply:
        """Addition (issue 20): the consult transfer completes (005012)."""
        return await self.request("completeTransfer")

    async def cancel_transfer(self) -> Reply:
        """Addition (issue 20): the transfer is withdrawn (006018 / 006022)."""
        return await self.request("cancelTransfer")

    # additions (issue 20): a supervisor helping in a call

    async def monitor_call(self, call_id: str | None = None, *, agent_name: str | None = None) -> Any:
        """Monitor the call ``call_id``, or the call ``agent_name`` is in (one of the two):
        the supervisor receives everyone's media, nobody receives its. The call's view."""
        params: Json = {"callId": call_id} if call_id is not None else {"agentName": agent_name}
        return (await self.request("monitorCall", params)).payload

    async def whisper(self) -> Any:
        """Only the monitored call's agent hears the supervisor."""
        return (await self.request("whisper")).payload

    async def barge(self) -> Any:
        """Every member of the monitored call hears the supervisor."""
        return (await self.request("barge")).payload

    async def leave_monitor(self) -> Any:
        """Leave the call the supervisor helps in."""
        return (await self.request("leaveMonitor")).payload

    # SPEC §4.6 queries

    async def session_count(self) -> int:
        return int((await self.request("sessionCount")).payload["sessionCount"])

    async def session_state(self) -> list[Json]:
        payload = (await self.request("sessionState")).payload
        return list(payload.get("sessions", [])) if isinstance(payload, dict) else []

    async def is_multiple_video(self) -> bool:
        return bool((await self.request("isMultipleVideo")).data)

    async def is_share_state(self) -> bool:
        return bool((await self.request("isShareState")).data)

    # additions (SPEC §5.3.6)

    async def set_agent_state(self, state: str, reason: str | None = None) -> Code:
        """``"idle"`` (ready, 002000) or ``"busy"`` (not ready, 001000); the new code."""
        params: Json = {"state": state}
        if reason is not None:
            params["reason"] = reason
        return parse_code((await self.request("setAgentState", params)).state)

    async def logout(self) -> Code:
        return parse_code((await self.request("logout")).state)

    async def get_state(self) -> Code:
        """The agent's state code (and :attr:`current_call` brought up to date)."""
        reply = await self.request("getState")
        self._calls.told(reply.payload)
        return parse_code(reply.state)

    # SPEC §4.3–4.5: the call orchestration and the media layer answer these;
    # until they land, each raises ``not_available_yet``. Use ``stream`` to
    # follow a call's progress.

    async def video_pick_up(self, session_id: str) -> Reply:
        return await self.request("videoPickUp", {"session_id": session_id})

    async def multiple_video_pick_up(self) -> Reply:
        return await self.request("multipleVideoPickUp")

    async def multiple_video_refuse(self) -> Reply:
        return await self.request("multipleVideoRefuse")

    async def video_invite_agent(self, agent_name: str) -> Reply:
        return await self.request("videoInviteAgent", {"agentName": agent_name})

    async def callback_to_visitor(self, visitor_name: str, *, start_video: bool = True) -> Reply:
        return await self.request(
            "callbackToVisitor", {"visitorName": visitor_name, "startVideo": start_video}
        )

    async def video_invite_current_visitor(self) -> Reply:
        return await self.request("videoInviteCurrentVisitor")

    async def video_invite_visitor(self, visitor_name: str) -> Reply:
        return await self.request("videoInviteVisitor", {"visitorName": visitor_name})

    async def video_disconnect(self) -> Reply:
        return await self.request("videoDisconnect")

    async def take_photo(self) -> Reply:
        return await self.request("takePhoto")

    async def snapshot(self) -> Reply:
        return await self.request("snapshot")

    async def invite_share(self) -> Reply:
        return await self.request("inviteShare")
