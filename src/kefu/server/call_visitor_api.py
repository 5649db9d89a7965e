"""The visitor's side of calls (SPEC §5; docs/calls.md): ask for video, answer, join, hang up,
and the answers to the agent's share and photo requests (SPEC §4.4, §4.5)."""

from __future__ import annotations

from typing import Any

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, MemberKind
from kefu.protocol.machine import Event, Flow, allowed
from kefu.protocol.visitor_api import (
    AnswerCallParams,
    CallIdParams,
    MediaFailedParams,
    PhotoAnswerParams,
    ShareAnswerParams,
    SignalParams,
)

from .call_engine import CallEngine
from .call_signals import CallSignals
from .hub import agent_key
from .media import answer_photo_request
from .routing import event
from .visitors import Visitor

__all__ = ["VisitorCallApi"]

#: ``shareAnswer``'s answer → the ``share`` push's state for the agent
_SHARE_STATE = {"open": "open", "close": "close", "refuse": "refused", "error": "error"}


class VisitorCallApi:
    def __init__(self, engine: CallEngine, signals: CallSignals) -> None:
        self.engine = engine
        self.signals = signals
        self.queries = engine.queries

    async def request_video(self, visitor: Visitor) -> dict[str, Any]:
        """The visitor asks for video in its session: the session's agent rings (004001)."""
        found = await self.queries.session_with_agent(visitor)
        if found is None:
            raise ApiError("ask for video in a conversation with an agent", code=ErrorCode.no_such_session)
        session_id, agent = found
        if await self.queries.call_of(MemberKind.visitor, visitor.name) is not None:
            raise ApiError("already in a call", code=ErrorCode.invalid_state)
        can_ring = allowed(agent.state, Flow.visitorInvite, Event.ring) is not None
        if not can_ring or not await self.engine.push_hub.bus.present(agent_key(agent.id)):
            raise ApiError(
                "the agent cannot take a video call now; try again later", code=ErrorCode.invalid_state
            )
        out = await self.engine.create(
            lambda call_id: Call.visitor_request(call_id, agent.name, visitor.name),
            agent,
            visitor,
            session_id,
        )
        assert out.call is not None  # a new call
        return {"callId": out.call.id}

    async def answer(self, visitor: Visitor, p: AnswerCallParams) -> dict[str, Any]:
        await self.queries.require_visitor_member(visitor, p.callId)
        await self.engine.run(p.callId, lambda call: call.visitor_answer(visitor.name, p.answer))
        return {"callId": p.callId, "media": self.engine.media_mode.value}

    async def join(self, visitor: Visitor, p: CallIdParams) -> dict[str, Any]:
        await self.queries.require_visitor_member(visitor, p.callId)
        await self.engine.run(p.callId, lambda call: call.visitor_join(visitor.name))
        return {"callId": p.callId, "media": self.engine.media_mode.value}

    async def hangup(self, visitor: Visitor, p: CallIdParams) -> dict[str, Any]:
        await self.queries.require_visitor_member(visitor, p.callId)
        await self.engine.run(p.callId, lambda call: call.hangup(MemberKind.visitor, visitor.name))
        return {"callId": p.callId}

    async def signal(self, visitor: Visitor, p: SignalParams) -> None:
        await self.signals.signal(MemberKind.visitor, visitor.name, p)

    async def media_failed(self, visitor: Visitor, p: MediaFailedParams) -> dict[str, Any]:
        await self.queries.require_visitor_member(visitor, p.callId)
        return await self.signals.media_failed(MemberKind.visitor, visitor.name, p)

    async def _primary_of(self, visitor: Visitor, call_id: str) -> int:
        await self.queries.require_visitor_member(visitor, call_id)
        return await self.queries.primary_agent_id(call_id)

    async def share_answer(self, visitor: Visitor, p: ShareAnswerParams) -> None:
        primary = await self._primary_of(visitor, p.callId)
        payload = {
            "callId": p.callId,
            "state": _SHARE_STATE[p.answer],
            "reason": p.reason,
            "visitorName": visitor.name,
        }
        async with self.engine.push_hub.transaction() as tx:
            await tx.push(agent_key(primary), event("share", payload))

    async def photo_answer(self, visitor: Visitor, p: PhotoAnswerParams) -> None:
        primary = await self._primary_of(visitor, p.callId)
        if p.answer == "disabled":
            # SPEC §4.4: exactly the spec's error
            err: dict[str, Any] = {"type": "snapShotDisabled", "msg": "snapShotDisabled"}
        elif p.answer == "refuse":
            err = {"code": ErrorCode.photo_refused.value, "msg": p.reason or "the visitor refused the photo"}
        else:
            err = {"code": ErrorCode.no_media.value, "msg": p.reason or "the visitor could not take a photo"}
        payload = {"callId": p.callId, "requestId": p.requestId, "error": err, "visitorName": visitor.name}
        async with self.engine.push_hub.transaction() as tx:
            # one answer per open request of the agent (issue 15)
            await answer_photo_request(
                tx.conn,
                self.engine.settings,
                request_id=p.requestId,
                call_id=p.callId,
                visitor_name=visitor.name,
                answer=p.answer,
                now=tx.now,
            )
            await tx.push(agent_key(primary), event("photo", payload))
