"""The agent's call APIs (SPEC §4.3, §4.4, §4.5): one handler per mark, each with its params' type.

:data:`CALL_ROUTES` is the table from a mark to its params model and
handler; :meth:`AgentCallApi.handle` checks the decoded params against the
model once and calls the handler with them typed.

Checks before a call exists are the spec's errors (SPEC §4.3): no such
visitor or agent → ``SDK_08``; a visitor in a session with another agent →
``SDK_11``; a visitor in a call or an agent who cannot ring → busy. Each is
the flow's own code (``002004``, ``002003`` …), applied through the state
machine (:meth:`AgentCallApi._refuse`). A call API that the agent's state
does not allow is refused with ``invalid_state`` and changes nothing
(:func:`_require_allowed`). The requester's reply is its first state change
(:meth:`AgentCallApi._answer`); the other agents reach it as ``state`` pushes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, MemberKind, MemberStatus
from kefu.protocol.machine import Event, Flow, allowed
from kefu.protocol.plugin_api import (
    SUPERVISE_MARKS,
    CallVisitorParams,
    SessionParams,
    TransferCallParams,
    VideoInviteAgentParams,
    VisitorNameParams,
)
from kefu.protocol.visitor_api import MediaFailedParams, SignalParams
from kefu.protocol.wire import NoParams, Params, Request, error_message, reply_message

from .accounts import Agent, find_agent
from .call_engine import CallEngine, Outcome
from .call_signals import CallSignals
from .call_transfers import CallTransfers
from .hub import agent_key
from .janus import MediaServerError
from .media import open_photo_request
from .routing import event
from .visitors import Visitor

__all__ = ["CALL_ROUTES", "AgentCallApi", "AgentRequest", "CallRoute", "Replier"]

AGENT, VISITOR = MemberKind.agent, MemberKind.visitor

P = TypeVar("P", bound=Params)


class Replier(Protocol):
    """The connection a request came on."""

    def reply(self, msg: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """One call API request: who asked, what, and where the reply goes."""

    agent: Agent
    request: Request
    conn: Replier

    @property
    def requester(self) -> tuple[str, str]:
        return (self.agent.name, self.request.id)


@dataclass(frozen=True, slots=True)
class CallRoute(Generic[P]):
    """A mark's params model and its handler, which gets the params typed."""

    params: type[P]
    handler: Callable[[AgentCallApi, AgentRequest, P], Awaitable[None]]

    async def __call__(self, api: AgentCallApi, asked: AgentRequest) -> None:
        params = asked.request.params
        if not isinstance(params, self.params):  # the decoder chose another model: a server bug
            raise ApiError(f"{asked.request.mark} takes {self.params.__name__}", code=ErrorCode.invalid_field)
        await self.handler(api, asked, params)


def _require_allowed(agent: Agent, flow: Flow, event_: Event, what: str) -> None:
    """``invalid_state`` unless the transition table allows ``event_`` of ``flow`` in the agent's state."""
    if allowed(agent.state, flow, event_) is None:
        raise ApiError(
            f"{what} is not allowed in state {agent.state.code.value}", code=ErrorCode.invalid_state
        )


def _not_in_call() -> ApiError:
    return ApiError("not in a call", code=ErrorCode.not_in_call)


