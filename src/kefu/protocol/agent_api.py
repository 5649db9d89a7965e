"""The agent socket (plugin ⇄ server ``/ws/agent``).

The plugin is the agent's link to the server. Its first message is ``auth``
with the token from login (never in the URL) and the last ``seq`` it saw;
the server answers ``auth``/``success`` with the agent's profile and state,
then replays every push after that ``seq`` exactly once. A plugin that makes
media also says, when it logs in, which calls' media it holds
(``mediaCalls``): a connected call of the agent that is not among them lost
its media with the previous plugin process and ends (``agent_media_lost``). Requests use the
SDK's own marks where one exists (the plugin forwards them), so a call API
reaches the server under the name the spec gives it.

Server pushes carry ``seq`` (per agent, gap-free, persisted):
``state`` (the agent's code changed) and ``event`` with a ``subMark``:
``sessionAssigned``, ``message``, ``sessionClosed``, ``sessionTransferred``
(issue 20: a session left this agent, to another or back to the queue),
``queue`` (the waiting sessions changed), and the call events of the call
orchestration.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from .plugin_api import (
    CallVisitorParams,
    ChatCloseParams,
    MonitorCallParams,
    SendMessageParams,
    SessionParams,
    SetAgentStateParams,
    TransferCallParams,
    TransferSessionParams,
    VideoInviteAgentParams,
    VisitorNameParams,
)
from .visitor_api import MediaFailedParams, SignalParams
from .wire import Api, NoParams, Params

__all__ = ["AGENT_API", "AuthParams"]


class AuthParams(Params):
    """First message on ``/ws/agent``: the login token, and where to resume."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    lastSeq: Annotated[int, Field(ge=0, description="the last push seq seen; 0 for none")] = 0
    mediaCalls: (
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
            Field(
                max_length=16,
                description="a plugin that makes media, on login: the calls whose media it holds now",
            ),
        ]
        | None
    ) = None


AGENT_API = Api(
    "agent",
    {
        "auth": AuthParams,
        "pickUpSession": SessionParams,
        "chatClose": ChatCloseParams,
        "sendMessage": SendMessageParams,
        "transferSession": TransferSessionParams,  # issue 20
        "setAgentState": SetAgentStateParams,
        "logout": NoParams,
        "sessionCount": NoParams,
        "sessionState": NoParams,
        "getState": NoParams,
        "ping": NoParams,
        # SPEC §4.3: the call orchestration (the call issue) answers these
        "videoPickUp": SessionParams,
        "multipleVideoPickUp": NoParams,
        "multipleVideoRefuse": NoParams,
        "videoInviteAgent": VideoInviteAgentParams,
        "callbackToVisitor": CallVisitorParams,
        "videoInviteCurrentVisitor": NoParams,
        "videoInviteVisitor": VisitorNameParams,
        "videoDisconnect": NoParams,
        "transferCall": TransferCallParams,  # issue 20
        "completeTransfer": NoParams,
        "cancelTransfer": NoParams,
        # issue 20: a supervisor in a call (kefu.server.supervise)
        "monitorCall": MonitorCallParams,
        "whisper": NoParams,
        "barge": NoParams,
        "leaveMonitor": NoParams,
        # calls: signalling and the visitor's side of the media APIs (docs/calls.md)
        "signal": SignalParams,
        "inviteShare": NoParams,
        "takePhoto": NoParams,
        # the network (issue 16): fresh TURN credentials; media that cannot connect
        "iceServers": NoParams,
        "mediaFailed": MediaFailedParams,
    },
)
