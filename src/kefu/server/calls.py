"""Call orchestration (SPEC §4.3, §5; the contract is docs/calls.md).

Theory of operation
-------------------
A call is a pure :class:`kefu.protocol.call.Call`, stored as JSON in
``calls.snapshot``. Every operation on a call — a call API of an agent, a
visitor's answer, a ringing timer, a lost connection — runs in one write
transaction (:meth:`CallService._run`): load the call (``FOR UPDATE`` on
PostgreSQL), let the pure object decide, apply its effects, save it. The
effects are applied here and nowhere else:

- an :class:`~kefu.protocol.call.AgentEffect` goes through the one state
  setter, :meth:`kefu.server.agents.AgentService.apply`, in the same
  transaction, so every code comes from the transition table and the
  ``state`` push names the API and the v1204 callback it belongs to;
- a :class:`~kefu.protocol.call.VisitorEffect` is a ``call`` push to the visitor;
- a :class:`~kefu.protocol.call.MemberEffect` updates ``call_members`` with its time;
- a :class:`~kefu.protocol.call.TimerEffect` sets ``calls.ring_deadline``;
  after the commit a task waits for it and feeds :meth:`Call.timeout` back
  with the timer's generation (a late timer changes nothing). Deadlines are
  rebuilt from the database on start, so a restart does not lose them;
- an :class:`~kefu.protocol.call.EndEffect` closes the record.

After each operation every agent of the call gets a ``call`` push with the
call's members, which the plugin's media hub follows (offers to who joined,
closes who left). The requester's reply is its first state change, the
others reach it as ``state`` pushes.

Checks before a call exists are the spec's errors (SPEC §4.3): no such
visitor or agent → ``SDK_08``; a visitor in a session with another agent →
``SDK_11``; a visitor in a call or an agent who cannot ring → busy. Each is
the flow's own code (``002004``, ``002003`` …), applied through the state
machine. A call API that the agent's state does not allow is refused with
``invalid_state`` and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, desc, insert, select, update

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import (
    MEDIA_SERVER_LOST,
    AgentEffect,
    Call,
    CallPhase,
    Effect,
    EndEffect,
    MemberEffect,
    MemberKind,
    MemberStatus,
    TimerEffect,
    VisitorEffect,
)
from kefu.protocol.machine import Event, Flow, allowed
from kefu.protocol.plugin_api import (
    CALL_MARKS,
    CallVisitorParams,
    SessionParams,
    VideoInviteAgentParams,
    VisitorNameParams,
)
from kefu.protocol.sfu import SFU
from kefu.protocol.visitor_api import (
    AnswerCallParams,
    CallIdParams,
    MediaFailedParams,
    PhotoAnswerParams,
    ShareAnswerParams,
    SignalParams,
)
from kefu.protocol.wire import Request, error_message, reply_message

from .accounts import Agent, find_agent
from .agents import AgentService, Change
from .events import emit_call_connected, emit_call_effect
from .hub import Hub, Tx, agent_key, visitor_key
from .janus import MediaServerError, Room
from .media import answer_photo_request, open_photo_request
from .routing import event
from .schema import call_members, calls, sessions, visitors
from .settings import Settings
from .sfu import Sfu
from .store import aware, iso, new_id
from .tasks import Background
from .visitors import Visitor

__all__ = ["CALL_MARKS", "CallService", "Replier"]

log = logging.getLogger("kefu.server.calls")

AG, VI = MemberKind.agent, MemberKind.visitor
ACTIVE = (MemberStatus.invited.value, MemberStatus.joined.value)


class Replier(Protocol):
    """The connection a request came on."""

    def reply(self, msg: dict[str, Any]) -> None: ...


class _Outcome:
    """What an operation did: the changes per agent name, the call after it."""

    def __init__(self, call: Call | None) -> None:
        self.call = call
        self.changes: dict[str, list[Change]] = {}

    def first(self, name: str) -> Change | None:
        got = self.changes.get(name)
        return got[0] if got else None


# asked on every member's disconnect (is it in a call?): built once
_CALL_OF = (
    select(calls.c.id)
    .join(call_members, call_members.c.call_id == calls.c.id)
    .where(
        calls.c.status != CallPhase.ended.value,
        call_members.c.kind == bindparam("kind"),
        call_members.c.name == bindparam("name"),
        call_members.c.status.in_(bindparam("wanted", expanding=True)),
    )
    .order_by(desc(calls.c.created_at))
    .limit(1)
)


async def _member_id(tx: Tx, kind: MemberKind, name: str) -> Any:
    """The id of the agent or visitor called ``name`` (``None`` if there is none), looked up
    once per transaction: an operation names the same members in several effects."""
    key = (kind.value, name)
    if key not in tx.memo:
        if kind is AG:
            found = await find_agent(tx.conn, name=name)
            tx.memo[key] = found.id if found is not None else None
        else:
            tx.memo[key] = (await tx.conn.execute(_VISITOR_ID, {"name": name})).scalar_one_or_none()
    return tx.memo[key]


_VISITOR_ID = select(visitors.c.id).where(visitors.c.name == bindparam("name"))


class CallService:
    def __init__(self, hub: Hub, settings: Settings, agents: AgentService) -> None:
        self.hub = hub
        self.s = settings
        self.agents = agents
        self._lock = asyncio.Lock()  # one call operation at a time on this node
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._grace: dict[tuple[str, str], asyncio.Task[None]] = {}
        # every timer and grace task until it has ended (it leaves _timers/_grace when it fires)
        self._tasks = Background(log)
        self.sfu: Sfu | None = None  # the SFU mode: set by Services when --janus is given

    # --- lifecycle

    async def start(self) -> None:
        """Rebuild the ringing timers of calls in progress."""
        async with self.hub.store.read() as conn:
            rows = (
                await conn.execute(
                    select(calls.c.id, calls.c.ring_deadline, calls.c.snapshot).where(
                        calls.c.status != CallPhase.ended.value, calls.c.ring_deadline.is_not(None)
                    )
                )
            ).all()
        for r in rows:
            gen = int(r.snapshot["timerGen"])
            self._schedule(r.id, gen, aware(r.ring_deadline))

    async def close(self) -> None:
        """Stop the ringing timers and the members' graces on shutdown, those at work too."""
        self._timers.clear()
        self._grace.clear()
        await self._tasks.close()

    # --- the agent's call APIs

    async def handle(self, agent: Agent, req: Request, conn: Replier) -> None:
        """Answer one call API request from ``agent``."""
        handler = {
            "videoPickUp": self._video_pick_up,
            "multipleVideoPickUp": self._multiple_pick_up,
            "multipleVideoRefuse": self._multiple_refuse,
            "callbackToVisitor": self._call_visitor,
            "videoInviteCurrentVisitor": self._call_current_visitor,
            "videoInviteVisitor": self._invite_visitor,
            "videoInviteAgent": self._invite_agent,
            "videoDisconnect": self._disconnect,
            "signal": self._agent_signal,
            "inviteShare": self._invite_share,
            "takePhoto": self._take_photo,
            "mediaFailed": self._agent_media_failed,
        }[req.mark]
        await handler(agent, req, conn)

    def _answer(
        self, req: Request, conn: Replier, out: _Outcome, agent: Agent, sub_mark: str | None = None
    ) -> None:
        """Reply with the requester's first change (its code and v1204 callback)."""
        change = out.first(agent.name)
        call_id = out.call.id if out.call is not None else None
        if change is None:
            conn.reply(reply_message(req.mark, sub_mark or "success", {"callId": call_id}, rid=req.id))
            return
        code = change.after.state.code.value
        if sub_mark is None:
            sub_mark = change.transition.sub_mark or "success"
        conn.reply(
            reply_message(
                req.mark,
                sub_mark,
                {"callId": call_id, "old": change.before.state.code.value},
                rid=req.id,
                state=code,
            )
        )

    async def _refuse(
        self,
        agent: Agent,
        req: Request,
        conn: Replier,
        flow: Flow,
        event_: Event,
        code: ErrorCode | None,
        msg: str | None = None,
    ) -> None:
        """A call that cannot start: the flow's error or busy code, through the state machine."""
        change = await self.agents.apply(
            agent.id, flow, event_, reason=code.value if code else "busy", request_id=req.id
        )
        state = change.after.state.code.value
        if code is None:
            conn.reply(
                reply_message(
                    req.mark,
                    change.transition.sub_mark or "videoBusyMark",
                    {"old": change.before.state.code.value},
                    rid=req.id,
                    state=state,
                )
            )
        else:
            conn.reply(error_message(req.mark, code, msg, rid=req.id, state=state))

    def _may(self, agent: Agent, flow: Flow, event_: Event, what: str) -> None:
        if allowed(agent.state, flow, event_) is None:
            raise ApiError(
                f"{what} is not allowed in state {agent.state.code.value}", code=ErrorCode.invalid_state
            )

    async def _video_pick_up(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, SessionParams)
        async with self.hub.store.read() as c:
            call_id = (
                await c.execute(
                    select(calls.c.id).where(
                        calls.c.session_id == p.session_id,
                        calls.c.agent_id == agent.id,
                        calls.c.status == CallPhase.ringing.value,
                    )
                )
            ).scalar_one_or_none()
        if call_id is None:
            raise ApiError("no video request is ringing for this session", code=ErrorCode.invalid_state)
        out = await self._run(call_id, lambda call: call.pick_up(agent.name), requester=(agent.name, req.id))
        self._answer(req, conn, out, agent)

    async def _multiple_pick_up(self, agent: Agent, req: Request, conn: Replier) -> None:
        call_id = await self._call_of(AG, agent.name, status=MemberStatus.invited)
        if call_id is None:
            raise ApiError("no invitation rings for this agent", code=ErrorCode.invalid_state)
        out = await self._run(
            call_id, lambda call: call.agent_answer(agent.name, "accept"), requester=(agent.name, req.id)
        )
        self._answer(req, conn, out, agent)

    async def _multiple_refuse(self, agent: Agent, req: Request, conn: Replier) -> None:
        call_id = await self._call_of(AG, agent.name, status=MemberStatus.invited)
        if call_id is None:
            raise ApiError("no invitation rings for this agent", code=ErrorCode.invalid_state)
        out = await self._run(
            call_id, lambda call: call.agent_answer(agent.name, "refuse"), requester=(agent.name, req.id)
        )
        self._answer(req, conn, out, agent, sub_mark="success")

    async def _call_visitor(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, CallVisitorParams)
        await self._call_out(agent, req, conn, Flow.callVisitor, p.visitorName)

    async def _call_current_visitor(self, agent: Agent, req: Request, conn: Replier) -> None:
        await self._call_out(agent, req, conn, Flow.callCurrentVisitor, None)

    async def _call_out(
        self, agent: Agent, req: Request, conn: Replier, flow: Flow, name: str | None
    ) -> None:
        self._may(agent, flow, Event.invite, req.mark)
        session_id: str | None = None
        if name is None:
            current = await self._current_session(agent)
            if current is None:
                await self._refuse(
                    agent,
                    req,
                    conn,
                    flow,
                    Event.error,
                    ErrorCode.no_such_session,
                    "the agent has no session in progress",
                )
                return
            session_id, visitor = current
        else:
            found = await self._visitor_named(name)
            if found is None:
                await self._refuse(agent, req, conn, flow, Event.error, ErrorCode.SDK_08)
                return
            visitor = found
            other = await self._session_agent(visitor)
            if other is not None and other[1] != agent.id:
                await self._refuse(agent, req, conn, flow, Event.error, ErrorCode.SDK_11)
                return
            session_id = other[0] if other is not None else None
        if not await self._reachable(agent, req, conn, flow, visitor):
            return
        call_id = new_id()
        is_current = flow is Flow.callCurrentVisitor
        try:
            out = await self._create(
                lambda: Call.call_out(call_id, agent.name, visitor.name, current=is_current),
                agent,
                visitor,
                session_id,
                call_id=call_id,
                requester=(agent.name, req.id),
            )
        except MediaServerError as exc:
            await self._refuse(agent, req, conn, flow, Event.error, exc.code, str(exc))
            return
        self._answer(req, conn, out, agent)

    async def _invite_visitor(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, VisitorNameParams)
        flow = Flow.inviteThirdVisitor
        self._may(agent, flow, Event.invite, req.mark)
        call_id = await self._call_of(AG, agent.name, status=MemberStatus.joined)
        if call_id is None:
            raise ApiError("not in a call", code=ErrorCode.not_in_call)
        visitor = await self._visitor_named(p.visitorName)
        if visitor is None:
            await self._refuse(agent, req, conn, flow, Event.error, ErrorCode.SDK_08)
            return
        other = await self._session_agent(visitor)
        if other is not None and other[1] != agent.id:
            await self._refuse(agent, req, conn, flow, Event.error, ErrorCode.SDK_11)
            return
        if not await self._reachable(agent, req, conn, flow, visitor):
            return
        out = await self._run(
            call_id, lambda call: call.invite_third(VI, visitor.name), requester=(agent.name, req.id)
        )
        self._answer(req, conn, out, agent)

    async def _reachable(
        self, agent: Agent, req: Request, conn: Replier, flow: Flow, visitor: Visitor
    ) -> bool:
        """A visitor in another call is busy; one not connected cannot be called (the flow's code)."""
        if await self._call_of(VI, visitor.name) is not None:
            await self._refuse(agent, req, conn, flow, Event.busy, None)
            return False
        if not await self.hub.bus.present(visitor.recipient):
            await self._refuse(agent, req, conn, flow, Event.error, ErrorCode.visitor_offline)
            return False
        return True

    async def _invite_agent(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, VideoInviteAgentParams)
        flow = Flow.inviteThirdAgent
        self._may(agent, flow, Event.invite, req.mark)
        call_id = await self._call_of(AG, agent.name, status=MemberStatus.joined)
        if call_id is None:
            raise ApiError("not in a call", code=ErrorCode.not_in_call)
        async with self.hub.store.read() as c:
            target = await find_agent(c, name=p.agentName)
        if target is None or target.disabled or target.id == agent.id:
            await self._refuse(
                agent, req, conn, flow, Event.error, ErrorCode.SDK_08, "no such agent: check the agent's name"
            )
            return
        if allowed(target.state, Flow.agentInvite, Event.ring) is None or not await self.hub.bus.present(
            agent_key(target.id)
        ):
            await self._refuse(agent, req, conn, flow, Event.busy, None)
            return
        out = await self._run(
            call_id, lambda call: call.invite_third(AG, target.name), requester=(agent.name, req.id)
        )
        self._answer(req, conn, out, agent)

    async def _disconnect(self, agent: Agent, req: Request, conn: Replier) -> None:
        call_id = await self._call_of(AG, agent.name)
        if call_id is None:
            raise ApiError("not in a call", code=ErrorCode.not_in_call)
        out = await self._run(
            call_id, lambda call: call.hangup(AG, agent.name), requester=(agent.name, req.id)
        )
        self._answer(req, conn, out, agent, sub_mark="success")

    async def _agent_signal(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, SignalParams)
        await self._signal(AG, agent.name, p)
        conn.reply(reply_message(req.mark, "success", rid=req.id))

    async def _agent_media_failed(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, MediaFailedParams)
        conn.reply(reply_message(req.mark, "success", await self.media_failed(AG, agent.name, p), rid=req.id))

    async def media_failed(self, kind: MemberKind, name: str, p: MediaFailedParams) -> dict[str, Any]:
        """``mediaFailed``: the media with a member could not connect (reliability F15).

        A member reports its own media; the primary agent (whose plugin is the hub
        holding a connection with every member) may name any member. That member
        leaves with the reason ``media_unreachable`` (``Call.media_unreachable``)."""
        target = (MemberKind(p.member.kind), p.member.name) if p.member is not None else (kind, name)

        def fail(call: Call) -> list[Effect]:
            me = call.member(kind, name)
            if me is None or me.status is not MemberStatus.joined:
                raise ApiError("not a member of this call", code=ErrorCode.forbidden)
            if target != (kind, name) and not (kind is AG and name == call.primary):
                raise ApiError("only the call's hub reports another member's media", code=ErrorCode.forbidden)
            return call.media_unreachable(*target)

        out = await self._run(p.callId, fail)
        log.info(
            "call %s: the media with %s %s did not connect (%s, reported by %s %s): it leaves",
            p.callId,
            target[0].value,
            target[1],
            p.reason or "no reason given",
            kind.value,
            name,
        )
        assert out.call is not None
        return {"callId": out.call.id, "member": {"kind": target[0].value, "name": target[1]}}

    async def _first_visitor(self, agent: Agent) -> tuple[str, str]:
        """The call of this agent (joined) and the visitor the media APIs address."""
        call_id = await self._call_of(AG, agent.name, status=MemberStatus.joined)
        if call_id is None:
            raise ApiError("not in a call", code=ErrorCode.not_in_call)
        async with self.hub.store.read() as c:
            snap = (await c.execute(select(calls.c.snapshot).where(calls.c.id == call_id))).scalar_one()
        call = Call.from_dict(snap)
        joined = call.joined(VI)
        if not joined:
            raise ApiError("no visitor is in the call", code=ErrorCode.not_in_call)
        return call_id, joined[0].name

    async def _ask_visitor(self, agent: Agent, req: Request, conn: Replier, sub_mark: str) -> None:
        """Push ``sub_mark`` (``shareRequest``, ``photoRequest``) to the call's visitor; reply success.
        A ``photoRequest`` is recorded as the agent's open request, which the visitor's photo or
        ``photoAnswer`` must name (issue 15)."""
        call_id, name = await self._first_visitor(agent)
        visitor = await self._visitor_named(name)
        assert visitor is not None
        payload = {"callId": call_id, "agentName": agent.name}
        async with self.hub.transaction() as tx:
            if sub_mark == "photoRequest":
                payload["requestId"] = await open_photo_request(
                    tx.conn, self.s, call_id=call_id, agent_id=agent.id, visitor_name=name, now=tx.now
                )
            await tx.push(visitor.recipient, event(sub_mark, payload))
        conn.reply(reply_message(req.mark, "success", {**payload, "visitorName": name}, rid=req.id))

    async def _invite_share(self, agent: Agent, req: Request, conn: Replier) -> None:
        await self._ask_visitor(agent, req, conn, "shareRequest")

    async def _take_photo(self, agent: Agent, req: Request, conn: Replier) -> None:
        await self._ask_visitor(agent, req, conn, "photoRequest")

    # --- the visitor's side

    async def request_video(self, visitor: Visitor) -> dict[str, Any]:
        """The visitor asks for video in its session: the session's agent rings (004001)."""
        async with self.hub.store.read() as c:
            row = (
                await c.execute(
                    select(sessions.c.id, sessions.c.agent_id).where(
                        sessions.c.visitor_id == visitor.id, sessions.c.status == "open"
                    )
                )
            ).first()
            agent = await find_agent(c, agent_id=row.agent_id) if row is not None else None
        if row is None or agent is None:
            raise ApiError("ask for video in a conversation with an agent", code=ErrorCode.no_such_session)
        if await self._call_of(VI, visitor.name) is not None:
            raise ApiError("already in a call", code=ErrorCode.invalid_state)
        if allowed(agent.state, Flow.visitorInvite, Event.ring) is None or not await self.hub.bus.present(
            agent_key(agent.id)
        ):
            raise ApiError(
                "the agent cannot take a video call now; try again later", code=ErrorCode.invalid_state
            )
        call_id = new_id()
        await self._create(
            lambda: Call.visitor_request(call_id, agent.name, visitor.name),
            agent,
            visitor,
            row.id,
            call_id=call_id,
        )
        return {"callId": call_id}

    async def _visitor_call(self, visitor: Visitor, call_id: str) -> None:
        async with self.hub.store.read() as c:
            row = (
                await c.execute(
                    select(call_members.c.num).where(
                        call_members.c.call_id == call_id,
                        call_members.c.kind == VI.value,
                        call_members.c.name == visitor.name,
                    )
                )
            ).first()
        if row is None:
            raise ApiError("no such call", code=ErrorCode.no_such_call)

    async def answer(self, visitor: Visitor, p: AnswerCallParams) -> dict[str, Any]:
        await self._visitor_call(visitor, p.callId)
        await self._run(p.callId, lambda call: call.visitor_answer(visitor.name, p.answer))
        return {"callId": p.callId, "media": self.media_mode}

    async def join(self, visitor: Visitor, p: CallIdParams) -> dict[str, Any]:
        await self._visitor_call(visitor, p.callId)
        await self._run(p.callId, lambda call: call.visitor_join(visitor.name))
        return {"callId": p.callId, "media": self.media_mode}

    async def hangup_visitor(self, visitor: Visitor, p: CallIdParams) -> dict[str, Any]:
        await self._visitor_call(visitor, p.callId)
        await self._run(p.callId, lambda call: call.hangup(VI, visitor.name))
        return {"callId": p.callId}

    async def visitor_signal(self, visitor: Visitor, p: SignalParams) -> None:
        await self._signal(VI, visitor.name, p)

    async def visitor_media_failed(self, visitor: Visitor, p: MediaFailedParams) -> dict[str, Any]:
        await self._visitor_call(visitor, p.callId)
        return await self.media_failed(VI, visitor.name, p)

    async def share_answer(self, visitor: Visitor, p: ShareAnswerParams) -> None:
        primary = await self._primary_of(visitor, p.callId)
        state = {"open": "open", "close": "close", "refuse": "refused", "error": "error"}[p.answer]
        async with self.hub.transaction() as tx:
            await tx.push(
                agent_key(primary),
                event(
                    "share",
                    {"callId": p.callId, "state": state, "reason": p.reason, "visitorName": visitor.name},
                ),
            )

    async def photo_answer(self, visitor: Visitor, p: PhotoAnswerParams) -> None:
        primary = await self._primary_of(visitor, p.callId)
        if p.answer == "disabled":
            # SPEC §4.4: exactly the spec's error
            err: dict[str, Any] = {"type": "snapShotDisabled", "msg": "snapShotDisabled"}
        elif p.answer == "refuse":
            err = {"code": ErrorCode.photo_refused.value, "msg": p.reason or "the visitor refused the photo"}
        else:
            err = {"code": ErrorCode.no_media.value, "msg": p.reason or "the visitor could not take a photo"}
        async with self.hub.transaction() as tx:
            # one answer per open request of the agent (issue 15)
            await answer_photo_request(
                tx.conn,
                self.s,
                request_id=p.requestId,
                call_id=p.callId,
                visitor_name=visitor.name,
                answer=p.answer,
                now=tx.now,
            )
            await tx.push(
                agent_key(primary),
                event(
                    "photo",
                    {"callId": p.callId, "requestId": p.requestId, "error": err, "visitorName": visitor.name},
                ),
            )

    async def _primary_of(self, visitor: Visitor, call_id: str) -> int:
        await self._visitor_call(visitor, call_id)
        async with self.hub.store.read() as c:
            row = (
                await c.execute(select(calls.c.agent_id, calls.c.status).where(calls.c.id == call_id))
            ).first()
        if row is None or row.status == CallPhase.ended.value:
            raise ApiError("the call is over", code=ErrorCode.no_such_call)
        return int(row.agent_id)

    async def _signal(self, kind: MemberKind, name: str, p: SignalParams) -> None:
        async with self.hub.store.read() as c:
            snap = (
                await c.execute(
                    select(calls.c.snapshot).where(
                        calls.c.id == p.callId, calls.c.status != CallPhase.ended.value
                    )
                )
            ).scalar_one_or_none()
        if snap is None:
            raise ApiError("no such call in progress", code=ErrorCode.no_such_call)
        call = Call.from_dict(snap)
        me = call.member(kind, name)
        if me is None or me.status is not MemberStatus.joined:
            raise ApiError("not a member of this call", code=ErrorCode.forbidden)
        if p.to.kind == "sfu":
            # SFU mode: the server turns the member's signalling into Janus requests (D22)
            if self.sfu is None or p.to.name != "sfu":
                raise ApiError(
                    'to: {"kind": "sfu", "name": "sfu"}, and only in a call whose media goes '
                    "through the media server",
                    code=ErrorCode.invalid_field,
                )
            joined = [(m.kind.value, m.name) for m in call.joined()]
            await self.sfu.signal(call.id, (kind.value, name), joined, p.data)
            return
        to_kind = MemberKind(p.to.kind)
        target = call.member(to_kind, p.to.name)
        if target is None or target.status is not MemberStatus.joined:
            raise ApiError(f"{p.to.name} is not in this call", code=ErrorCode.forbidden)
        recipient = await self._recipient(to_kind, target.name)
        async with self.hub.transaction() as tx:
            await tx.push(
                recipient,
                event(
                    "signal", {"callId": call.id, "from": {"kind": kind.value, "name": name}, "data": p.data}
                ),
            )

    async def push_signal(self, call_id: str, member: tuple[str, str], data: dict[str, Any]) -> None:
        """A ``signal`` push from the media server to a member (SFU mode)."""
        recipient = await self._recipient(MemberKind(member[0]), member[1])
        async with self.hub.transaction() as tx:
            await tx.push(recipient, event("signal", {"callId": call_id, "from": dict(SFU), "data": data}))

    @property
    def media_mode(self) -> str:
        """How the calls' media goes: through the primary agent's ``hub``, or the media server (``sfu``)."""
        return "hub" if self.sfu is None else "sfu"

    # --- connections that come and go (reliability F3, F5)

    async def member_gone(self, kind: MemberKind, name: str) -> None:
        """A member's connection closed: hang it up unless it is back within ``call_grace``.

        Whether it is in a call is asked when the grace is over, not now: most connections
        that close are in no call, and in a reconnect storm all come back within the grace,
        so none of them costs a query."""
        key = (kind.value, name)
        old = self._grace.pop(key, None)
        if old is not None:
            old.cancel()
        task = self._tasks.spawn(self._grace_over(kind, name), f"kefu-call-grace-{name}")
        if task is not None:
            self._grace[key] = task

    def member_back(self, kind: MemberKind, name: str) -> None:
        task = self._grace.pop((kind.value, name), None)
        if task is not None:
            task.cancel()

    async def _grace_over(self, kind: MemberKind, name: str) -> None:
        await asyncio.sleep(self.s.call_grace)
        if self._grace.get((kind.value, name)) is asyncio.current_task():
            del self._grace[(kind.value, name)]
        recipient = await self._recipient(kind, name)
        if await self.hub.bus.present(recipient):
            return
        call_id = await self._call_of(kind, name)
        if call_id is None:
            return
        reason = f"{kind.value}_disconnected"
        log.info("%s %s did not come back within %.1f s: hanging up", kind.value, name, self.s.call_grace)

        def gone(call: Call) -> list[Effect]:
            m = call.member(kind, name)
            if kind is AG and m is not None and m.status is MemberStatus.invited:
                # an invited agent that is gone: the invitation failed (006009 / 002012)
                return call.fail(reason)
            return call.hangup(kind, name, reason)

        with contextlib.suppress(ApiError):
            await self._run(call_id, gone)

    async def media_server_lost(self, call_id: str) -> None:
        """SFU mode: the media server carrying the call's media died: the call ends for everyone
        with ``media_server_lost`` (:meth:`Call.media_server_lost`)."""
        with contextlib.suppress(ApiError):  # ended meanwhile
            out = await self._run(call_id, lambda call: call.media_server_lost())
            if out.call is not None and out.call.end_reason == MEDIA_SERVER_LOST:
                log.warning("call %s ended: the media server is lost", call_id)

    async def media_back(self, name: str, held: frozenset[str]) -> None:
        """A plugin logged in as agent ``name``, holding the media of the calls ``held``.

        The media of a call lives in the plugins (the primary's is the hub):
        a plugin process that died (a crash, ``kill -9``) took it along, and a
        new one that logs in within ``call_grace`` cancels the grace but has no
        peer connection. A connected call the agent is joined in that the
        plugin does not hold would go on silent: the agent leaves it at once
        with ``agent_media_lost`` (:meth:`Call.media_lost`), every member told.
        A plugin that reconnects its link (same process, media alive) says
        nothing, and a call the plugin holds goes on."""
        call_id = await self._call_of(AG, name, status=MemberStatus.joined)
        if call_id is None or call_id in held:
            return
        async with self.hub.store.read() as c:
            snap = (await c.execute(select(calls.c.snapshot).where(calls.c.id == call_id))).scalar_one()
        if not Call.from_dict(snap).media_lost(name):
            return  # not connected yet: no media to lose (the plugin makes it when the call connects)
        try:
            out = await self._run(call_id, lambda call: call.media_lost(name))
        except ApiError:
            return  # the call ended meanwhile
        if out.changes:
            log.warning("agent %s came back without the media of call %s: it leaves the call", name, call_id)

    # --- running an operation

    async def _create(
        self,
        make: Callable[[], tuple[Call, list[Effect]]],
        agent: Agent,
        visitor: Visitor,
        session_id: str | None,
        *,
        call_id: str,
        requester: tuple[str, str] | None = None,
    ) -> _Outcome:
        """A new call; in the SFU mode only once its room exists (``MediaServerError`` otherwise)."""
        room = await self.sfu.open(call_id) if self.sfu is not None else None
        try:
            return await self._insert(make, agent, visitor, session_id, room, requester)
        except BaseException:
            if room is not None and self.sfu is not None:
                await self.sfu.discard(room)
            raise

    async def _insert(
        self,
        make: Callable[[], tuple[Call, list[Effect]]],
        agent: Agent,
        visitor: Visitor,
        session_id: str | None,
        room: Room | None,
        requester: tuple[str, str] | None,
    ) -> _Outcome:
        async with self._lock, self.hub.transaction() as tx:
            call, fx = make()
            await tx.conn.execute(
                insert(calls).values(
                    id=call.id,
                    flow=call.flow.value,
                    session_id=session_id,
                    agent_id=agent.id,
                    visitor_id=visitor.id,
                    status=call.phase.value,
                    created_at=tx.now,
                    snapshot=call.to_dict(),
                )
            )
            if room is not None and self.sfu is not None:
                await self.sfu.store_room(tx, room)
            out = await self._apply(tx, call, fx, requester)
            await self._save(tx, call, fx)
        return out

    async def _run(
        self,
        call_id: str,
        op: Callable[[Call], list[Effect]],
        *,
        requester: tuple[str, str] | None = None,
        skip_locked: bool = False,
    ) -> _Outcome:
        async with self._lock, self.hub.transaction() as tx:
            q = select(calls.c.snapshot, calls.c.status).where(calls.c.id == call_id)
            if not self.s.is_sqlite:
                q = q.with_for_update(skip_locked=skip_locked)
            row = (await tx.conn.execute(q)).first()
            if row is None:
                if skip_locked:
                    return _Outcome(None)  # another node is on it
                raise ApiError(code=ErrorCode.no_such_call)
            call = Call.from_dict(row.snapshot)
            fx = op(call)  # ApiError: nothing changed
            out = await self._apply(tx, call, fx, requester)
            await self._save(tx, call, fx)
        return out

    async def _apply(
        self, tx: Tx, call: Call, fx: list[Effect], requester: tuple[str, str] | None
    ) -> _Outcome:
        out = _Outcome(call)
        for f in fx:
            await emit_call_effect(tx, call, f)  # integration events (kefu.server.events)
            if isinstance(f, AgentEffect):
                aid = await _member_id(tx, AG, f.agent)
                if aid is None:
                    raise ApiError(code=ErrorCode.no_such_agent)
                rid = requester[1] if requester is not None and requester[0] == f.agent else None
                change = await self.agents.apply(
                    aid, f.flow, f.event, reason=f.reason, call_id=call.id, tx=tx, request_id=rid
                )
                out.changes.setdefault(f.agent, []).append(change)
            elif isinstance(f, VisitorEffect):
                recipient = await self._recipient(VI, f.visitor, tx=tx)
                payload = {"callId": call.id, "what": f.what, "media": self.media_mode, **f.detail}
                await tx.push(recipient, event("call", payload))
            elif isinstance(f, MemberEffect):
                await self._member(tx, call, f)
            elif isinstance(f, EndEffect):
                await tx.conn.execute(
                    update(calls)
                    .where(calls.c.id == call.id)
                    .values(ended_at=tx.now, ended_by=f.by, end_reason=f.reason)
                )
        await self._tell_agents(tx, call, fx)
        return out

    async def _save(self, tx: Tx, call: Call, fx: list[Effect]) -> None:
        values: dict[str, Any] = {"status": call.phase.value, "snapshot": call.to_dict()}
        timers = [f for f in fx if isinstance(f, TimerEffect)]
        deadline = None
        if timers:
            last = timers[-1]
            if last.start and not call.ended:
                deadline = tx.now + timedelta(seconds=self.s.ring_timeout)
            values["ring_deadline"] = deadline
        if call.ended:
            values["ring_deadline"] = None
        if any(isinstance(f, AgentEffect) and f.event in (Event.accept, Event.joined) for f in fx):
            row = (await tx.conn.execute(select(calls.c.answered_at).where(calls.c.id == call.id))).first()
            if row is not None and row.answered_at is None:
                values["answered_at"] = tx.now
                await emit_call_connected(tx, call)
        await tx.conn.execute(update(calls).where(calls.c.id == call.id).values(**values))
        if timers:
            gen = call.timer_gen
            if deadline is not None:
                tx.after_commit.append(lambda: self._schedule(call.id, gen, deadline))
            else:
                tx.after_commit.append(lambda: self._unschedule(call.id))
        elif call.ended:
            tx.after_commit.append(lambda: self._unschedule(call.id))
        if self.sfu is not None:
            sfu = self.sfu
            joined = [(m.kind.value, m.name) for m in call.joined()]
            ended = call.ended
            tx.after_commit.append(lambda: sfu.sync(call.id, joined, ended))
            if ended:
                tx.after_commit.append(lambda: sfu.ended(call.id))

    async def _member(self, tx: Tx, call: Call, f: MemberEffect) -> None:
        q = select(call_members.c.num).where(
            call_members.c.call_id == call.id,
            call_members.c.kind == f.kind.value,
            call_members.c.name == f.name,
        )
        num = (await tx.conn.execute(q)).scalar_one_or_none()
        values: dict[str, Any] = {"status": f.status.value}
        if f.status is MemberStatus.joined:
            values["joined_at"] = tx.now
        elif f.status is not MemberStatus.invited:
            values["left_at"] = tx.now
            values["outcome"] = f.status.value
            values["reason"] = f.reason
        if num is None:
            ids = {"agent_id" if f.kind is AG else "visitor_id": await _member_id(tx, f.kind, f.name)}
            await tx.conn.execute(
                insert(call_members).values(
                    call_id=call.id,
                    kind=f.kind.value,
                    name=f.name,
                    role=f.role,
                    invited_at=tx.now,
                    **ids,
                    **values,
                )
            )
        else:
            await tx.conn.execute(update(call_members).where(call_members.c.num == num).values(**values))

    async def _tell_agents(self, tx: Tx, call: Call, fx: list[Effect]) -> None:
        """A ``call`` push to every agent of the call: who is in it now (the hub follows it)."""
        view = self.view(call)
        rings = {f.agent: f.flow for f in fx if isinstance(f, AgentEffect) and f.event is Event.ring}
        for m in call.members.values():
            if m.kind is not AG:
                continue
            touched = m.status in (MemberStatus.invited, MemberStatus.joined) or any(
                isinstance(f, MemberEffect) and f.kind is AG and f.name == m.name for f in fx
            )
            if not touched:
                continue
            if call.ended:
                what = "ended"
            elif m.name in rings:
                what = "ringing" if rings[m.name] is Flow.visitorInvite else "invited"
            else:
                what = "update"
            payload = {**view, "what": what}
            if what == "invited":
                payload["inviter"] = call.primary
            aid = await _member_id(tx, AG, m.name)
            if aid is not None:
                await tx.push(agent_key(aid), event("call", payload))

    def view(self, call: Call) -> dict[str, Any]:
        return {
            "callId": call.id,
            "flow": call.flow.value,
            "phase": call.phase.value,
            "primary": call.primary,
            "visitorName": call.visitor,
            "endedBy": call.ended_by,
            "endReason": call.end_reason,
            "media": self.media_mode,
            "members": [
                {"kind": m.kind.value, "name": m.name, "role": m.role, "status": m.status.value}
                for m in call.members.values()
            ],
        }

    # --- timers

    def _schedule(self, call_id: str, gen: int, deadline: Any) -> None:
        self._unschedule(call_id)
        delay = max(0.0, deadline.timestamp() - self.s.now().timestamp())
        task = self._tasks.spawn(self._ring_over(call_id, gen, delay), f"kefu-ring-{call_id}")
        if task is not None:
            self._timers[call_id] = task

    def _unschedule(self, call_id: str) -> None:
        task = self._timers.pop(call_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def sweep(self, limit: int = 50) -> int:
        """Fire the ringing timers that are due, whichever node set them (several nodes).

        A node schedules only the timers it set; this, run every
        ``sweep_interval`` on every node, fires those of a node that died. A
        call another node is working on is skipped (``SKIP LOCKED``), and a
        timer that fired already changes nothing (its generation is stale)."""
        async with self.hub.store.read() as conn:
            rows = (
                await conn.execute(
                    select(calls.c.id, calls.c.snapshot)
                    .where(calls.c.status != CallPhase.ended.value, calls.c.ring_deadline <= self.s.now())
                    .order_by(calls.c.ring_deadline)
                    .limit(limit)
                )
            ).all()
        fired = 0
        for r in rows:
            gen = int(r.snapshot["timerGen"])

            def fire(call: Call, gen: int = gen) -> list[Effect]:
                return call.timeout(gen)

            try:
                out = await self._run(r.id, fire, skip_locked=True)
            except ApiError:
                continue
            if out.call is not None:
                fired += 1
                log.info("ringing timer of call %s fired by the sweeper", r.id)
        return fired

    async def _ring_over(self, call_id: str, gen: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._timers.get(call_id) is asyncio.current_task():
            del self._timers[call_id]
        try:
            await self._run(call_id, lambda call: call.timeout(gen))
        except Exception:
            log.exception("the ringing timer of call %s failed", call_id)

    # --- lookups

    async def _recipient(self, kind: MemberKind, name: str, *, tx: Tx | None = None) -> str:
        if tx is not None:
            found = await _member_id(tx, kind, name)
            if found is None:
                raise ApiError(code=ErrorCode.no_such_agent if kind is AG else ErrorCode.no_such_visitor)
            return agent_key(found) if kind is AG else visitor_key(str(found))

        async def look(conn: Any) -> str:
            if kind is AG:
                found = await find_agent(conn, name=name)
                if found is None:
                    raise ApiError(code=ErrorCode.no_such_agent)
                return agent_key(found.id)
            vid = (
                await conn.execute(select(visitors.c.id).where(visitors.c.name == name))
            ).scalar_one_or_none()
            if vid is None:
                raise ApiError(code=ErrorCode.no_such_visitor)
            return visitor_key(vid)

        async with self.hub.store.read() as c:
            return await look(c)

    async def _call_of(
        self, kind: MemberKind, name: str, *, status: MemberStatus | None = None
    ) -> str | None:
        """The call in progress in which this member rings or is (or has ``status``)."""
        wanted = (status.value,) if status is not None else ACTIVE
        async with self.hub.store.read() as c:
            params = {"kind": kind.value, "name": name, "wanted": list(wanted)}
            return (await c.execute(_CALL_OF, params)).scalar_one_or_none()

    async def _visitor_named(self, name: str) -> Visitor | None:
        async with self.hub.store.read() as c:
            row = (
                await c.execute(select(visitors.c.id, visitors.c.name).where(visitors.c.name == name))
            ).first()
        return Visitor(row.id, row.name) if row is not None else None

    async def _session_agent(self, visitor: Visitor) -> tuple[str, int] | None:
        """The visitor's open session and its agent, if any."""
        async with self.hub.store.read() as c:
            row = (
                await c.execute(
                    select(sessions.c.id, sessions.c.agent_id).where(
                        sessions.c.visitor_id == visitor.id, sessions.c.status == "open"
                    )
                )
            ).first()
        return (row.id, int(row.agent_id)) if row is not None and row.agent_id is not None else None

    async def _current_session(self, agent: Agent) -> tuple[str, Visitor] | None:
        """The agent's current session: the most recently assigned one still open."""
        async with self.hub.store.read() as c:
            row = (
                await c.execute(
                    select(sessions.c.id, visitors.c.id.label("vid"), visitors.c.name)
                    .join(visitors, visitors.c.id == sessions.c.visitor_id)
                    .where(sessions.c.agent_id == agent.id, sessions.c.status == "open")
                    .order_by(desc(sessions.c.assigned_at))
                    .limit(1)
                )
            ).first()
        return (row.id, Visitor(row.vid, row.name)) if row is not None else None

    # --- records (REST)

    async def list_calls(
        self,
        *,
        agent_id: int | None = None,
        visitor: str | None = None,
        status: str | None = None,
        since: Any = None,
        until: Any = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        q = select(calls).order_by(desc(calls.c.created_at)).limit(limit).offset(offset)
        if agent_id is not None:
            members = select(call_members.c.call_id).where(call_members.c.agent_id == agent_id)
            q = q.where(calls.c.id.in_(members))
        if visitor is not None:
            vmembers = select(call_members.c.call_id).where(
                call_members.c.kind == VI.value, call_members.c.name == visitor
            )
            q = q.where(calls.c.id.in_(vmembers))
        if status is not None:
            q = q.where(calls.c.status == status)
        if since is not None:
            q = q.where(calls.c.created_at >= since)
        if until is not None:
            q = q.where(calls.c.created_at < until)
        async with self.hub.store.read() as c:
            rows = (await c.execute(q)).all()
            return [await self._record(c, r) for r in rows]

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        async with self.hub.store.read() as c:
            row = (await c.execute(select(calls).where(calls.c.id == call_id))).first()
            return await self._record(c, row) if row is not None else None

    async def _record(self, conn: Any, r: Any) -> dict[str, Any]:
        members = (
            await conn.execute(
                select(call_members).where(call_members.c.call_id == r.id).order_by(call_members.c.num)
            )
        ).all()
        return {
            "callId": r.id,
            "flow": r.flow,
            "sessionId": r.session_id,
            "status": r.status,
            "createdAt": iso(aware(r.created_at)),
            "answeredAt": iso(aware(r.answered_at)),
            "endedAt": iso(aware(r.ended_at)),
            "endedBy": r.ended_by,
            "endReason": r.end_reason,
            "recording": r.recording,  # the SFU mode's: its status, start and failure (server/sfu.py)
            "members": [
                {
                    "kind": m.kind,
                    "name": m.name,
                    "role": m.role,
                    "status": m.status,
                    "invitedAt": iso(aware(m.invited_at)),
                    "joinedAt": iso(aware(m.joined_at)),
                    "leftAt": iso(aware(m.left_at)),
                    "outcome": m.outcome,
                    "reason": m.reason,
                }
                for m in members
            ],
        }

    async def involves_agent(self, call_id: str, agent_id: int) -> bool:
        async with self.hub.store.read() as c:
            row = (
                await c.execute(
                    select(call_members.c.num).where(
                        call_members.c.call_id == call_id, call_members.c.agent_id == agent_id
                    )
                )
            ).first()
        return row is not None
