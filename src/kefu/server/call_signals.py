"""The media side of a call: signalling between members, the SFU's signals, a member's media failure.

``signal`` carries a member's SDP and ICE to another joined member (``media:
"hub"``) or turns it into Janus requests (``media: "sfu"``, D22); the server
never reads ``data``. ``mediaFailed`` makes a member whose media could not
connect leave the call (reliability F15).
"""

from __future__ import annotations

import logging
from typing import Any

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, Effect, MemberKind, MemberStatus
from kefu.protocol.sfu import SFU
from kefu.protocol.supervise import media_members
from kefu.protocol.visitor_api import MediaFailedParams, SignalParams

from .call_engine import CallEngine
from .routing import event

__all__ = ["CallSignals"]

log = logging.getLogger("kefu.server.calls")


class CallSignals:
    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        self.queries = engine.queries

    async def signal(self, kind: MemberKind, name: str, p: SignalParams) -> None:
        """Relay a joined member's ``signal`` to the member (or the media server) it names."""
        call = await self.queries.snapshot(p.callId, in_progress=True)
        if call is None:
            raise ApiError("no such call in progress", code=ErrorCode.no_such_call)
        media = media_members(call)  # the joined members and the supervisors (issue 20)
        if (kind.value, name) not in media:
            raise ApiError("not a member of this call", code=ErrorCode.forbidden)
        if p.to.kind == "sfu":
            # SFU mode: the server turns the member's signalling into Janus requests (D22)
            sfu = self.engine.sfu
            if sfu is None or p.to.name != "sfu":
                raise ApiError(
                    'to: {"kind": "sfu", "name": "sfu"}, and only in a call whose media goes '
                    "through the media server",
                    code=ErrorCode.invalid_field,
                )
            await sfu.signal(call.id, (kind.value, name), media, p.data)  # on the room's node (D46)
            return
        to_kind = MemberKind(p.to.kind)
        if (to_kind.value, p.to.name) not in media:
            raise ApiError(f"{p.to.name} is not in this call", code=ErrorCode.forbidden)
        recipient = await self.queries.recipient(to_kind, p.to.name)
        sender = {"kind": kind.value, "name": name}
        async with self.engine.push_hub.transaction() as tx:
            await tx.push(recipient, event("signal", {"callId": call.id, "from": sender, "data": p.data}))

    async def push_signal(self, call_id: str, member: tuple[str, str], data: dict[str, Any]) -> None:
        """A ``signal`` push from the media server to a member (SFU mode)."""
        recipient = await self.queries.recipient(MemberKind(member[0]), member[1])
        async with self.engine.push_hub.transaction() as tx:
            await tx.push(recipient, event("signal", {"callId": call_id, "from": dict(SFU), "data": data}))

    async def media_failed(self, kind: MemberKind, name: str, p: MediaFailedParams) -> dict[str, Any]:
        """``mediaFailed``: the media with a member could not connect (reliability F15).

        A member reports its own media; the primary agent (whose plugin relays the
        media, holding a connection with every member) may name any member. That member
        leaves with the reason ``media_unreachable`` (``Call.media_unreachable``)."""
        target = (MemberKind(p.member.kind), p.member.name) if p.member is not None else (kind, name)

        def fail(call: Call) -> list[Effect]:
            me = call.member(kind, name)
            if me is None or me.status is not MemberStatus.joined:
                raise ApiError("not a member of this call", code=ErrorCode.forbidden)
            if target != (kind, name) and not (kind is MemberKind.agent and name == call.primary):
                raise ApiError("only the call's hub reports another member's media", code=ErrorCode.forbidden)
            return call.media_unreachable(*target)

        await self.engine.run(p.callId, fail)
        log.info(
            "call %s: the media with %s %s did not connect (%s, reported by %s %s): it leaves",
            p.callId,
            target[0].value,
            target[1],
            p.reason or "no reason given",
            kind.value,
            name,
        )
        return {"callId": p.callId, "member": {"kind": target[0].value, "name": target[1]}}
