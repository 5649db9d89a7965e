"""A supervisor's help in a call (issue 20): ``monitorCall``, ``whisper``, ``barge``,
``leaveMonitor`` (docs/calls.md, "Supervisors in a call"; the rules are
:mod:`kefu.protocol.supervise`).

Theory of operation
-------------------
The requests come on the supervisor's own agent socket (its plugin makes the
media). ``monitorCall`` names the call (``callId``) or the agent in it
(``agentName``); the others act on the call the supervisor helps in now.
Who may: a supervisor whose team has the call's primary agent, or an admin
(decision D34: the floor's own rule, :func:`kefu.server.teams.viewer_of`);
another team's call answers ``no_such_call`` / ``no_such_agent`` as if it did
not exist. A supervisor helps in one call at a time and never in a call it
is a member of.

Each change runs as a call operation (:meth:`CallEngine.run`: the call's
lock, one transaction); its :class:`~kefu.protocol.supervise.SupervisorEffect`
is applied here (:func:`apply_effect`): a row of ``call_supervision`` (who,
mode, when: the call record's ``supervision``), the ``call.supervisor``
integration event, and a ``supervisor`` push to the call's joined agents,
which their plugins give the SDKs as ``initInnerCallBack``/``supervisorChange``.
The supervisor gets the call's ``call`` push (:func:`tell_supervisors`), with
``supervisors`` in it, which its plugin's media follows; so does the primary
agent's hub. A supervisor whose connection stays lost beyond ``call_grace``
leaves (:meth:`SupervisionService.gone`); the call's end ends its part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, desc, func, insert, select

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import Call, CallPhase, MemberKind, MemberStatus
from kefu.protocol.integrations import EventType
from kefu.protocol.plugin_api import MonitorCallParams
from kefu.protocol.supervise import SupervisorEffect, SupervisorMode, leave, supervise
from kefu.protocol.wire import Request, reply_message

from .accounts import Agent, find_agent
from .events import emit
from .hub import Tx, agent_key
from .routing import event
from .schema import call_supervision, calls
from .store import aware, iso
from .teams import viewer_of

if TYPE_CHECKING:
    from .call_agent_api import Replier
    from .call_engine import CallEngine

__all__ = [
    "SupervisionService",
    "apply_effect",
    "helped_in",
    "supervising",
    "supervision_record",
    "tell_supervisors",
]

log = logging.getLogger("kefu.server.supervise")

_MODE_OF = {"whisper": SupervisorMode.whisper, "barge": SupervisorMode.barge}


class SupervisionService:
    """The supervisors' requests on the calls of :class:`~kefu.server.call_engine.CallEngine`."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        self.listeners: list[Callable[[], None]] = []  # told after a change is committed (the floor)

    async def apply(self, tx: Tx, call: Call, f: SupervisorEffect) -> None:
        """One supervisor's change, in the call operation's transaction."""
        await apply_effect(tx, call, f)
        tx.after_commit.extend(self.listeners)

    async def handle(self, agent: Agent, req: Request, conn: Replier) -> None:
        if req.mark == "monitorCall":
            p = req.params
            assert isinstance(p, MonitorCallParams)
            call_id: str | None = await self._target(agent, p)
            mode: SupervisorMode | None = SupervisorMode.monitor
        else:
            call_id = await self.current(agent.id)
            mode = _MODE_OF.get(req.mark)
        if call_id is None:
            raise ApiError("you are not helping in a call", code=ErrorCode.not_in_call)

        def op(call: Call) -> list[Any]:
            return supervise(call, agent.name, mode) if mode is not None else leave(call, agent.name)

        out = await self.engine.run(call_id, op)
        assert out.call is not None
        view = self.engine.view(out.call)
        payload = {"callId": call_id, "mode": mode.value if mode is not None else None, **view}
        conn.reply(reply_message(req.mark, "success", payload, rid=req.id))

    async def _target(self, me: Agent, p: MonitorCallParams) -> str:
        """The call to monitor, if ``me`` may (see the module's docstring)."""
        if (p.callId is None) == (p.agentName is None):
            raise ApiError(
                "name the call (callId) or its agent (agentName), one of them", code=ErrorCode.invalid_field
            )
        async with self.engine.push_hub.store.read() as conn:
            viewer = await viewer_of(conn, me)  # forbidden unless a supervisor or an admin
            if p.agentName is not None:
                target = await find_agent(conn, name=p.agentName)
                if target is None or not viewer.sees(target.id):
                    raise ApiError(code=ErrorCode.no_such_agent)
                found = await self.engine.queries.call_of(
                    MemberKind.agent, target.name, status=MemberStatus.joined
                )
                if found is None:
                    raise ApiError(f"{target.name} is in no call", code=ErrorCode.not_in_call)
                call_id: str | None = found
            else:
                call_id = p.callId
            if call_id is None:
                raise ApiError(code=ErrorCode.no_such_call)
            row = (
                await conn.execute(select(calls.c.agent_id, calls.c.status).where(calls.c.id == call_id))
            ).first()
        if row is None or not viewer.sees(int(row.agent_id)):
            raise ApiError(code=ErrorCode.no_such_call)  # another team's call: not even its existence
        if row.status == CallPhase.ended.value:
            raise ApiError("the call is over", code=ErrorCode.no_such_call)
        if await self.engine.queries.call_of(MemberKind.agent, me.name) is not None:
            raise ApiError("you are in a call yourself", code=ErrorCode.invalid_state)
        helping = await self.current(me.id)
        if helping is not None and helping != call_id:
            raise ApiError(f"already helping in call {helping}: leave it first", code=ErrorCode.invalid_state)
        return call_id

    async def current(self, agent_id: int) -> str | None:
        """The call in progress supervisor ``agent_id`` helps in now, if any."""
        async with self.engine.push_hub.store.read() as conn:
            row = (
                await conn.execute(
                    select(call_supervision.c.call_id, call_supervision.c.mode, calls.c.status)
                    .join(calls, calls.c.id == call_supervision.c.call_id)
                    .where(call_supervision.c.agent_id == agent_id)
                    .order_by(desc(call_supervision.c.num))
                    .limit(1)
                )
            ).first()
        if row is None or row.mode == "left" or row.status == CallPhase.ended.value:
            return None
        return str(row.call_id)

    async def gone(self, name: str) -> None:
        """The supervisor's connection stayed lost beyond the grace: it leaves its call."""
        async with self.engine.push_hub.store.read() as conn:
            agent = await find_agent(conn, name=name)
        if agent is None:
            return
        call_id = await self.current(agent.id)
        if call_id is None:
            return
        try:
            await self.engine.run(call_id, lambda call: leave(call, agent.name, "agent_disconnected"))
        except ApiError:
            return  # left or ended meanwhile
        log.info("supervisor %s did not come back: it left call %s", agent.name, call_id)


