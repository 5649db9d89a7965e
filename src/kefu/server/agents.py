"""The authoritative state of every agent (SPEC §5, DESIGN §5).

:meth:`AgentService.apply` is the one setter: it runs the pure state machine
(:func:`kefu.protocol.machine.process`), writes the new state, records the
change (agent, old, new, flow, event, reason, call, time) and pushes a
``state`` message to the agent, all in one transaction. Nothing else writes
``agents.state``. An event the table does not allow raises
:class:`~kefu.protocol.errors.InvalidTransition` and changes nothing.

Other services hear of changes through :attr:`AgentService.listeners`
(routing runs when an agent becomes ready), called after the commit.
After-call work (005xxx) ends when the agent sets ready / not ready, or after
``wrap_up_timeout`` seconds when that is set; the timer is rebuilt from the
database on start, so a restart does not lose it, and with several nodes
:meth:`AgentService.sweep` ends overdue ones on any node, so a node that
died does not lose them either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.codes import Code, TopState
from kefu.protocol.machine import API_OF_FLOW, Event, Flow, Transition, process
from kefu.protocol.wire import state_message

from .accounts import Agent, find_agent
from .events import emit_agent_state
from .hub import Hub, Tx, agent_key
from .reasons import check_reason
from .schema import agents, state_changes
from .settings import Settings
from .store import aware, iso
from .tasks import Background
from .teams import WrapUpPolicy, wrap_up_policies

__all__ = ["AgentService", "Change", "Listener"]

log = logging.getLogger("kefu.server.agents")


class Change:
    """One applied event: the agent before and after, and the table's row."""

    __slots__ = ("after", "before", "call_id", "reason", "transition")

    def __init__(
        self, before: Agent, after: Agent, transition: Transition, reason: str | None, call_id: str | None
    ) -> None:
        self.before = before
        self.after = after
        self.transition = transition
        self.reason = reason
        self.call_id = call_id


Listener = Callable[[Change], Awaitable[None]]


# every state change runs these two: built once (see kefu.server.hub)
_SET_STATE = (
    update(agents)
    .where(agents.c.id == bindparam("aid"))
    .values(
        state=bindparam("state"),
        call_flow=bindparam("call_flow"),
        third_flow=bindparam("third_flow"),
        picked_up=bindparam("picked_up"),
        state_since=bindparam("since"),
    )
)
_LOG_CHANGE = insert(state_changes).values(
    agent_id=bindparam("aid"),
    old_code=bindparam("old"),
    new_code=bindparam("new"),
    flow=bindparam("flow"),
    event=bindparam("event"),
    reason=bindparam("reason"),
    call_id=bindparam("call_id"),
    at=bindparam("at"),
    actor=bindparam("actor"),
)


