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
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select

from kefu.protocol import ApiError, ErrorCode, transfer
from kefu.protocol.call import Call, Effect, MemberKind, MemberStatus
from kefu.protocol.machine import Event, Flow, allowed
from kefu.protocol.plugin_api import TransferCallParams
from kefu.protocol.wire import NoParams

from .accounts import Agent, find_agent
from .call_engine import CallEngine, Outcome
from .hub import agent_key
from .schema import agents, team_members, teams

if TYPE_CHECKING:
    from .call_agent_api import AgentRequest

__all__ = ["CallTransfers"]

log = logging.getLogger("kefu.server.call_transfers")

AGENT = MemberKind.agent


class CallTransfers:
    """``transferCall``, ``completeTransfer``, ``cancelTransfer``: routes of
    :class:`~kefu.server.call_agent_api.AgentCallApi` (its ``answer`` replies)."""

    def __init__(self, engine: CallEngine, answer: Callable[[AgentRequest, Outcome], None]) -> None:
        self.engine = engine
        self.queries = engine.queries
        self.answer = answer

    async def _my_call(self, agent: Agent) -> str:
        call_id = await self.queries.call_of(AGENT, agent.name, status=MemberStatus.joined)
        if call_id is None:
            raise ApiError("not in a call", code=ErrorCode.not_in_call)
        return call_id

    async def transfer_call(self, asked: AgentRequest, p: TransferCallParams) -> None:
        agent = asked.agent
        call_id = await self._my_call(agent)
        consult = p.mode == "consult"
        flow = Flow.consultTransfer if consult else Flow.blindTransfer
        if p.agentName == agent.name:
            raise ApiError("a call cannot be transferred to its own agent", code=ErrorCode.invalid_field)
        call = await self.queries.snapshot(call_id)
        if call is not None and call.transfer is not None:
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

        out = await self.engine.run(call_id, op, requester=asked.requester)
        log.info("call %s: %s transfer from %s to %s", call_id, p.mode, agent.name, target.name)
        self.answer(asked, out)

    async def _agent_target(self, name: str) -> Agent:
        async with self.engine.push_hub.store.read() as c:
            target = await find_agent(c, name=name)
        if target is None or target.disabled:
            raise ApiError(f"no agent named {name!r}", code=ErrorCode.no_such_agent)
        present = await self.engine.push_hub.bus.present(agent_key(target.id))
        if target.state.code.value == "000000" or not present:
            raise ApiError(f"{name} is not logged in or not connected", code=ErrorCode.agent_offline)
        if allowed(target.state, Flow.transferIn, Event.ring) is None:
            raise ApiError(
                f"{name} is not ready (state {target.state.code.value})", code=ErrorCode.agent_busy
            )
        return target

    async def _team_target(self, team: str, agent: Agent) -> Agent:
        """The team's agent routing would pick now: ready, connected, longest without an assignment."""
        async with self.engine.push_hub.store.read() as c:
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
                if await self.engine.push_hub.bus.present(agent_key(agent_id)):
                    found = await find_agent(c, agent_id=agent_id)
                    if found is not None:
                        return found
        raise ApiError(f"no agent of team {team!r} is ready", code=ErrorCode.no_agent_available)

    async def complete(self, asked: AgentRequest, _: NoParams) -> None:
        await self._on_transfer(asked, transfer.complete)

    async def cancel(self, asked: AgentRequest, _: NoParams) -> None:
        await self._on_transfer(asked, transfer.cancel)

    async def _on_transfer(self, asked: AgentRequest, op: Callable[[Call, str], list[Effect]]) -> None:
        """``completeTransfer`` / ``cancelTransfer``: ``op`` on the agent's call, by the agent."""
        name = asked.agent.name
        call_id = await self._transfer_of(asked.agent)
        out = await self.engine.run(call_id, lambda call: op(call, name), requester=asked.requester)
        self.answer(asked, out)

    async def _transfer_of(self, agent: Agent) -> str:
        try:
            return await self._my_call(agent)
        except ApiError:
            raise ApiError("no transfer of this agent is in progress", code=ErrorCode.no_transfer) from None
