"""Call orchestration (SPEC §4.3): the place the call issue fills in.

The agent socket hands every call API (``videoPickUp``, ``callbackToVisitor``,
``videoInviteAgent`` … :data:`~kefu.protocol.plugin_api.CALL_MARKS`) to
:meth:`CallService.handle`, with the connection to answer on. It may answer
more than once (``inviteSuccess`` then ``acceptSuccess`` …) with
:meth:`Replier.reply`, and changes agent states only through
:meth:`kefu.server.agents.AgentService.apply` (``call_id=`` the call's id), in
the same transaction as the ``calls`` / ``call_members`` rows
(``AgentService.apply(..., tx=tx)``).

Until the call issue builds it, every call API answers ``not_available_yet``.
"""

from __future__ import annotations

from typing import Any, Protocol

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.plugin_api import CALL_MARKS
from kefu.protocol.wire import Request

from .accounts import Agent

__all__ = ["CALL_MARKS", "CallService", "Replier"]


class Replier(Protocol):
    """The connection a request came on."""

    def reply(self, msg: dict[str, Any]) -> None: ...


class CallService:
    async def handle(self, agent: Agent, req: Request, conn: Replier) -> None:
        """Answer one call API request from ``agent``."""
        raise ApiError(
            f"{req.mark} is not available yet: the server's call orchestration is not built",
            code=ErrorCode.not_available_yet,
        )

    async def close(self) -> None:
        """Stop the call timers (ringing timeouts) on shutdown."""