class AgentCallApi:
    def __init__(self, engine: CallEngine, signals: CallSignals) -> None:
        self.engine = engine
        self.signals = signals
        self.queries = engine.queries
        self.transfers = CallTransfers(engine, self._answer)  # issue 20: call transfers

    async def handle(self, agent: Agent, req: Request, conn: Replier) -> None:
        """Answer one call API request from ``agent``."""
        if req.mark in SUPERVISE_MARKS:  # issue 20: a supervisor in a call (kefu.server.supervise)
            await self.engine.supervision.handle(agent, req, conn)
            return
        await CALL_ROUTES[req.mark](self, AgentRequest(agent, req, conn))

    # --- call transfers (issue 20): kefu.server.call_transfers answers them

    async def _transfer_call(self, asked: AgentRequest, p: TransferCallParams) -> None:
        await self.transfers.transfer_call(asked, p)

    async def _complete_transfer(self, asked: AgentRequest, p: NoParams) -> None:
        await self.transfers.complete(asked, p)

    async def _cancel_transfer(self, asked: AgentRequest, p: NoParams) -> None:
        await self.transfers.cancel(asked, p)

    # --- replies

    def _answer(self, asked: AgentRequest, out: Outcome, sub_mark: str | None = None) -> None:
        """Reply with the requester's first change (its code and v1204 callback)."""
        req = asked.request
        change = out.first(asked.agent.name)
        call_id = out.call.id if out.call is not None else None
        if change is None:
            asked.conn.reply(reply_message(req.mark, sub_mark or "success", {"callId": call_id}, rid=req.id))
            return
        if sub_mark is None:
            sub_mark = change.transition.sub_mark or "success"
        payload = {"callId": call_id, "old": change.before.state.code.value}
        state = change.after.state.code.value
        asked.conn.reply(reply_message(req.mark, sub_mark, payload, rid=req.id, state=state))

    async def _refuse(
        self, asked: AgentRequest, flow: Flow, event_: Event, code: ErrorCode | None, msg: str | None = None
    ) -> None:
        """A call that cannot start: the flow's error or busy code, through the state machine."""
        req = asked.request
        change = await self.engine.agents.apply(
            asked.agent.id, flow, event_, reason=code.value if code else "busy", request_id=req.id
        )
        state = change.after.state.code.value
        if code is None:
            sub_mark = change.transition.sub_mark or "videoBusyMark"
            payload = {"old": change.before.state.code.value}
            asked.conn.reply(reply_message(req.mark, sub_mark, payload, rid=req.id, state=state))
        else:
            asked.conn.reply(error_message(req.mark, code, msg, rid=req.id, state=state))

    # --- answering a ringing call or invitation

    async def _video_pick_up(self, asked: AgentRequest, p: SessionParams) -> None:
        agent = asked.agent
        call_id = await self.queries.ringing_request(p.session_id, agent.id)
        if call_id is None:
            raise ApiError("no video request is ringing for this session", code=ErrorCode.invalid_state)
        out = await self.engine.run(call_id, lambda call: call.pick_up(agent.name), requester=asked.requester)
        self._answer(asked, out)

    async def _invitation_of(self, agent: Agent) -> str:
        call_id = await self.queries.call_of(AGENT, agent.name, status=MemberStatus.invited)
        if call_id is None:
            raise ApiError("no invitation rings for this agent", code=ErrorCode.invalid_state)
        return call_id

    async def _multiple_pick_up(self, asked: AgentRequest, _: NoParams) -> None:
        name = asked.agent.name
        call_id = await self._invitation_of(asked.agent)
        out = await self.engine.run(
            call_id, lambda call: call.agent_answer(name, "accept"), requester=asked.requester
        )
        self._answer(asked, out)

    async def _multiple_refuse(self, asked: AgentRequest, _: NoParams) -> None:
        name = asked.agent.name
        call_id = await self._invitation_of(asked.agent)
        out = await self.engine.run(
            call_id, lambda call: call.agent_answer(name, "refuse"), requester=asked.requester
        )
        self._answer(asked, out, sub_mark="success")

    # --- calling a visitor out

    async def _call_visitor(self, asked: AgentRequest, p: CallVisitorParams) -> None:
        await self._call_out(asked, Flow.callVisitor, p.visitorName)

    async def _call_current_visitor(self, asked: AgentRequest, _: NoParams) -> None:
        await self._call_out(asked, Flow.callCurrentVisitor, None)

    async def _call_out(self, asked: AgentRequest, flow: Flow, name: str | None) -> None:
        agent = asked.agent
        _require_allowed(agent, flow, Event.invite, asked.request.mark)
        session_id: str | None = None
        if name is None:
            current = await self.queries.current_session(agent)
            if current is None:
                no_session = "the agent has no session in progress"
                await self._refuse(asked, flow, Event.error, ErrorCode.no_such_session, no_session)
                return
            session_id, visitor = current
        else:
            found = await self.queries.visitor_named(name)
            if found is None:
                await self._refuse(asked, flow, Event.error, ErrorCode.SDK_08)
                return
            visitor = found
            other = await self.queries.session_agent(visitor)
            if other is not None and other[1] != agent.id:
                await self._refuse(asked, flow, Event.error, ErrorCode.SDK_11)
                return
            session_id = other[0] if other is not None else None
        if not await self._reachable(asked, flow, visitor):
            return
        is_current = flow is Flow.callCurrentVisitor
        try:
            out = await self.engine.create(
                lambda call_id: Call.call_out(call_id, agent.name, visitor.name, current=is_current),
                agent,
                visitor,
                session_id,
                requester=asked.requester,
            )
        except MediaServerError as exc:
            await self._refuse(asked, flow, Event.error, exc.code, str(exc))
            return
        self._answer(asked, out)

    async def _reachable(self, asked: AgentRequest, flow: Flow, visitor: Visitor) -> bool:
        """A visitor in another call is busy; one not connected cannot be called (the flow's code)."""
        if await self.queries.call_of(VISITOR, visitor.name) is not None:
            await self._refuse(asked, flow, Event.busy, None)
            return False
        if not await self.engine.push_hub.bus.present(visitor.recipient):
            await self._refuse(asked, flow, Event.error, ErrorCode.visitor_offline)
            return False
        return True

    # --- a third member, hanging up

    async def _joined_call(self, agent: Agent) -> str:
        call_id = await self.queries.call_of(AGENT, agent.name, status=MemberStatus.joined)
        if call_id is None:
            raise _not_in_call()
        return call_id

    async def _invite_visitor(self, asked: AgentRequest, p: VisitorNameParams) -> None:
        flow = Flow.inviteThirdVisitor
        _require_allowed(asked.agent, flow, Event.invite, asked.request.mark)
        call_id = await self._joined_call(asked.agent)
        visitor = await self.queries.visitor_named(p.visitorName)
        if visitor is None:
            await self._refuse(asked, flow, Event.error, ErrorCode.SDK_08)
            return
        other = await self.queries.session_agent(visitor)
        if other is not None and other[1] != asked.agent.id:
            await self._refuse(asked, flow, Event.error, ErrorCode.SDK_11)
            return
        if not await self._reachable(asked, flow, visitor):
            return
        out = await self.engine.run(
            call_id, lambda call: call.invite_third(VISITOR, visitor.name), requester=asked.requester
        )
        self._answer(asked, out)

    async def _invite_agent(self, asked: AgentRequest, p: VideoInviteAgentParams) -> None:
        agent = asked.agent
        flow = Flow.inviteThirdAgent
        _require_allowed(agent, flow, Event.invite, asked.request.mark)
        call_id = await self._joined_call(agent)
        async with self.engine.push_hub.store.read() as conn:
            target = await find_agent(conn, name=p.agentName)
        if target is None or target.disabled or target.id == agent.id:
            no_agent = "no such agent: check the agent's name"
            await self._refuse(asked, flow, Event.error, ErrorCode.SDK_08, no_agent)
            return
        can_ring = allowed(target.state, Flow.agentInvite, Event.ring) is not None
        if not can_ring or not await self.engine.push_hub.bus.present(agent_key(target.id)):
            await self._refuse(asked, flow, Event.busy, None)
            return
        out = await self.engine.run(
            call_id, lambda call: call.invite_third(AGENT, target.name), requester=asked.requester
        )
        self._answer(asked, out)

    async def _disconnect(self, asked: AgentRequest, _: NoParams) -> None:
        name = asked.agent.name
        call_id = await self.queries.call_of(AGENT, name)
        if call_id is None:
            raise _not_in_call()
        out = await self.engine.run(call_id, lambda call: call.hangup(AGENT, name), requester=asked.requester)
        self._answer(asked, out, sub_mark="success")

    # --- media: signalling, a failed connection, asking the visitor

    async def _signal(self, asked: AgentRequest, p: SignalParams) -> None:
        await self.signals.signal(AGENT, asked.agent.name, p)
        asked.conn.reply(reply_message(asked.request.mark, "success", rid=asked.request.id))

    async def _media_failed(self, asked: AgentRequest, p: MediaFailedParams) -> None:
        result = await self.signals.media_failed(AGENT, asked.agent.name, p)
        asked.conn.reply(reply_message(asked.request.mark, "success", result, rid=asked.request.id))

    async def _invite_share(self, asked: AgentRequest, _: NoParams) -> None:
        await self._ask_visitor(asked, "shareRequest")

    async def _take_photo(self, asked: AgentRequest, _: NoParams) -> None:
        await self._ask_visitor(asked, "photoRequest")

    async def _first_visitor(self, agent: Agent) -> tuple[str, Visitor]:
        """The call of this agent (joined) and the visitor the media APIs address."""
        call_id = await self._joined_call(agent)
        call = await self.queries.snapshot(call_id)
        joined = call.joined(VISITOR) if call is not None else []
        visitor = await self.queries.visitor_named(joined[0].name) if joined else None
        if visitor is None:
            raise ApiError("no visitor is in the call", code=ErrorCode.not_in_call)
        return call_id, visitor

    async def _ask_visitor(self, asked: AgentRequest, sub_mark: str) -> None:
        """Push ``sub_mark`` (``shareRequest``, ``photoRequest``) to the call's visitor; reply success.
        A ``photoRequest`` is recorded as the agent's open request, which the visitor's photo or
        ``photoAnswer`` must name (issue 15)."""
        agent = asked.agent
        call_id, visitor = await self._first_visitor(agent)
        payload = {"callId": call_id, "agentName": agent.name}
        async with self.engine.push_hub.transaction() as tx:
            if sub_mark == "photoRequest":
                payload["requestId"] = await open_photo_request(
                    tx.conn,
                    self.engine.settings,
                    call_id=call_id,
                    agent_id=agent.id,
                    visitor_name=visitor.name,
                    now=tx.now,
                )
            await tx.push(visitor.recipient, event(sub_mark, payload))
        reply = {**payload, "visitorName": visitor.name}
        asked.conn.reply(reply_message(asked.request.mark, "success", reply, rid=asked.request.id))


