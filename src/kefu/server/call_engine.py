"""The call engine: run one operation on a call, apply its effects, save it (SPEC §4.3, §5).

Theory of operation
-------------------
A call is a pure :class:`kefu.protocol.call.Call`, stored as JSON in
``calls.snapshot``. Every operation on a call — a call API of an agent, a
visitor's answer, a ringing timer, a lost connection — runs in one write
transaction (:meth:`CallEngine.run`): load the call (``FOR UPDATE`` on
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
  rebuilt from the database on start (:meth:`CallEngine.start`), so a restart
  does not lose them, and :meth:`CallEngine.sweep` fires those of a node that died;
- an :class:`~kefu.protocol.call.EndEffect` closes the record.

After each operation every agent of the call gets a ``call`` push with the
call's members, which the primary agent's plugin follows when it relays the
media (``media: "hub"``: offers to who joined, closes who left).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from kefu.protocol import ApiError, ErrorCode, transfer
from kefu.protocol.call import (
    AgentEffect,
    Call,
    CallNotice,
    CallPhase,
    Effect,
    EndEffect,
    MediaMode,
    MemberEffect,
    MemberKind,
    MemberStatus,
    TimerEffect,
    TransferEffect,
    VisitorEffect,
)
from kefu.protocol.machine import Event, Flow
from kefu.protocol.messages import CallPush, to_json
from kefu.protocol.supervise import SupervisorEffect, audience, end_supervision, media_members

from .accounts import Agent
from .agents import AgentService, Change
from .call_queries import CallQueries, member_id, queue_position
from .events import emit_call_connected, emit_call_effect
from .hub import Hub, Tx, agent_key
from .janus import Room
from .routing import event
from .schema import call_members, calls
from .settings import Settings
from .sfu import Sfu
from .store import aware, iso, new_id
from .supervise import SupervisionService, tell_supervisors
from .tasks import Background
from .visitors import Visitor

__all__ = ["CallEngine", "Operation", "Outcome", "Requester"]

log = logging.getLogger("kefu.server.calls")

#: The agent whose request an operation answers and the request's id: its state change
#: carries that id, so the reply and the ``state`` push name the same request.
Requester = tuple[str, str]

#: An operation on a call: the pure call decides, its effects say what changes.
Operation = Callable[[Call], Sequence[Effect | SupervisorEffect]]


class Outcome:
    """What an operation did: the changes per agent name, the call after it."""

    def __init__(self, call: Call | None) -> None:
        self.call = call
        self.changes: dict[str, list[Change]] = {}

    def first(self, name: str) -> Change | None:
        got = self.changes.get(name)
        return got[0] if got else None


#: ``(tx, call id, from agent, to agent, note)``: the chat session goes with a transferred call.
SessionFollows = Callable[[Tx, str, str, str, str | None], Awaitable[None]]


class CallEngine:
    """Runs the operations on calls, one at a time on this node, and their ringing timers."""

    def __init__(self, push_hub: Hub, settings: Settings, agents: AgentService) -> None:
        self.push_hub = push_hub
        self.settings = settings
        self.agents = agents
        self.queries = CallQueries(push_hub.store)
        self._lock = asyncio.Lock()  # one call operation at a time on this node
        self._ring_timers: dict[str, asyncio.Task[None]] = {}
        # every timer task until it has ended (it leaves _ring_timers when it fires)
        self._tasks = Background(log)
        self.sfu: Sfu | None = None  # the SFU mode: set by Services when --janus is given
        #: a transferred call's chat session follows it (issue 20): set by Services
        #: (``Transfers.follow_call``), run in the call's transaction
        self.session_follows: SessionFollows | None = None
        self.supervision = SupervisionService(self)  # issue 20: monitorCall, whisper, barge, leaveMonitor
        #: a call waits in a team's queue (D50) / a call left a team's queue, after the
        #: commit: set by CallTransfers
        self.call_queued: Callable[[str], None] | None = None
        self.queue_moved: Callable[[str], None] | None = None
        #: told after the commit of each operation by which a call joined or left a team's
        #: queue (D50): the floor shows the calls waiting (D54)
        self.queue_listeners: list[Callable[[], None]] = []

    @property
    def media_mode(self) -> MediaMode:
        """How the calls' media goes: relayed by the primary agent's plugin, or the media server."""
        return MediaMode.hub if self.sfu is None else MediaMode.sfu

    # --- lifecycle

    async def start(self) -> None:
        """Rebuild the ringing timers of calls in progress."""
        async with self.push_hub.store.read() as conn:
            rows = (
                await conn.execute(
                    select(calls.c.id, calls.c.ring_deadline, calls.c.snapshot).where(
                        calls.c.status != CallPhase.ended.value, calls.c.ring_deadline.is_not(None)
                    )
                )
            ).all()
        for row in rows:
            deadline = aware(row.ring_deadline)
            assert deadline is not None  # selected so
            self._schedule(row.id, int(row.snapshot["timerGen"]), deadline)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Work started by a call's change, owned until it ends (closed with the engine)."""
        self._tasks.spawn(coro, name)

    async def close(self) -> None:
        """Stop the ringing timers on shutdown, those at work too."""
        self._ring_timers.clear()
        await self._tasks.close()

    # --- running an operation

    async def create(
        self,
        make: Callable[[str], tuple[Call, list[Effect]]],
        agent: Agent,
        visitor: Visitor,
        session_id: str | None,
        *,
        requester: Requester | None = None,
    ) -> Outcome:
        """A new call (``make`` gets its id); in the SFU mode only once its room exists
        (``MediaServerError`` otherwise)."""
        call_id = new_id()
        room = await self.sfu.open(call_id) if self.sfu is not None else None
        try:
            return await self._insert(lambda: make(call_id), agent, visitor, session_id, room, requester)
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
        requester: Requester | None,
    ) -> Outcome:
        async with self._lock, self.push_hub.transaction() as tx:
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

    async def run(
        self,
        call_id: str,
        op: Operation,
        *,
        requester: Requester | None = None,
        skip_locked: bool = False,
    ) -> Outcome:
        """Run ``op`` on the call in one transaction; an ``ApiError`` from it changes nothing."""
        async with self._lock, self.push_hub.transaction() as tx:
            q = select(calls.c.snapshot, calls.c.status).where(calls.c.id == call_id)
            if not self.settings.is_sqlite:
                q = q.with_for_update(skip_locked=skip_locked)
            row = (await tx.conn.execute(q)).first()
            if row is None:
                if skip_locked:
                    return Outcome(None)  # another node is on it
                raise ApiError(code=ErrorCode.no_such_call)
            call = Call.from_dict(row.snapshot)
            waited = _waiting_in(call)
            fx = op(call)  # ApiError: nothing changed
            if waited is not None and _waiting_in(call) is None and self.queue_moved is not None:
                moved, team = self.queue_moved, waited  # D50: the calls behind it move up
                tx.after_commit.append(lambda: moved(team))
            if waited != _waiting_in(call):
                tx.after_commit.extend(self.queue_listeners)
            fx = [*fx, *end_supervision(call)]  # issue 20: the call's end ends its supervisors' part
            out = await self._apply(tx, call, fx, requester)
            await self._save(tx, call, fx)
        return out

    async def _apply(
        self, tx: Tx, call: Call, fx: Sequence[Effect | SupervisorEffect], requester: Requester | None
    ) -> Outcome:
        out = Outcome(call)
        for f in fx:
            if isinstance(f, SupervisorEffect):
                await self.supervision.apply(tx, call, f)  # kefu.server.supervise
                continue
            await emit_call_effect(tx, call, f)  # integration events (kefu.server.events)
            if isinstance(f, AgentEffect):
                agent_id = await member_id(tx, MemberKind.agent, f.agent)
                if agent_id is None:
                    raise ApiError(code=ErrorCode.no_such_agent)
                rid = requester[1] if requester is not None and requester[0] == f.agent else None
                change = await self.agents.apply(
                    agent_id, f.flow, f.event, reason=f.reason, call_id=call.id, tx=tx, request_id=rid
                )
                out.changes.setdefault(f.agent, []).append(change)
            elif isinstance(f, VisitorEffect):
                recipient = await self.queries.recipient(MemberKind.visitor, f.visitor, tx=tx)
                detail: dict[str, Any] = dict(f.detail)
                if f.what is CallNotice.queued:  # its place in the team's queue (D50), as the chat queue's
                    detail["position"] = await queue_position(tx, call, str(f.detail["teamName"]))
                push = CallPush(call.id, f.what, self.media_mode.value, detail=detail)
                await tx.push(recipient, to_json(push))
            elif isinstance(f, MemberEffect):
                await self._save_member(tx, call, f)
            elif isinstance(f, TransferEffect):  # issue 20: the transfer's entry gets its time
                for entry in call.transfers:
                    entry.setdefault("at", iso(tx.now))
                if f.outcome == "completed" and self.session_follows is not None:
                    await self.session_follows(tx, call.id, f.from_agent, f.to_agent, f.note)
            elif isinstance(f, EndEffect):
                await tx.conn.execute(
                    update(calls)
                    .where(calls.c.id == call.id)
                    .values(ended_at=tx.now, ended_by=f.by, end_reason=f.reason)
                )
        await self._tell_agents(tx, call, fx)
        return out

    async def _save(self, tx: Tx, call: Call, fx: Sequence[Effect | SupervisorEffect]) -> None:
        values: dict[str, Any] = {"status": call.phase.value, "snapshot": call.to_dict()}
        timers = [f for f in fx if isinstance(f, TimerEffect)]
        deadline = None
        if timers:
            last = timers[-1]
            if last.start and not call.ended:
                deadline = tx.now + timedelta(seconds=self.settings.ring_timeout)
            values["ring_deadline"] = deadline
        if call.ended:
            values["ring_deadline"] = None
        values["queue_team"] = _waiting_in(call)
        if values["queue_team"] is not None:  # D50: its place is kept from the first time it joined the queue
            values["queued_at"] = func.coalesce(calls.c.queued_at, tx.now)
            if self.call_queued is not None:
                hook = self.call_queued
                tx.after_commit.append(lambda: hook(call.id))
        if any(isinstance(f, AgentEffect) and f.event in (Event.accept, Event.joined) for f in fx):
            row = (await tx.conn.execute(select(calls.c.answered_at).where(calls.c.id == call.id))).first()
            if row is not None and row.answered_at is None:
                values["answered_at"] = tx.now
                await emit_call_connected(tx, call)
        await tx.conn.execute(update(calls).where(calls.c.id == call.id).values(**values))
        if timers:
            gen = call.timer_gen
            if deadline is not None:
                due = deadline
                tx.after_commit.append(lambda: self._schedule(call.id, gen, due))
            else:
                tx.after_commit.append(lambda: self._unschedule(call.id))
        elif call.ended:
            tx.after_commit.append(lambda: self._unschedule(call.id))
        if self.sfu is not None:
            sfu = self.sfu
            joined = media_members(call)  # the supervisors too (issue 20), heard by their audience
            heard = {(MemberKind.agent.value, name): audience(call, name) for name in call.supervisors}
            heard = transfer.held_audience(call, joined, heard)  # a consult's hold (D32)
            ended = call.ended
            tx.after_commit.append(lambda: sfu.sync(call.id, joined, ended, heard))  # on the room's node
            if ended:
                tx.after_commit.append(lambda: sfu.ended(call.id))

    async def _save_member(self, tx: Tx, call: Call, f: MemberEffect) -> None:
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
            id_column = "agent_id" if f.kind is MemberKind.agent else "visitor_id"
            ids = {id_column: await member_id(tx, f.kind, f.name)}
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

    async def _tell_agents(self, tx: Tx, call: Call, fx: Sequence[Effect | SupervisorEffect]) -> None:
        """A ``call`` push to every agent of the call: who is in it now (the plugins follow it)."""
        view = self.view(call)
        rings = {f.agent: f.flow for f in fx if isinstance(f, AgentEffect) and f.event is Event.ring}
        for m in call.members.values():
            if m.kind is not MemberKind.agent:
                continue
            touched = m.status in (MemberStatus.invited, MemberStatus.joined) or any(
                isinstance(f, MemberEffect) and f.kind is MemberKind.agent and f.name == m.name for f in fx
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
            agent_id = await member_id(tx, MemberKind.agent, m.name)
            if agent_id is not None:
                await tx.push(agent_key(agent_id), event("call", payload))
        await tell_supervisors(tx, call, fx, view)

    def view(self, call: Call) -> dict[str, Any]:
        """The call as the agents' ``call`` push shows it."""
        return {
            "callId": call.id,
            "flow": call.flow.value,
            "phase": call.phase.value,
            "primary": call.primary,
            "visitorName": call.visitor,
            "endedBy": call.ended_by,
            "endReason": call.end_reason,
            "media": self.media_mode.value,
            "members": [
                {"kind": m.kind.value, "name": m.name, "role": m.role, "status": m.status.value}
                for m in call.members.values()
            ],
            "transfer": call.transfer,  # the transfer in progress (issue 20)
            "supervisors": [{"name": n, "mode": mode} for n, mode in call.supervisors.items()],
        }

    # --- ringing timers

    def _schedule(self, call_id: str, gen: int, deadline: datetime) -> None:
        self._unschedule(call_id)
        delay = max(0.0, deadline.timestamp() - self.settings.now().timestamp())
        task = self._tasks.spawn(self._ring_over(call_id, gen, delay), f"kefu-ring-{call_id}")
        if task is not None:
            self._ring_timers[call_id] = task

    def _unschedule(self, call_id: str) -> None:
        task = self._ring_timers.pop(call_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def sweep(self, limit: int = 50) -> int:
        """Fire the ringing timers that are due, whichever node set them (several nodes).

        A node schedules only the timers it set; this, run every
        ``sweep_interval`` on every node, fires those of a node that died. A
        call another node is working on is skipped (``SKIP LOCKED``), and a
        timer that fired already changes nothing (its generation is stale)."""
        async with self.push_hub.store.read() as conn:
            rows = (
                await conn.execute(
                    select(calls.c.id, calls.c.snapshot)
                    .where(
                        calls.c.status != CallPhase.ended.value,
                        calls.c.ring_deadline <= self.settings.now(),
                    )
                    .order_by(calls.c.ring_deadline)
                    .limit(limit)
                )
            ).all()
        fired = 0
        for row in rows:
            gen = int(row.snapshot["timerGen"])

            def fire(call: Call, gen: int = gen) -> list[Effect]:
                return call.timeout(gen)

            try:
                out = await self.run(row.id, fire, skip_locked=True)
            except ApiError:
                continue
            if out.call is not None:
                fired += 1
                log.info("ringing timer of call %s fired by the sweeper", row.id)
        return fired

    async def _ring_over(self, call_id: str, gen: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._ring_timers.get(call_id) is asyncio.current_task():
            del self._ring_timers[call_id]
        try:
            await self.run(call_id, lambda call: call.timeout(gen))
        except Exception:
            log.exception("the ringing timer of call %s failed", call_id)


def _waiting_in(call: Call) -> str | None:
    """The team in whose queue the call waits now (not ringing an agent), D50."""
    t = call.transfer
    if call.ended or t is None or not transfer.is_queued(call) or t["phase"] != "queued":
        return None
    return str(t["team"])
