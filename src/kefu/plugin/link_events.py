"""The agent's link as the plugin hears it: up, down, ended, and the server's pushes.

The server's pushes become SDK pushes: ``state`` as is (and the progress of
the call API request it names), ``sessionClosed`` as
``initInnerCallBack``/``chatCloseCB`` (SPEC §3.2), other events as
``event``/<subMark> (but ``signal``, which is the media's); the end of each
call also as the deprecated ``initInnerCallBack``/``videoCloseCB`` (SPEC §2);
the link's own life as ``client`` events (``kefuWSClose``, ``kefuWSOpen``).
The ``call`` pushes keep the mirror of the calls (:class:`CallMirror`), which
the media follows.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, cast

from kefu.protocol import TopState, event_message
from kefu.protocol.call import MemberStatus
from kefu.protocol.mirror import call_ended
from kefu.protocol.wire import Json, state_message

from .host import PluginCore
from .link import AgentLink
from .media_api import MediaApi
from .upstream import Upstream

__all__ = ["LinkEvents", "LinkListener", "client_event"]

log = logging.getLogger("kefu.plugin")


def client_event(sub_mark: str, payload: object = None) -> Json:
    """A connection event: ``{"v":1,"mark":"client","subMark":...}``."""
    return event_message(sub_mark, payload, mark="client")


class LinkListener:
    """The listener of one link; it goes quiet once the plugin moved on to another link."""

    def __init__(self, events: LinkEvents) -> None:
        self.events = events
        self.link: AgentLink | None = None

    def _current(self) -> bool:
        return self.link is not None and self.events.core.link is self.link

    def link_up(self, auth: Json, recovered: bool) -> None:
        if self._current():
            self.events.link_up_again(auth)

    def link_down(self, reason: str, code: int | None) -> None:
        if self._current():
            self.events.down(reason, code)

    def link_ended(self, reason: str, code: int | None) -> None:
        if self.link is not None and self._current():
            self.events.ended(self.link, reason, code)

    def link_push(self, msg: Json) -> None:
        if self._current():
            self.events.push(msg)


class LinkEvents:
    """What the current link's events do to the plugin and tell the SDKs."""

    def __init__(
        self,
        core: PluginCore,
        upstream: Upstream,
        media_api: MediaApi,
        logged_out: Callable[[AgentLink], Coroutine[Any, Any, None]],
    ) -> None:
        self.core = core
        self.upstream = upstream
        self.media_api = media_api
        self.logged_out = logged_out
        self._closed_calls: OrderedDict[str, None] = OrderedDict()  # videoCloseCB told once per call

    def link_up_again(self, auth: Json) -> None:
        self.upstream.use_ice(auth.get("payload"))
        self.core.set_state(auth.get("state"))
        last = self.core.link.last_seq if self.core.link is not None else 0
        self.core.broadcast(client_event("kefuWSOpen", {"state": self.core.state, "lastSeq": last}))

    def down(self, reason: str, code: int | None) -> None:
        self.core.broadcast(
            client_event("kefuWSClose", {"reason": reason, "code": code, "reconnecting": True})
        )

    def ended(self, link: AgentLink, reason: str, code: int | None) -> None:
        if reason == "logout":
            self.core.spawn(self.logged_out(link))
            return
        self.core.link = None
        self.core.agent = None
        self.core.state = TopState.notLogin.value
        self.core.spawn(link.close())
        self.core.spawn(self.core.end_calls())
        self.core.broadcast(
            client_event("kefuWSClose", {"reason": reason, "code": code, "reconnecting": False})
        )
        self.core.broadcast(self.core.sso_ready())

    def push(self, msg: Json) -> None:
        mark = msg.get("mark")
        sub_mark = msg.get("subMark")
        payload = msg.get("payload")
        out: Json
        if mark == "state":
            self._state_push(msg.get("state"), payload)
            return
        if mark == "event" and isinstance(payload, dict):
            if sub_mark == "signal":
                if self.core.media is not None:
                    self.core.media.on_signal(payload)
                return  # WebRTC signalling is the media's, not the SDKs'
            if sub_mark == "call":
                self._call_push(payload)
            elif sub_mark == "share":
                self.media_api.on_share(payload)
            elif sub_mark == "photo":
                self.media_api.on_photo(payload)
            elif sub_mark == "queue":
                self.core.queue = payload
        if mark == "event" and sub_mark == "sessionClosed":
            out = event_message("chatCloseCB", payload)  # SPEC §3.2
        elif mark == "event" and sub_mark == "supervisor":
            out = event_message("supervisorChange", payload)  # issue 20: a supervisor in the call
        else:
            out = {k: v for k, v in msg.items() if k != "seq"}
        self.core.broadcast(out)

    def _state_push(self, state: object, payload: object) -> None:
        """A state push: to the SDKs as is; to the request of the API it names;
        and when it ends the agent's call, the end of every call request."""
        before = self.core.state
        self.core.set_state(state)
        self.core.broadcast(state_message(cast(str, state), payload))  # forwarded as the server sent it
        if not isinstance(payload, dict):
            return
        self.core.requests.progress(state, payload)
        old = payload.get("old") if isinstance(payload.get("old"), str) else before
        if call_ended(old, state):
            self.core.requests.call_over(state, payload)
            call_id = payload.get("callId")
            if isinstance(call_id, str):
                self.media_api.share_over(call_id, "call ended")
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
        self.core.broadcast(event_message("videoCloseCB", {**info, "state": state}))

    def _call_push(self, payload: Json) -> None:
        view = self.core.mirror.update(payload)
        if view is None:
            log.warning("a call push without callId, primary or members: dropped")
            return
        me = self.core.mirror.me
        if view.ended or (
            me is not None and view.status_of("agent", me) not in (MemberStatus.joined, MemberStatus.invited)
        ):
            self.media_api.share_over(view.call_id, "call ended")
        if self.core.media is not None and me is not None:
            self.core.media.on_call(me, view)
