"""Two nodes racing to assign the same queued session, 1,000 times: it is assigned once.

Each round queues a session, then runs at once, on two nodes: a routing pass
on each (agent ``a1``, ready, is connected to node 1), ``pickUpSession`` by
``a2`` through node 2 and by ``a1`` through node 1. Whatever wins, the
session has one agent, and exactly one ``sessionAssigned`` was stored for its
visitor and one for the agents; the loser got ``forbidden`` (or, for the
agent who already has it, the same answer again).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from sqlalchemy import func, select

from kefu.protocol import ApiError, ErrorCode
from kefu.server.accounts import add_agent
from kefu.server.hub import visitor_key
from kefu.server.schema import events, sessions
from kefu.server.visitors import identify
from tests.conftest import PASSWORD
from tests.server.clients import AgentClient

from .conftest import Cluster, Deployment

ROUNDS = int(os.environ.get("KEFU_RACE_ROUNDS", "1000"))


@pytest.mark.timeout(900)
async def test_two_nodes_racing_never_assign_a_session_twice(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2, log_level="error")
    await cluster.start()
    clients: list[AgentClient] = []
    try:
        n1, n2 = cluster.services(0), cluster.services(1)
        for name in ("a1", "a2"):
            await add_agent(
                n1.store, name, PASSWORD, max_sessions=ROUNDS, now=n1.settings.now(), scrypt_n=2**10
            )
        for name, url in (("a1", cluster.urls[0]), ("a2", cluster.urls[1])):
            token = (await n1.auth.login(name, PASSWORD, "127.0.0.1")).token
            c = AgentClient(url.replace("http", "ws", 1) + "/ws/agent", token)
            clients.append(c)
            await c.connect()
        await clients[0].call("setAgentState", {"state": "idle"})  # a1 ready: routing passes pick a1
        a1 = await _agent(n1, "a1")
        a2 = await _agent(n2, "a2")

        outcomes: dict[str, int] = {"route": 0, "a1": 0, "a2": 0, "forbidden": 0}
        for i in range(ROUNDS):
            visitor, _, _ = await identify(n1.hub, f"v{i}", None)
            sid = (await n1.sessions.visitor_send(visitor, "hello", None))["sessionId"]

            async def pick(node: Any, agent: Any, who: str, sid: str = sid) -> None:
                try:
                    view = await node.router.pick_up(agent, sid)
                    if view["agentName"] == who:
                        outcomes[who] += 1
                except ApiError as exc:
                    assert exc.code in (ErrorCode.forbidden, ErrorCode.no_capacity), exc
                    outcomes["forbidden"] += 1

            routed = await asyncio.gather(
                pick(n2, a2, "a2"), n1.router.route(), n2.router.route(), pick(n1, a1, "a1")
            )
            outcomes["route"] += routed[1] + routed[2]

        async with n2.store.read() as conn:
            rows = (
                await conn.execute(
                    select(sessions.c.id, sessions.c.status, sessions.c.agent_id, sessions.c.visitor_id)
                )
            ).all()
            assert len(rows) == ROUNDS
            assert all(r.status == "open" and r.agent_id is not None for r in rows)
            for r in rows:
                told_visitor = (
                    await conn.execute(
                        select(func.count()).where(
                            events.c.recipient == visitor_key(r.visitor_id),
                            events.c.message.like('%"sessionAssigned"%'),
                        )
                    )
                ).scalar_one()
                assert told_visitor == 1, r
            told_agents = (
                await conn.execute(
                    select(func.count()).where(
                        events.c.recipient.like("a:%"), events.c.message.like('%"sessionAssigned"%')
                    )
                )
            ).scalar_one()
        assert told_agents == ROUNDS
        # both sides won sometimes: the race was real
        assert outcomes["a2"] > 0 and outcomes["route"] + outcomes["a1"] > 0, outcomes
        assert outcomes["forbidden"] > 0, outcomes
    finally:
        for c in clients:
            await c.aclose()
        await cluster.stop()


async def _agent(services: Any, name: str) -> Any:
    from kefu.server.accounts import find_agent

    async with services.store.read() as conn:
        found = await find_agent(conn, name=name)
    assert found is not None
    return found
