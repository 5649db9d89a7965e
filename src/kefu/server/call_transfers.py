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
a consult with a team none of whose agents is ready → ``no_agent_available``.

A transfer to a team (the queue of a team) rings the agent that routing would
pick among the team's ready, connected agents (the one longest without an
assignment, D31). When none is ready a consult is refused and the call stays
with the agent; a blind transfer **waits in the team's queue** (D50): the agent
leaves (``005015``), the visitor is told ``queued`` with its ``position``,
and the call rings the team's first agent that is ready (:meth:`CallTransfers.
on_agent_change`, and each time the call joins the queue again after an agent
did not take it: :meth:`CallTransfers.call_queued`). ``calls.queue_team`` /
``queued_at`` (migration 0014) are the queue: FIFO by the first time a call
joined it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select

from kefu.protocol import ApiError, ErrorCode, InvalidTransition, transfer
from kefu.protocol.call import Call, CallNotice, Effect, MemberKind, MemberStatus
from kefu.protocol.codes import TopState
from kefu.protocol.machine import Event, Flow, allowed
from kefu.protocol.messages import CallPush, to_json
from kefu.protocol.plugin_api import TransferCallParams
from kefu.protocol.wire import NoParams

from .accounts import Agent, find_agent
from .agents import Change
from .call_engine import CallEngine, Outcome
from .call_queries import waiting_calls
from .hub import agent_key
from .schema import agents, calls, team_members, teams

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
        engine.call_queued = self.call_queued
        engine.queue_moved = self.queue_moved

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
        target: Agent | None
        if p.agentName is not None:
            target = await self._agent_target(p.agentName)
        else:
            assert p.teamName is not None
            target = await self._team_target(p.teamName, agent, queue=not consult)
        team = p.teamName

        def op(call: Call) -> list[Effect]:
            if target is None:  # blind to a team none of whose agents is ready: it waits (D50)
                assert team is not None
                return transfer.queue(call, agent.name, team, p.note)
            return transfer.start(call, agent.name, target.name, consult=consult, note=p.note)

        out = await self.engine.run(call_id, op, requester=asked.requester)
        to = target.name if target is not None else f"the queue of {team}"
        log.info("call %s: %s transfer from %s to %s", call_id, p.mode, agent.name, to)
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

    async def _team_target(self, team: str, agent: Agent, *, queue: bool) -> Agent | None:
        """The team's agent routing would pick now: ready, connected, longest without an
        assignment; none: ``None`` for a blind transfer (``queue``: it waits, D50), else
        ``no_agent_available``."""
        found = await self._ready_of(team, [agent.name])
        if found is None and not queue:
            raise ApiError(f"no agent of team {team!r} is ready", code=ErrorCode.no_agent_available)
        return found

    async def _ready_of(self, team: str, passed: list[str]) -> Agent | None:
        """The team's ready, connected agent routing would pick, not one of ``passed``."""
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
                        agents.c.name.not_in(passed),
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
        return None

    # --- calls waiting in a team's queue (D50)

    def call_queued(self, call_id: str) -> None:
        """The engine's hook: a call waits in its team's queue (again): ring a ready agent."""
        self.engine.spawn(self._serve_call(call_id), f"kefu-call-queue-{call_id}")

    def queue_moved(self, team: str) -> None:
        """The engine's hook: a call left ``team``'s queue; those behind it move up."""
        self.engine.spawn(self._tell_places(team), f"kefu-call-queue-places-{team}")

    async def _tell_places(self, team: str) -> None:
        """Every call waiting in ``team``'s queue: its visitor told its place (``queued``)."""
        hub = self.engine.push_hub
        async with hub.transaction() as tx:
            for place, call_id in enumerate(await waiting_calls(tx.conn, [team]), start=1):
                q = select(calls.c.snapshot).where(calls.c.id == call_id)
                call = Call.from_dict((await tx.conn.execute(q)).scalar_one())
                detail = {"teamName": team, "position": place}
                push = CallPush(call_id, CallNotice.queued, self.engine.media_mode.value, detail=detail)
                for v in call.joined(MemberKind.visitor):
                    recipient = await self.queries.recipient(MemberKind.visitor, v.name, tx=tx)
                    await tx.push(recipient, to_json(push))

    async def on_agent_change(self, change: Change) -> None:
        """The state setter's listener: an agent ready again gets its teams' oldest waiting call."""
        if change.after.state.top is TopState.idle and change.before.state.top is not TopState.idle:
            agent_id = change.after.id
            self.engine.spawn(self._serve_agent(agent_id), f"kefu-call-queue-agent-{agent_id}")

    async def _serve_call(self, call_id: str) -> None:
        call = await self.queries.snapshot(call_id, in_progress=True)
        t = call.transfer if call is not None and transfer.is_queued(call) else None
        if t is None or t["phase"] != "queued":
            return
        target = await self._ready_of(t["team"], t["passed"])
        if target is not None:
            await self._offer(call_id, target)

    async def _serve_agent(self, agent_id: int) -> None:
        if not await self.engine.push_hub.bus.present(agent_key(agent_id)):
            return
        async with self.engine.push_hub.store.read() as c:
            agent = await find_agent(c, agent_id=agent_id)
            names = select(teams.c.name).join(team_members, team_members.c.team_id == teams.c.id)
            mine = list((await c.execute(names.where(team_members.c.agent_id == agent_id))).scalars())
            waiting = await waiting_calls(c, mine) if mine else []
        for call_id in waiting:
            if agent is None or agent.state.top is not TopState.idle:
                return
            if await self._offer(call_id, agent):
                return

    async def _offer(self, call_id: str, target: Agent) -> bool:
        """Ring ``target`` with the waiting call; ``False`` if it is not to be (rung already,
        the agent no longer ready, passed over): the next look at the queue tries again."""
        try:
            await self.engine.run(call_id, lambda call: transfer.offer(call, target.name))
        except (ApiError, InvalidTransition) as exc:
            log.info("call %s: not offered to %s: %s", call_id, target.name, exc)
            return False
        log.info("call %s: offered from its queue to %s", call_id, target.name)
        return True

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
