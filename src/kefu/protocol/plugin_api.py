"""The control protocol of the plugin (SDK ⇄ ``ws://127.0.0.1:1040``).

Marks are the spec's API names (SPEC §4), with the spec's parameter names;
the additions are marked. A request's reply is one or more messages with the
same ``id``: ``subMark`` names the v1204 callback to call and ``state`` feeds
the v190307 ``callback(state, payload)``. Pushes without ``id``:
``initInnerCallBack`` events (``chatCloseCB``, ``videoCloseCB``,
``visitorStreamOffline``, ...), ``state`` pushes, ``event`` pushes (the
server's other events, e.g. ``sessionAssigned``, ``message``) and the
connection events of :data:`CLIENT_EVENTS` (``mark: "client"``).

Where a mark is answered: :data:`LOCAL_MARKS` by the plugin itself,
:data:`FORWARDED_MARKS` by the server (the plugin forwards them on the
agent's link), :data:`MEDIA_MARKS` by the media layer. A request has one
reply, except the call APIs (:data:`CALL_MARKS`) whose progress messages
share the request's id until :func:`is_final` says the request is over (the
server answers each request once and reports a call's later changes as
``state`` pushes naming the API and the callback; the plugin turns those
into progress messages of the SDK's request).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from .wire import Api, NoParams, Params

__all__ = [
    "CALL_FINAL_SUBMARKS",
    "CALL_MARKS",
    "CLIENT_EVENTS",
    "DATA_MARKS",
    "FORWARDED_MARKS",
    "LOCAL_MARKS",
    "MEDIA_MARKS",
    "PLUGIN_API",
    "SUPERVISE_MARKS",
    "CallVisitorParams",
    "ChatCloseParams",
    "HelloParams",
    "LoginData",
    "MonitorCallParams",
    "SendMessageParams",
    "SessionParams",
    "SetAgentStateParams",
    "SetWindowSizeParams",
    "StartLoginParams",
    "StartupParams",
    "TransferCallParams",
    "TransferSessionParams",
    "VideoInviteAgentParams",
    "VisitorNameParams",
    "is_final",
]

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class HelloParams(Params):
    """First message of a client (addition): the pairing token for non-browser clients."""

    token: Annotated[str, StringConstraints(max_length=256)] | None = None
    client: Annotated[str, StringConstraints(max_length=64)] | None = None
    #: the language of error messages (addition): "zh" (the default, as the seed prints them) or "en"
    lang: Literal["zh", "en"] | None = None
    #: the page's ``new IMClient({videoBarVisible})``: show the window's video bar (addition)
    videoBarVisible: bool | None = None


class LoginData(Params):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class StartLoginParams(Params):
    """SPEC §4.1 ``startLogin``: ``data.url`` is required."""

    minimize: bool = False
    data: LoginData


class SetWindowSizeParams(Params):
    """SPEC §4.1 ``setWindowSize``: strings as in the spec's sample, or numbers."""

    width: str | int
    height: str | int

    @field_validator("width", "height")
    @classmethod
    def _pixels(cls, value: str | int) -> int:
        if isinstance(value, str):
            if not value.isascii() or not value.isdigit() or len(value) > 5:
                raise ValueError('a size in pixels, e.g. "300"')
            value = int(value)
        if not 1 <= value <= 16384:
            raise ValueError("a size from 1 to 16384 pixels")
        return value


class StartupParams(Params):
    """SPEC §4.1 ``startup``: only the plugin's own URL scheme."""

    clientUrl: Literal["pocprotocol://"] = "pocprotocol://"


class SessionParams(Params):
    """``pickUpSession`` and ``videoPickUp``: ``session_id`` is required (SPEC §4.2, §4.3)."""

    session_id: Id


class ChatCloseParams(Params):
    """``chatClose``: the current session, or the one named (addition)."""

    session_id: Id | None = None


class SendMessageParams(Params):
    """``sendMessage`` (addition): a text message in one of the agent's sessions."""

    session_id: Id
    text: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    clientMsgId: Id | None = None  # idempotency key: a retry with the same key is stored once


class TransferSessionParams(Params):
    """``transferSession`` (addition, issue 20): the agent's open session to the agent named,
    or back to the head of the queue when ``agentName`` is absent, with a note for whoever
    takes it (the visitor never sees the note)."""

    session_id: Id
    agentName: Name | None = None
    note: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None