class AgentService:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.s = settings
        self.listeners: list[Listener] = []
        self._timers: dict[int, asyncio.Task[None]] = {}
        self._tasks = Background(log)  # the wrap-up timers until they have ended
        #: Per-team after-call work (kefu.server.teams), by agent id; others: ``wrap_up_timeout``.
        self.policies: dict[int, WrapUpPolicy] = {}
        self._extended: dict[int, datetime] = {}  # agent id → the after-call work it extended

    async def apply(
        self,
        agent_id: int,
        flow: Flow,
        event: Event,
        *,
        reason: str | None = None,
        call_id: str | None = None,
        tx: Tx | None = None,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> Change:
        """Apply one event to one agent (see the module's docstring).

        Pass ``tx`` to make the change part of a larger transaction (a call
        record and the states of its members commit together). ``request_id``
        names the agent's request whose handling made the change (its reply
        already reports it); the push carries it so the plugin does not report
        it twice. ``actor`` names who made the change when it is not the agent or
        the system (a supervisor, :mod:`kefu.server.floor`); the history keeps it."""
        if tx is not None:
            return await self._apply(
                tx, agent_id, flow, event, reason, call_id, request_id=request_id, actor=actor
            )
        async with self.hub.transaction() as own:
            return await self._apply(
                own, agent_id, flow, event, reason, call_id, request_id=request_id, actor=actor
            )

    async def _apply(
        self,
        tx: Tx,
        agent_id: int,
        flow: Flow,
        event: Event,
        reason: str | None,
        call_id: str | None,
        only_since: datetime | None = None,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> Change:
        before = await find_agent(tx.conn, agent_id=agent_id, lock=True)
        if before is None:
            raise ApiError(code=ErrorCode.no_such_agent)
        if only_since is not None and before.state_since != only_since:
            raise ApiError("the state changed meanwhile", code=ErrorCode.invalid_state)
        new, t = process(before.state, flow, event)  # InvalidTransition: nothing written
        if event is Event.setNotReady:
            await check_reason(tx.conn, reason)  # the catalogue's codes, once it has any
        await tx.conn.execute(
            _SET_STATE,
            {
                "aid": agent_id,
                "state": new.code.value,
                "call_flow": new.call_flow.value if new.call_flow else None,
                "third_flow": new.third_flow.value if new.third_flow else None,
                "picked_up": new.picked_up,
                "since": tx.now,
            },
        )
        await tx.conn.execute(
            _LOG_CHANGE,
            {
                "aid": agent_id,
                "old": before.state.code.value,
                "new": new.code.value,
                "flow": flow.value,
                "event": event.value,
                "reason": reason,
                "call_id": call_id,
                "at": tx.now,
                "actor": actor,
            },
        )
        payload = {
            "old": before.state.code.value,
            "flow": flow.value,
            "event": event.value,
            "reason": reason,
            "callId": call_id,
            # the API and the v1204 callback this change is reported to (DESIGN §4)
            "mark": API_OF_FLOW[flow],
            "subMark": t.sub_mark,
            "requestId": request_id,
            "at": tx.now.isoformat(),
        }
        if actor is not None:
            payload["by"] = actor
        await tx.push(agent_key(agent_id), state_message(new.code.value, payload))
        await emit_agent_state(tx, before.name, new.code.value, payload)
        after = Agent(before.id, before.name, before.admin, before.max_sessions, before.disabled, new, tx.now)
        change = Change(before, after, t, reason, call_id)
        tx.after_commit.append(lambda: self._changed(change))
        log.info("agent %s: %s -> %s (%s.%s)", before.name, before.state.code, new.code, flow, event)
        return change

    async def _changed(self, change: Change) -> None:
        self._schedule_wrap_up(change.after)
        for listener in self.listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("a listener of agent state changes failed")

    # --- after-call work timeout (SPEC §5.3.6 addition)

    def wrap_up_seconds(self, agent_id: int) -> float:
        """The agent's after-call work: its team's policy, else ``wrap_up_timeout`` (0: no timer)."""
        policy = self.policies.get(agent_id)
        return policy.seconds if policy is not None else self.s.wrap_up_timeout

    def _wrap_up_due(self, agent: Agent) -> float:
        seconds = self.wrap_up_seconds(agent.id)
        if self._extended.get(agent.id) == agent.state_since:
            seconds *= 2
        return agent.state_since.timestamp() + seconds

    async def reload_policies(self) -> None:
        """Read the teams' wrap-up policies again (after a team changed)."""
        async with self.hub.store.read() as conn:
            self.policies = await wrap_up_policies(conn)

    async def extend_wrap_up(self, agent: Agent) -> float:
        """Extend the agent's after-call work once by its length, if its team allows it;
        return the new deadline (POSIX seconds)."""
        policy = self.policies.get(agent.id)
        if policy is None or not policy.extend or policy.seconds <= 0:
            raise ApiError("the agent's team does not allow extending wrap-up", code=ErrorCode.forbidden)
        if agent.state.top is not TopState.afterCall:
            raise ApiError("the agent is not in after-call work", code=ErrorCode.invalid_state)
        if self._extended.get(agent.id) == agent.state_since:
            raise ApiError("wrap-up can be extended once", code=ErrorCode.invalid_state)
        self._extended[agent.id] = agent.state_since
        self._schedule_wrap_up(agent)
        return self._wrap_up_due(agent)

    def _schedule_wrap_up(self, agent: Agent) -> None:
        old = self._timers.pop(agent.id, None)
        if old is not None and old is not asyncio.current_task():
            old.cancel()
        if agent.state.top is not TopState.afterCall or self.wrap_up_seconds(agent.id) <= 0:
            self._extended.pop(agent.id, None)
            return
        due = self._wrap_up_due(agent)
        delay = max(0.0, due - self.s.now().timestamp())
        task = self._tasks.spawn(
            self._wrap_up(agent.id, agent.state_since, delay), f"kefu-wrap-up-{agent.id}"
        )
        if task is not None:
            self._timers[agent.id] = task

    async def _wrap_up(self, agent_id: int, since: datetime, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._timers.get(agent_id) is asyncio.current_task():
            del self._timers[agent_id]
        try:
            async with self.hub.transaction() as tx:
                await self._apply(
                    tx, agent_id, Flow.agent, Event.wrapUpTimeout, "wrapUpTimeout", None, only_since=since
                )
        except ApiError:
            log.debug("agent %s left after-call work before its timeout", agent_id)

    async def sweep(self, limit: int = 50) -> int:
        """End the after-call work that is overdue, whichever node's timer it was (several nodes).

        Run every ``sweep_interval`` on every node: the agents are taken with
        ``FOR UPDATE SKIP LOCKED``, so two nodes never end the same one, and
        an agent whose state changed meanwhile is not selected."""
        lengths = [p.seconds for p in self.policies.values() if p.seconds > 0]
        if self.s.wrap_up_timeout > 0:
            lengths.append(self.s.wrap_up_timeout)
        if not lengths:
            return 0
        now = self.s.now()
        cutoff = now - timedelta(seconds=min(lengths))
        ended = 0
        async with self.hub.transaction() as tx:
            q = (
                select(agents.c.id, agents.c.state_since)
                .where(agents.c.state.like("005%"), agents.c.state_since <= cutoff)
                .order_by(agents.c.id)
                .limit(limit)
            )
            if not self.hub.store.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            for r in list(await tx.conn.execute(q)):
                since = aware(r.state_since)
                assert since is not None
                seconds = self.wrap_up_seconds(r.id)
                if seconds <= 0 or since.timestamp() + seconds > now.timestamp():
                    continue  # its team's wrap-up is longer, or has none
                if self._extended.get(r.id) == since:
                    continue  # extended here: this node's timer ends it
                await self._apply(
                    tx, r.id, Flow.agent, Event.wrapUpTimeout, "wrapUpTimeout", None, only_since=since
                )
                ended += 1
        return ended

    async def start(self) -> None:
        """Rebuild the wrap-up timers of agents in after-call work; end the overdue ones now."""
        await self.reload_policies()
        if self.s.wrap_up_timeout <= 0 and not self.policies:
            return
        async with self.hub.store.read() as conn:
            rows = await conn.execute(select(agents.c.id).where(agents.c.state.like("005%")))
            found = [await find_agent(conn, agent_id=r.id) for r in list(rows)]
        now = self.s.now().timestamp()
        for agent in found:
            if agent is None:
                continue
            seconds = self.wrap_up_seconds(agent.id)
            if seconds <= 0:
                continue
            if agent.state_since.timestamp() + seconds <= now:
                await self._wrap_up(agent.id, agent.state_since, 0.0)
            else:
                self._schedule_wrap_up(agent)

    async def close(self) -> None:
        """Stop the wrap-up timers, those at work too."""
        self._timers.clear()
        await self._tasks.close()

    # --- reads

    async def get(self, agent_id: int) -> Agent:
        async with self.hub.store.read() as conn:
            agent = await find_agent(conn, agent_id=agent_id)
        if agent is None:
            raise ApiError(code=ErrorCode.no_such_agent)
        return agent

    async def history(
        self,
        agent_id: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The agent's state changes, oldest first."""
        q = select(state_changes).where(state_changes.c.agent_id == agent_id)
        if since is not None:
            q = q.where(state_changes.c.at >= since)
        if until is not None:
            q = q.where(state_changes.c.at < until)
        q = q.order_by(state_changes.c.num).limit(limit).offset(offset)
        async with self.hub.store.read() as conn:
            rows = (await conn.execute(q)).all()
        return [
            {
                "old": r.old_code,
                "new": r.new_code,
                "flow": r.flow,
                "event": r.event,
                "reason": r.reason,
                "callId": r.call_id,
                "at": iso(aware(r.at)),
                "by": r.actor,
            }
            for r in rows
        ]


def is_logged_in(agent: Agent) -> bool:
    return agent.state.code is not Code.notLogin


__all__ += ["is_logged_in"]