#: mark → its params model (those of ``AGENT_API``) and handler: every call API of an agent
#: (``CALL_MARKS``) and the media's marks that go through the call (SPEC §4.3–4.5).
CALL_ROUTES: dict[str, CallRoute[Any]] = {
    "videoPickUp": CallRoute(SessionParams, AgentCallApi._video_pick_up),
    "multipleVideoPickUp": CallRoute(NoParams, AgentCallApi._multiple_pick_up),
    "multipleVideoRefuse": CallRoute(NoParams, AgentCallApi._multiple_refuse),
    "callbackToVisitor": CallRoute(CallVisitorParams, AgentCallApi._call_visitor),
    "videoInviteCurrentVisitor": CallRoute(NoParams, AgentCallApi._call_current_visitor),
    "videoInviteVisitor": CallRoute(VisitorNameParams, AgentCallApi._invite_visitor),
    "videoInviteAgent": CallRoute(VideoInviteAgentParams, AgentCallApi._invite_agent),
    "videoDisconnect": CallRoute(NoParams, AgentCallApi._disconnect),
    "signal": CallRoute(SignalParams, AgentCallApi._signal),
    "inviteShare": CallRoute(NoParams, AgentCallApi._invite_share),
    "takePhoto": CallRoute(NoParams, AgentCallApi._take_photo),
    "mediaFailed": CallRoute(MediaFailedParams, AgentCallApi._media_failed),
    # issue 20: call transfers (kefu.server.call_transfers)
    "transferCall": CallRoute(TransferCallParams, AgentCallApi._transfer_call),
    "completeTransfer": CallRoute(NoParams, AgentCallApi._complete_transfer),
    "cancelTransfer": CallRoute(NoParams, AgentCallApi._cancel_transfer),
}
