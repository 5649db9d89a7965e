"""Call transfers on the agent socket (issue 20; the pure rules are :mod:`kefu.protocol.transfer`).

``transferCall {agentName | teamName, mode: "blind" | "consult", note?}``,
``completeTransfer`` and ``cancelTransfer`` come from the call's primary agent
(forwarded by its plugin). They run as every call operation does, in one
transaction over the stored call (:meth:`CallService._run`), and their effects
reach every agent as ``state`` and ``call`` pushes and the visitor as ``call``
pushes (``held``, ``resumed``, ``transferred``). The target rings with the
usual invitation (``call/invited`` with ``transfer: {kind, from, to, note}``) and
answers it with ``multipleVideoPickUp`` / ``multipleVideoRefuse``.

Checks before anything changes (errors as the spec's ``{error: {code, msg}}``,
nothing changed): not in a call → ``not_in_call``; the agent's state does not
allow a transfer (not in a connected two-party call) → ``invalid_state``; no
such agent or team → ``no_such_agent``; the agent itself → ``invalid_field``;
the target logged out or not connected → ``agent_offline``; not ready →
``agent_busy``; a transfer already in progress → ``transfer_in_progress``;
a team none of whose agents is ready → ``no_agent_available``.

A transfer to a team (the queue of a team) rings the agent that routing would
pick among the team's ready, connected agents (the one longest without an
assignment, D31); when none is ready the transfer is refused and the call
stays with the agent (it does not wait in the queue).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from kefu.protocol import ApiError, ErrorCode, transfer
from kefu.protocol.call import Call, Effect, MemberKind, MemberStatus, TransferEffect
from kefu.protocol.machine import Event, Flow, allowed
from kefu.protocol.plugin_api import TransferCallParams
from kefu.protocol.wire import Request

from .accounts import Agent, find_agent
from .events import EventType, emit
from .hub import Tx, agent_key
from .schema import agents, team_members, teams
from .schema import calls as call_rows
from .store import iso

if TYPE_CHECKING:
    from .calls import CallService, Replier

__all__ = ["TRANSFER_MARKS", "CallTransfers", "record_transfer"]

log = logging.getLogger("kefu.server.call_transfers")

AG = MemberKind.agent

#: The marks this module answers (forwarded by the plugin like the other call APIs).
TRANSFER_MARKS = frozenset({"transferCall", "completeTransfer", "cancelTransfer"})


class CallTransfers:
    def __init__(self, calls: CallService) -> None:
        self.calls = calls

    async def handle(self, agent: Agent, req: Request, conn: Replier) -> None:
        handler = {
            "transferCall": self._transfer_call,
            "completeTransfer": self._complete,
            "cancelTransfer": self._cancel,
        }[req.mark]
        await handler(agent, req, conn)

    async def _my_call(self, agent: Agent) -> str:
        call_id = await self.calls._call_of(AG, agent.name, status=MemberStatus.joined)
        if call_id is None:
            raise ApiError("not in a call", code=ErrorCode.not_in_call)
        return call_id

    async def _transfer_call(self, agent: Agent, req: Request, conn: Replier) -> None:
        p = req.params
        assert isinstance(p, TransferCallParams)
        call_id = await self._my_call(agent)
        consult = p.mode == "consult"
        flow = Flow.consultTransfer if consult else Flow.blindTransfer
        if p.agentName == agent.name:
            raise ApiError("a call cannot be transferred to its own agent", code=ErrorCode.invalid_field)
        async with self.calls.hub.store.read() as c:
            snap = (
                await c.execute(select(call_rows.c.snapshot).where(call_rows.c.id == call_id))
            ).scalar_one()
        if snap.get("transfer") is not None:
            raise ApiError(
                "a transfer of this call is already in progress", code=ErrorCode.transfer_in_progress
            )
        if allowed(agent.state, flow, Event.transfer) is None:
            raise ApiError(
                f"a call is transferred from a connected two-party call, not in state {agent.state.code.value}",
                code=ErrorCode.invalid_state,
            )
        if p.agentName is not None:
            target = await self._agent_target(p.agentName)
        else:
            assert p.teamName is not None
            target = await self._team_target(p.teamName, agent)

        def op(call: Call) -> list[Effect]:
            return transfer.start(call, agent.name, target.name, consult=consult, note=p.note)

        out = await self.calls._run(call_id, op, requester=(agent.name, req.id))
        log.info("call %s: %s transfer from %s to %s", call_id, p.mode, agent.name, target.name)
        self.calls._answer(req, conn, out, agent)

    async def _agent_target(self, name: str) -> Agent:
        async with self.calls.hub.store.read() as c:
            target = await find_agent(c, name=name)
        if target is None or target.disabled:
            raise ApiError(f"no agent named {name!r}", code=ErrorCode.no_such_agent)
        if target.state.code.value == "000000" or not await self.calls.hub.bus.present(agent_key(target.id)):
            raise ApiError(f"{name} is not logged in or not connected", code=ErrorCode.agent_offline)
        if allowed(target.state, Flow.transferIn, Event.ring) is None:
            raise ApiError(
                f"{name} is not ready (state {target.state.code.value})", code=ErrorCode.agent_busy
            )
        return target

    async def _team_target(self, team: str, agent: Agent) -> Agent:
        """The team's agent routing would pick now: ready, connected, longest without an assignment."""
        async with self.calls.hub.store.read() as c:
            team_id = (await c.execute(select(teams.c.id).where(teams.c.name == team))).scalar_one_or_none()
            if team_id is None:
                raise ApiError(f"no team named {team!r}", code=ErrorCode.no_such_agent)
            ids = (
                await c.execute(
                    select(agents.c.id)
                    .join(team_members, team_members.c.agent_id == agents.c.id)
                    .where(
                        team_members.c.team_id == team_id,
                        agents.c.id != agent.id,
                        agents.c.state.like("002%"),  # ready: top-level 002000
                        agents.c.disabled.is_(False),
                    )
                    .order_by(agents.c.last_assigned_at.is_not(None), agents.c.last_assigned_at, agents.c.id)
                )
            ).scalars()
            for agent_id in list(ids):
                if await self.calls.hub.bus.present(agent_key(agent_id)):
                    found = await find_agent(c, agent_id=agent_id)
                    if found is not None:
                        return found
        raise ApiError(f"no agent of team {team!r} is ready", code=ErrorCode.no_agent_available)

    async def _complete(self, agent: Agent, req: Request, conn: Replier) -> None:
        call_id = await self._transfer_of(agent)
        out = await self.calls._run(
            call_id, lambda call: transfer.complete(call, agent.name), requester=(agent.name, req.id)
        )
        self.calls._answer(req, conn, out, agent)

    async def _cancel(self, agent: Agent, req: Request, conn: Replier) -> None:
        call_id = await self._transfer_of(agent)
        out = await self.calls._run(
            call_id, lambda call: transfer.cancel(call, agent.name), requester=(agent.name, req.id)
        )
        self.calls._answer(req, conn, out, agent)

    async def _transfer_of(self, agent: Agent) -> str:
        try:
            return await self._my_call(agent)
        except ApiError:
            raise ApiError("no transfer of this agent is in progress", code=ErrorCode.no_transfer) from None


async def record_transfer(tx: Tx, call: Call, f: TransferEffect) -> None:
    """A transfer ended: its entry in the call's record gets the time; ``call.transferred``."""
    at = iso(tx.now)
    for entry in reversed(call.transfers):
        if entry.get("at") is None:
            entry["at"] = at
    data: dict[str, Any] = {
        "callId": call.id,
        "kind": f.kind,
        "from": f.from_agent,
        "to": f.to_agent,
        "note": f.note,
        "outcome": f.outcome,
        "visitorName": call.visitor,
    }
    await emit(tx, EventType.call_transferred, call.id, data)
