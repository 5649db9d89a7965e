"""What happens to a :class:`~kefu.visitor.Visitor`, as typed events.

Two sources: the server's pushes on ``/ws/visitor`` (chat, queue, and the
call pushes of docs/calls.md), turned into events by :func:`from_push`; and
what the visitor itself did or saw (it answered an invitation, joined,
shared its screen, uploaded a photo, its media connected). Every event is a
frozen dataclass with :meth:`describe`, one readable line (the timeline of
``kefu visitor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kefu.protocol.call import CallNotice
from kefu.protocol.wire import Json

__all__ = [
    "CALL_PUSHES",
    "CallAction",
    "CallUpdate",
    "ChatMessage",
    "Disconnected",
    "Invitation",
    "MediaStatus",
    "MediaTrack",
    "PhotoAnswer",
    "PhotoRequest",
    "Problem",
    "QueuePosition",
    "Replaced",
    "ServerError",
    "SessionAssigned",
    "SessionClosed",
    "ShareAnswer",
    "ShareRequest",
    "VisitorEvent",
    "from_push",
]

#: The pushes the visitor acts on by itself (docs/calls.md, visitor socket).
CALL_PUSHES = frozenset({"call", "signal", "shareRequest", "photoRequest"})


def _s(value: object) -> str | None:
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- chat
@dataclass(frozen=True, slots=True)
class QueuePosition:
    position: int | None

    def describe(self) -> str:
        return f"waiting in the queue: position {self.position}"


@dataclass(frozen=True, slots=True)
class SessionAssigned:
    session_id: str | None
    agent_name: str | None

    def describe(self) -> str:
        return f"agent {self.agent_name} took the session {self.session_id}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    sender: str  # "visitor" (our own, from another tab) or "agent"
    text: str

    def describe(self) -> str:
        return f"{'you' if self.sender == 'visitor' else 'agent'}: {self.text}"


@dataclass(frozen=True, slots=True)
class SessionClosed:
    by: str | None
    reason: str | None

    def describe(self) -> str:
        return f"the session was closed by the {self.by} ({self.reason})"


@dataclass(frozen=True, slots=True)
class Replaced:
    def describe(self) -> str:
        return "another connection of this visitor took over"


@dataclass(frozen=True, slots=True)
class ServerError:
    code: str | None
    msg: str | None

    def describe(self) -> str:
        return f"error {self.code}: {self.msg}"


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection to the server ended (``code`` as the server sent it, or None)."""

    code: int | None
    reason: str

    def describe(self) -> str:
        return f"disconnected ({self.code} {self.reason})".replace(" )", ")")


# ---------------------------------------------------------------- calls
@dataclass(frozen=True, slots=True)
class CallUpdate:
    """A ``call`` push: ``what`` is ringing, invited, accepted, cancelled,
    memberJoined, memberLeft or ended, or a transfer's held, resumed, transferred,
    queued (docs/calls.md)."""

    call_id: str
    what: str
    agent_name: str | None = None
    role: str | None = None
    reason: str | None = None
    by: str | None = None
    kind: str | None = None
    name: str | None = None
    position: int | None = None  # ``queued``: the call's place in the team's queue (D50)

    def describe(self) -> str:
        w, c = self.what, self.call_id
        if w == CallNotice.queued:
            return f"call {c}: waiting for an agent, number {self.position} in the queue"
        if w == CallNotice.ringing:
            return f"call {c}: your video request rings for agent {self.agent_name}"
        if w == CallNotice.invited:
            return f"call {c}: agent {self.agent_name} invites you to a video call"
        if w == CallNotice.accepted:
            return f"call {c}: agent {self.agent_name} picked up your video request"
        if w == CallNotice.cancelled:
            return f"call {c}: over before it connected ({self.reason})"
        if w == CallNotice.memberJoined:
            return f"call {c}: {self.kind} {self.name} joined"
        if w == CallNotice.memberLeft:
            return f"call {c}: {self.kind} {self.name} left"
        if w == CallNotice.ended:
            return f"call {c}: ended by {self.by} ({self.reason})"
        return f"call {c}: {w}"


@dataclass(frozen=True, slots=True)
class Invitation:
    """An agent invites the visitor (a ``call`` push with ``what: invited``): what
    :meth:`Visitor.next_invitation <kefu.visitor.Visitor.next_invitation>` gives.
    The timeline has the push itself, as a :class:`CallUpdate`."""

    call_id: str
    agent_name: str | None
    role: str | None

    def describe(self) -> str:
        return f"call {self.call_id}: agent {self.agent_name} invites you to a video call"


CallActionKind = Literal["requested", "accepted", "refused", "busy", "ignored", "joined", "hungUp"]


@dataclass(frozen=True, slots=True)
class CallAction:
    """What the visitor did in a call; ``auto``: by itself (a policy, or as a real visitor would)."""

    call_id: str
    action: CallActionKind
    auto: bool = False

    def describe(self) -> str:
        how = " (automatically)" if self.auto else ""
        text = {
            "requested": "you asked for video",
            "accepted": "you accepted the invitation",
            "refused": "you refused the invitation",
            "busy": "you answered busy (already in a call)",
            "ignored": "you let the invitation ring",
            "joined": "you joined the call",
            "hungUp": "you hung up",
        }[self.action]
        return f"call {self.call_id}: {text}{how}"