class CallVisitorParams(Params):
    """SPEC §4.3 ``callbackToVisitor``."""

    visitorName: Name
    startVideo: bool = True


class VisitorNameParams(Params):
    """SPEC §4.3 ``videoInviteVisitor``."""

    visitorName: Name


class VideoInviteAgentParams(Params):
    """SPEC §4.3 ``videoInviteAgent``."""

    agentName: Name


class TransferCallParams(Params):
    """``transferCall`` (addition, issue 20): the agent's call to the agent named, or to the
    ready agent of the team named that routing would pick; ``blind`` (the target rings, the
    call goes to it on its pick-up) or ``consult`` (the visitor on hold, the agents talk, then
    ``completeTransfer`` or ``cancelTransfer``); a note for the target."""

    agentName: Name | None = None
    teamName: Name | None = None
    mode: Literal["blind", "consult"] = "blind"
    note: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TransferCallParams:
        if (self.agentName is None) == (self.teamName is None):
            raise ValueError("name the target: agentName or teamName, one of them")
        return self


class MonitorCallParams(Params):
    """``monitorCall`` (addition, issue 20): a supervisor starts monitoring the call named,
    or the call its agent is in; exactly one of the two."""

    callId: Id | None = None
    agentName: Name | None = None


class SetAgentStateParams(Params):
    """``setAgentState`` (addition): ready (``idle``) or not ready (``busy``)."""

    state: Literal["idle", "busy"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = Field(default=None)


#: The call APIs (SPEC §4.3): their replies carry state codes.
CALL_MARKS = frozenset(
    {
        "videoPickUp",
        "multipleVideoPickUp",
        "multipleVideoRefuse",
        "videoInviteAgent",
        "callbackToVisitor",
        "videoInviteCurrentVisitor",
        "videoInviteVisitor",
        "videoDisconnect",
        # call transfers (addition, issue 20)
        "transferCall",
        "completeTransfer",
        "cancelTransfer",
    }
)

#: A supervisor's help in a call (addition, issue 20; docs/calls.md): one reply each.
SUPERVISE_MARKS = frozenset({"monitorCall", "whisper", "barge", "leaveMonitor"})

PLUGIN_API = Api(
    "plugin",
    {
        "hello": HelloParams,  # addition: pairing, version
        # SPEC §4.1 the window
        "startLogin": StartLoginParams,
        "setWindowSize": SetWindowSizeParams,
        "minimize": NoParams,
        "startup": StartupParams,
        "restore": NoParams,
        "quit": NoParams,
        "getWindow": NoParams,  # addition: the window's geometry and state
        # SPEC §4.2 IM
        "pickUpSession": SessionParams,
        "chatClose": ChatCloseParams,
        "sendMessage": SendMessageParams,  # addition
        "transferSession": TransferSessionParams,  # addition (issue 20)
        # SPEC §4.3 audio and video
        "videoPickUp": SessionParams,
        "multipleVideoPickUp": NoParams,
        "multipleVideoRefuse": NoParams,  # addition: the invited agent declines
        "videoInviteAgent": VideoInviteAgentParams,
        "callbackToVisitor": CallVisitorParams,
        "videoInviteCurrentVisitor": NoParams,
        "videoInviteVisitor": VisitorNameParams,
        "videoDisconnect": NoParams,
        "transferCall": TransferCallParams,  # addition (issue 20)
        "completeTransfer": NoParams,  # addition (issue 20)
        "cancelTransfer": NoParams,  # addition (issue 20)
        # additions (issue 20): a supervisor in a call
        "monitorCall": MonitorCallParams,
        "whisper": NoParams,
        "barge": NoParams,
        "leaveMonitor": NoParams,
        # SPEC §4.4, §4.5
        "takePhoto": NoParams,
        "snapshot": NoParams,
        "inviteShare": NoParams,
        # SPEC §4.6 queries
        "sessionCount": NoParams,
        "sessionState": NoParams,
        "isMultipleVideo": NoParams,
        "isShareState": NoParams,
        # additions (SPEC §5.3.6)
        "setAgentState": SetAgentStateParams,
        "logout": NoParams,
        "getState": NoParams,
    },
)

#: Answered by the plugin itself: pairing, login, the window (SPEC §4.1) and
#: the two boolean queries (SPEC §4.6), which it answers from its mirror.
LOCAL_MARKS = frozenset(
    {
        "hello",
        "startLogin",
        "setWindowSize",
        "minimize",
        "startup",
        "restore",
        "quit",
        "getWindow",
        "isMultipleVideo",
        "isShareState",
    }
)

#: Replies of the form ``{"subMark": "success", "data": <bool>}`` (SPEC §4.6, v1211).
DATA_MARKS = frozenset({"isMultipleVideo", "isShareState"})

#: Answered by the plugin's media part (SPEC §4.4, §4.5): ``snapshot`` in the
#: plugin itself; ``takePhoto`` and ``inviteShare`` through the server, whose
#: ``photo`` / ``share`` events the plugin turns into the request's answers.
MEDIA_MARKS = frozenset({"takePhoto", "snapshot", "inviteShare"})

#: Forwarded to the server on the agent's link (``kefu.protocol.agent_api``).
FORWARDED_MARKS = frozenset(
    {
        "pickUpSession",
        "chatClose",
        "sendMessage",
        "transferSession",
        "setAgentState",
        "logout",
        "sessionCount",
        "sessionState",
        "getState",
    }
    | CALL_MARKS
    | SUPERVISE_MARKS
)

#: Connection events pushed as ``{"mark": "client", "subMark": ...}``. The
#: first three are the spec's (SPEC §3.1); ``kefuWSOpen`` (the link to the
#: server is back) and ``quit`` (the plugin is stopping) are additions.
CLIENT_EVENTS = frozenset({"ssoReady", "kefuReady", "kefuWSClose", "kefuWSOpen", "quit"})

#: The callbacks that end a call API's request (SPEC §4.3): after one of
#: these no more progress comes under that request's id.
CALL_FINAL_SUBMARKS: dict[str, frozenset[str]] = {
    "videoPickUp": frozenset({"error", "timeoutDisconnect", "visitorDisconnect", "kefuCloseVideoSuccess"}),
    "multipleVideoPickUp": frozenset(
        {"error", "exitSuccess", "kefuCloseVideoSuccess", "timeoutDisconnect", "refuseSuccess"}
    ),
    "multipleVideoRefuse": frozenset({"error", "success"}),
    "videoInviteAgent": frozenset(
        {
            "error",
            "exitSuccess",
            "kefuCloseVideoSuccess",
            "visitorRefuse",
            "videoBusyMark",
            "timeoutDisconnect",
        }
    ),
    "callbackToVisitor": frozenset(
        {
            "error",
            "visitorRefuse",
            "videoBusyMark",
            "timeoutDisconnect",
            "visitorDisconnect",
            "kefuCloseVideoSuccess",
        }
    ),
    "videoInviteCurrentVisitor": frozenset(
        {
            "error",
            "visitorRefuse",
            "videoBusyMark",
            "timeoutDisconnect",
            "visitorDisconnect",
            "kefuCloseVideoSuccess",
        }
    ),
    "videoInviteVisitor": frozenset(
        {
            "error",
            "visitorRefuse",
            "videoBusyMark",
            "timeoutDisconnect",
            "visitorDisconnect",
            "kefuCloseVideoSuccess",
        }
    ),
    "videoDisconnect": frozenset({"error", "success"}),
    # issue 20: a transfer's request lives until the call is the target's, or back with the agent
    "transferCall": frozenset(
        {
            "error",
            "transferSuccess",
            "queued",  # blind to a team none of whose agents is ready: it waits there (D50)
            "completeSuccess",
            "refuse",
            "timeoutDisconnect",
            "cancelSuccess",
            "targetLeft",
            "visitorDisconnect",
            "kefuCloseVideoSuccess",
        }
    ),
    "completeTransfer": frozenset({"error", "completeSuccess"}),
    "cancelTransfer": frozenset({"error", "cancelSuccess"}),
    # SPEC §4.5: ``open`` when the visitor's share is on, ``close`` when it stops
    # (or the call ends), ``error`` when the invitation failed
    "inviteShare": frozenset({"error", "close"}),
}


def is_final(mark: str, sub_mark: str | None) -> bool:
    """Whether a reply with ``sub_mark`` is the last message of a ``mark`` request.

    Every API but the call APIs and ``inviteShare`` answers once. Those
    live on through their progress callbacks until one in
    :data:`CALL_FINAL_SUBMARKS`.
    """
    finals = CALL_FINAL_SUBMARKS.get(mark)
    if finals is None:
        return True
    return sub_mark in finals
