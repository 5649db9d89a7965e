"""The plugin's mirror of the agent's calls, and the routing of a call's
progress to the SDK requests that wait for it (docs/calls.md, "The plugin").
Pure (no I/O): the plugin and the SDKs (:mod:`kefu.sdk.calls`) both use it.

Theory of operation
-------------------
The server is the authority on calls and states; the plugin mirrors them:

- :class:`CallMirror` keeps what the server's ``event``/``call`` pushes say
  (the call, its primary agent, its members and their status) and the share
  state of each call; it answers ``isMultipleVideo`` and ``isShareState``.
- :class:`CallRequests` keeps the SDK's call API requests that go on after
  their reply (SPEC §4.3): their id on the SDK's side and on the link. Each
  ``state`` push that names a call API (``payload.mark``) and its v1204
  callback (``payload.subMark``) is that API's progress: every open request of
  that mark hears it under its own id, unless the change is the one its reply
  told already (``payload.requestId`` is its upstream id). When the agent's
  call ends (its state leaves 003/004/006/007/008 for 000/001/002/005), every
  request still open gets one final message: the ending change's callback if
  that is a final callback of its mark, else ``kefuCloseVideoSuccess`` (the
  meeting ended, SPEC §2 v1204, §4.3 v1220).

A request is registered before it is sent upstream, so a change that arrives
before the reply (the server pushes and replies on separate paths) is held
and told after the reply; if the reply is final (an error), what was held is
dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kefu.protocol.call import CallNotice, CallPhase, MemberStatus
from kefu.protocol.codes import TopState, top_state
from kefu.protocol.machine import IN_CALL, OUT_OF_CALL
from kefu.protocol.plugin_api import is_final
from kefu.protocol.wire import Json, reply_message

__all__ = [
    "CallMirror",
    "CallRequests",
    "CallView",
    "OpenRequest",
    "call_ended",
]


def _top(code: object) -> TopState | None:
    if not isinstance(code, str):
        return None
    try:
        return top_state(code)
    except ValueError:
        return None


def call_ended(old: object, new: object) -> bool:
    """Whether a change from ``old`` to ``new`` takes the agent out of its call
    (the machine's in-call states to its out-of-call ones)."""
    return _top(old) in IN_CALL and _top(new) in OUT_OF_CALL


Send = Callable[[Json], None]


@dataclass(eq=False)
class OpenRequest:
    """An SDK's request that goes on after its reply (a call API, ``inviteShare``)."""

    send: Send  # to the SDK that asked (the state code is added by the connection)
    rid: str  # the SDK's request id
    mark: str
    upstream: str | None  # the link's request id (the server's ``requestId``)
    on_done: Callable[[], None]
    replied: bool = False
    closed: bool = False
    held: list[Json] = field(default_factory=list)

    def tell(self, sub_mark: str, state: str | None, payload: Any = None, **extra: Any) -> None:
        """Send a progress message; the last one if ``sub_mark`` is final for the mark."""
        if self.closed:
            return
        msg = reply_message(self.mark, sub_mark, payload, rid=self.rid, state=state)
        msg.update(extra)
        if not self.replied:
            self.held.append(msg)
            return
        self.send(msg)
        if is_final(self.mark, sub_mark):
            self.close()

    def reply(self, msg: Json) -> None:
        """The server's reply (the first answer); then what was held."""
        if self.closed:
            return
        self.send(msg)
        sub_mark = msg.get("subMark")
        if is_final(self.mark, sub_mark if isinstance(sub_mark, str) else None):
            self.close()
            return
        self._release()

    def accepted(self) -> None:
        """The server took the request, with nothing to tell the SDK yet: tell what was held."""
        if not self.closed:
            self._release()

    def _release(self) -> None:
        self.replied = True
        held, self.held = self.held, []
        for m in held:
            if self.closed:
                break
            self.send(m)
            sub = m.get("subMark")
            if is_final(self.mark, sub if isinstance(sub, str) else None):
                self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.held.clear()
            self.on_done()


class CallRequests:
    """The open call API requests of the agent (see the module's docstring)."""

    def __init__(self) -> None:
        self._open: list[OpenRequest] = []

    def __iter__(self) -> Any:
        return iter(list(self._open))

    def open(
        self, send: Send, rid: str, mark: str, upstream: str | None, on_done: Callable[[], None]
    ) -> OpenRequest:
        req = OpenRequest(send, rid, mark, upstream, on_done)

        def done() -> None:
            if req in self._open:
                self._open.remove(req)
            on_done()

        req.on_done = done
        self._open.append(req)
        return req

    def close_where(self, which: Callable[[OpenRequest], bool]) -> None:
        """Close these requests without a word (their SDK left, the agent logged out)."""
        for req in [r for r in self._open if which(r)]:
            req.close()

    def progress(self, state: object, payload: Json) -> None:
        """A ``state`` push naming a call API: that API's open requests hear it."""
        mark, sub_mark = payload.get("mark"), payload.get("subMark")
        if not isinstance(mark, str) or not isinstance(sub_mark, str):
            return
        code = state if isinstance(state, str) else None
        for req in list(self._open):
            if req.mark != mark or req.closed:
                continue
            if req.upstream is not None and payload.get("requestId") == req.upstream:
                continue  # the reply to that request told this change already
            req.tell(sub_mark, code, payload)

    def call_over(self, state: object, payload: Json) -> None:
        """The agent's call ended with this change: every open call request ends."""
        sub_mark = payload.get("subMark")
        code = state if isinstance(state, str) else None
        for req in list(self._open):
            if req.mark == "inviteShare" or req.closed:
                continue  # a share request ends with the share (CallMirror)
            final = sub_mark if isinstance(sub_mark, str) and is_final(req.mark, sub_mark) else None
            req.tell(final or "kefuCloseVideoSuccess", code, payload)


@dataclass
class CallView:
    """A call as the server's ``call`` pushes describe it."""

    call_id: str
    primary: str
    flow: str | None
    phase: str | None
    members: list[Json]
    share: bool = False  # the visitor's screen share is on (inviteShare open … close)
    share_epoch: int = 0  # counts the shares: one more each time a share opens
    screen_epoch: int = -1  # the share during which the hub last saw a screen track arrive
    media: str = "hub"  # how the call's media goes: the primary agent's hub, or the media server ("sfu")
    #: the transfer in progress (issue 20): ``{kind, from, to, note, phase}``, or None
    transfer: Json | None = None
    supervisors: dict[str, str] = field(default_factory=dict)  # supervisor → mode (issue 20)

    def status_of(self, kind: str, name: str) -> MemberStatus | None:
        """The member's status (None: not a member, or a status this side does not know)."""
        for m in self.members:
            if m.get("kind") == kind and m.get("name") == name:
                status = m.get("status")
                if not isinstance(status, str):
                    return None
                try:
                    return MemberStatus(status)
                except ValueError:
                    return None
        return None

    def joined(self, kind: str | None = None) -> list[tuple[str, str]]:
        """``(kind, name)`` of the joined members."""
        out = []
        for m in self.members:
            k, n = m.get("kind"), m.get("name")
            if m.get("status") == MemberStatus.joined and isinstance(k, str) and isinstance(n, str):
                if kind is None or k == kind:
                    out.append((k, n))
        return out

    @property
    def ended(self) -> bool:
        return self.phase == CallPhase.ended

    def to_json(self) -> Json:
        """The call as an SDK is told it (``currentCall``: docs/sdk.md)."""
        return {
            "callId": self.call_id,
            "flow": self.flow,
            "phase": self.phase,
            "primary": self.primary,
            "members": [dict(m) for m in self.members],
            "share": self.share,
            "transfer": self.transfer,
        }

    @property
    def first_visitor(self) -> str | None:
        visitors = self.joined("visitor")
        return visitors[0][1] if visitors else None


class CallMirror:
    """The agent's calls as the server last described them."""

    def __init__(self) -> None:
        self.calls: dict[str, CallView] = {}
        self.me: str | None = None

    def clear(self) -> None:
        self.calls.clear()

    def update(self, payload: Json) -> CallView | None:
        """A ``call`` push: the call's view now (None for a malformed push,
        without callId, primary or members: the caller logs and drops it)."""
        call_id, primary = payload.get("callId"), payload.get("primary")
        members = payload.get("members")
        if not isinstance(call_id, str) or not isinstance(primary, str) or not isinstance(members, list):
            return None
        phase = payload.get("phase")
        if payload.get("what") == CallNotice.ended:
            phase = CallPhase.ended.value
        flow = payload.get("flow")
        view = self.calls.get(call_id)
        if view is None:
            view = CallView(call_id, primary, None, None, [])
            self.calls[call_id] = view
        view.primary = primary
        view.flow = flow if isinstance(flow, str) else view.flow
        view.phase = phase if isinstance(phase, str) else view.phase
        view.members = [m for m in members if isinstance(m, dict)]
        if payload.get("media") in ("hub", "sfu"):
            view.media = payload["media"]
        transfer = payload.get("transfer")
        view.transfer = transfer if isinstance(transfer, dict) else None
        helping = payload.get("supervisors")
        if isinstance(helping, list):
            view.supervisors = {
                s["name"]: s["mode"]
                for s in helping
                if isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("mode"), str)
            }
        if view.ended:
            view.share = False
            del self.calls[call_id]
        elif payload.get("what") == "left":  # a supervisor's part ended (issue 20); the call goes on
            del self.calls[call_id]
        return view

    def forget(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    def current_json(self) -> Json | None:
        """:meth:`current` as an SDK is told it, None out of any call."""
        call = self.current()
        return call.to_json() if call is not None else None

    def seed(self, current: object) -> None:
        """Start again from a ``currentCall`` the plugin told (an SDK's mirror)."""
        self.calls.clear()
        if isinstance(current, dict):
            view = self.update(current)
            if view is not None and not view.ended:
                view.share = current.get("share") is True

    def current(self) -> CallView | None:
        """The call this agent is in (joined), else the one it rings or calls in."""
        if self.me is None:
            return None
        mine = [c for c in self.calls.values() if c.status_of("agent", self.me) is MemberStatus.joined]
        if mine:
            return mine[-1]
        ringing = [c for c in self.calls.values() if c.status_of("agent", self.me) is MemberStatus.invited]
        return ringing[-1] if ringing else None

    def is_multiple_video(self, state: str) -> bool:
        """SPEC §4.6 (v1211): a three-party video is on.

        The primary agent is in one exactly in 008xxx. The invited third agent
        stays in 006014 (the spec gives it no three-party code), so for it the
        answer is whether its call has three joined members (decision)."""
        if _top(state) is TopState.threeParty:
            return True
        call = self.current()
        if call is None or self.me is None or call.primary == self.me:
            return False
        return call.status_of("agent", self.me) is MemberStatus.joined and len(call.joined()) >= 3

    def is_share_state(self) -> bool:
        """SPEC §4.6 (v1211): a screen share is on (between its ``open`` and ``close``)."""
        call = self.current()
        return call is not None and call.share