@dataclass(frozen=True, slots=True)
class ShareRequest:
    call_id: str
    agent_name: str | None = None

    def describe(self) -> str:
        return f"call {self.call_id}: agent {self.agent_name} asks you to share your screen"


@dataclass(frozen=True, slots=True)
class ShareAnswer:
    """What the visitor answered: open, close, refuse or error."""

    call_id: str
    answer: str
    reason: str | None = None

    def describe(self) -> str:
        text = {
            "open": "you share your screen",
            "close": "you stopped sharing your screen",
            "refuse": "you refused to share your screen",
        }.get(self.answer, f"screen share failed: {self.reason}")
        return f"call {self.call_id}: {text}"


@dataclass(frozen=True, slots=True)
class PhotoRequest:
    call_id: str
    request_id: str
    agent_name: str | None = None

    def describe(self) -> str:
        return f"call {self.call_id}: agent {self.agent_name} takes a photo ({self.request_id})"


@dataclass(frozen=True, slots=True)
class PhotoAnswer:
    """``uploaded`` (with the artifact and the JPEG's size), ``disabled``, ``refuse`` or ``error``."""

    call_id: str
    request_id: str
    answer: str
    reason: str | None = None
    artifact_id: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None

    def describe(self) -> str:
        c = f"call {self.call_id}: photo {self.request_id}"
        if self.answer == "uploaded":
            return f"{c} uploaded ({self.width}x{self.height}, {self.size} bytes)"
        if self.answer == "disabled":
            return f"{c}: photos are disabled here"
        if self.answer == "refuse":
            return f"{c}: refused"
        return f"{c} failed: {self.reason}"


@dataclass(frozen=True, slots=True)
class MediaStatus:
    """The call's media: ``answered`` (an offer), ``connected``, ``paused`` /
    ``resumed`` (our camera), ``closed``, or ``error`` (with ``detail``)."""

    call_id: str
    status: str
    detail: str | None = None

    def describe(self) -> str:
        text = {
            "answered": f"media: answered the offer of {self.detail}",
            "connected": f"media: connected to {self.detail}",
            "paused": f"media: your camera is paused ({self.detail})",
            "resumed": "media: your camera is back",
            "closed": "media: closed",
        }.get(self.status, f"media: {self.status}: {self.detail}")
        return f"call {self.call_id}: {text}"


@dataclass(frozen=True, slots=True)
class MediaTrack:
    """A track of another member started (``added``) or stopped arriving."""

    call_id: str
    member: str
    role: str
    added: bool

    def describe(self) -> str:
        verb = "receiving" if self.added else "no more"
        return f"call {self.call_id}: media: {verb} {self.member}'s {self.role}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the visitor tried by itself failed (logged too)."""

    what: str
    code: str
    msg: str

    def describe(self) -> str:
        return f"problem: {self.what}: {self.code}: {self.msg}"


VisitorEvent = (
    QueuePosition
    | SessionAssigned
    | ChatMessage
    | SessionClosed
    | Replaced
    | ServerError
    | Disconnected
    | CallUpdate
    | CallAction
    | ShareRequest
    | ShareAnswer
    | PhotoRequest
    | PhotoAnswer
    | MediaStatus
    | MediaTrack
    | Problem
)


def from_push(msg: Json) -> VisitorEvent | None:
    """The event for a push of ``/ws/visitor`` (None for those no one need see,
    e.g. ``signal``, or one too malformed to read)."""
    sub = msg.get("subMark")
    p = msg.get("payload")
    p = p if isinstance(p, dict) else {}
    if sub == "queue":
        pos = p.get("position")
        return QueuePosition(pos if isinstance(pos, int) else None)
    if sub == "sessionAssigned":
        return SessionAssigned(_s(p.get("sessionId")), _s(p.get("agentName")))
    if sub == "message":
        text = _s(p.get("text"))
        return ChatMessage("visitor" if p.get("from") == "visitor" else "agent", text or "")
    if sub == "sessionClosed":
        return SessionClosed(_s(p.get("by")), _s(p.get("reason")))
    if sub == "replaced":
        return Replaced()
    if sub == "error":
        err = msg.get("error")
        err = err if isinstance(err, dict) else {}
        return ServerError(_s(err.get("code")), _s(err.get("msg")))
    call_id = _s(p.get("callId"))
    if call_id is None:
        return None
    if sub == "call":
        what = _s(p.get("what"))
        if what is None:
            return None
        return CallUpdate(
            call_id,
            what,
            agent_name=_s(p.get("agentName")),
            role=_s(p.get("role")),
            reason=_s(p.get("reason")),
            by=_s(p.get("by")),
            kind=_s(p.get("kind")),
            name=_s(p.get("name")),
            position=p["position"] if type(p.get("position")) is int else None,
        )
    if sub == "shareRequest":
        return ShareRequest(call_id, _s(p.get("agentName")))
    if sub == "photoRequest":
        request_id = _s(p.get("requestId"))
        return None if request_id is None else PhotoRequest(call_id, request_id, _s(p.get("agentName")))
    return None