async def apply_effect(tx: Tx, call: Call, f: SupervisorEffect) -> None:
    """Record a supervisor's change (the call record), tell integrators and the call's agents."""
    me = await find_agent(tx.conn, name=f.name)
    if me is None:
        raise ApiError(code=ErrorCode.no_such_agent)
    mode = f.mode.value if f.mode is not None else None
    old = f.old.value if f.old is not None else None
    await tx.conn.execute(
        insert(call_supervision).values(
            call_id=call.id,
            agent_id=me.id,
            name=f.name,
            mode=mode or "left",
            old=old,
            reason=f.reason,
            at=tx.now,
        )
    )
    data = {"callId": call.id, "supervisor": f.name, "mode": mode, "old": old, "reason": f.reason}
    await emit(tx, EventType.call_supervisor, call.id, data)
    for m in call.joined(MemberKind.agent):
        agent = await find_agent(tx.conn, name=m.name)
        if agent is not None:
            await tx.push(agent_key(agent.id), event("supervisor", {**data, "at": iso(tx.now)}))


async def tell_supervisors(tx: Tx, call: Call, fx: Sequence[object], view: dict[str, Any]) -> None:
    """The ``call`` push to the call's supervisors and those who just left it."""
    names = dict.fromkeys(call.supervisors)
    names.update(dict.fromkeys(f.name for f in fx if isinstance(f, SupervisorEffect)))
    for name in names:
        agent = await find_agent(tx.conn, name=name)
        if agent is None:
            continue
        what = "ended" if call.ended else "update" if name in call.supervisors else "left"
        await tx.push(agent_key(agent.id), event("call", {**view, "what": what}))


async def supervising(conn: Any) -> dict[int, list[dict[str, Any]]]:
    """The floor's view: each supervisor's calls in progress it helps in, with its mode."""
    latest = (
        select(func.max(call_supervision.c.num))
        .group_by(call_supervision.c.call_id, call_supervision.c.agent_id)
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(call_supervision.c.agent_id, call_supervision.c.call_id, call_supervision.c.mode)
        .join(calls, calls.c.id == call_supervision.c.call_id)
        .where(call_supervision.c.num.in_(latest), calls.c.status != CallPhase.ended.value)
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r.mode != "left":
            out.setdefault(r.agent_id, []).append({"callId": r.call_id, "mode": r.mode})
    return out


def helped_in(call_id: str, agent_id: int) -> Select[Any]:
    """A row when supervisor ``agent_id`` helped in call ``call_id`` (it may read its record)."""
    return (
        select(call_supervision.c.num)
        .where(call_supervision.c.call_id == call_id, call_supervision.c.agent_id == agent_id)
        .limit(1)
    )


async def supervision_record(conn: Any, call_id: str) -> list[dict[str, Any]]:
    """The call record's ``supervision``: every supervisor's join, mode and leave, in order."""
    rows = (
        await conn.execute(
            select(call_supervision)
            .where(call_supervision.c.call_id == call_id)
            .order_by(call_supervision.c.num)
        )
    ).all()
    return [
        {
            "supervisor": r.name,
            "mode": None if r.mode == "left" else r.mode,
            "old": r.old,
            "reason": r.reason,
            "at": iso(aware(r.at)),
        }
        for r in rows
    ]
