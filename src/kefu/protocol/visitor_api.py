"""The visitor socket (visitor page or ``kefu.visitor`` ⇄ server ``/ws/visitor``).

The first message is ``hello`` with the visitor's name (the ``visitorName``
that the spec's call APIs use) and, when reconnecting, the ``visitorKey`` the
server gave it and the last ``seq`` it saw; the server answers with
``{visitorId, visitorName, visitorKey, session, lastSeq}`` (``session``: the
visitor's open or queued session, or null), then replays what it missed. A
name that exists needs its key (else ``forbidden``).

``sendMessage`` opens a session (queued, FIFO) when the visitor has none;
``clientMsgId`` makes a retry store nothing new. ``closeSession`` closes it.
Pushes carry ``seq``: ``event`` with ``subMark`` ``queue`` (``{"position": n}``,
when it changes), ``sessionAssigned``, ``message``, ``sessionClosed``, and the
call events of the call issue. See ``docs/protocol.md``, "Server sockets".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from .wire import Api, NoParams, Params

__all__ = [
    "VISITOR_API",
    "AnswerCallParams",
    "CallIdParams",
    "MediaFailedParams",
    "MemberRef",
    "PhotoAnswerParams",
    "ShareAnswerParams",
    "SignalParams",
    "VisitorHelloParams",
    "VisitorMessageParams",
]

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class VisitorHelloParams(Params):
    name: Name
    visitorKey: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    lastSeq: Annotated[int, Field(ge=0, description="the last push seq seen; 0 for none")] = 0


class VisitorMessageParams(Params):
    text: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    clientMsgId: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CallIdParams(Params):
    """``joinCall`` and ``hangup``: the call (docs/calls.md)."""

    callId: Id


class AnswerCallParams(Params):
    """``answerCall``: a visitor answers an invitation."""

    callId: Id
    answer: Literal["accept", "refuse", "busy"]


class MemberRef(Params):
    """A call's member, or (SFU mode, ``signal`` only) the media server ``{"kind": "sfu", "name": "sfu"}``."""

    kind: Literal["agent", "visitor", "sfu"]
    name: Name


class SignalParams(Params):
    """``signal`` (both sockets): WebRTC signalling for one member, opaque to the server."""

    callId: Id
    to: MemberRef
    data: dict[str, Any]


class MediaFailedParams(Params):
    """``mediaFailed`` (both sockets): the media with ``member`` could not connect
    (ICE failed, or not connected within the client's bound). The server ends
    that member's part of the call with the reason ``media_unreachable``
    (a two-party call ends). A visitor reports its own media (``member`` is
    itself or absent); the hub (the primary agent's plugin) names the member."""

    callId: Id
    member: MemberRef | None = None
    reason: Reason | None = None


class ShareAnswerParams(Params):
    """``shareAnswer``: the visitor's screen share started, stopped, or was refused."""

    callId: Id
    answer: Literal["open", "close", "refuse", "error"]
    reason: Reason | None = None


class PhotoAnswerParams(Params):
    """``photoAnswer``: no photo for this request (the photo itself is uploaded over HTTP)."""

    callId: Id
    requestId: Id
    answer: Literal["disabled", "refuse", "error"]
    reason: Reason | None = None


VISITOR_API = Api(
    "visitor",
    {
        "hello": VisitorHelloParams,
        "sendMessage": VisitorMessageParams,
        "closeSession": NoParams,
        "ping": NoParams,
        # calls (docs/calls.md)
        "requestVideo": NoParams,
        "answerCall": AnswerCallParams,
        "joinCall": CallIdParams,
        "hangup": CallIdParams,
        "signal": SignalParams,
        "shareAnswer": ShareAnswerParams,
        "photoAnswer": PhotoAnswerParams,
        # the network (issue 16): fresh TURN credentials; media that cannot connect
        "iceServers": NoParams,
        "mediaFailed": MediaFailedParams,
    },
)
