"""A node killed with SIGKILL mid-chat and mid-call: its clients resume on another node.

Nodes are real ``kefu server`` processes. The agent is on node 1, the visitor
on node 2; node 1 is killed. The agent reconnects to node 2 with its last
``seq``: it gets what happened meanwhile once, in order, and nothing twice.
A call node 1 was ringing still times out (node 2's sweeper fires the timer
node 1 owned), and a call in progress is hung up from node 2 with a complete
record.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from kefu.server.accounts import add_agent
from kefu.server.schema import call_members, calls
from kefu.server.store import Store
from kefu.visitor.link import Link
from tests.conftest import PASSWORD
from tests.server.clients import AgentClient
from tests.server.test_calls import call_event

from .conftest import Deployment
from .nodes import NodeProcess


async def _setup(dep: Deployment, node: NodeProcess, name: str) -> Store:
    store = Store(dep.settings("test"))
    await store.open()
    await add_agent(store, name, PASSWORD, now=dep.clock(), scrypt_n=2**10)
    return store


async def _agent(node: NodeProcess, name: str) -> AgentClient:
    async with httpx.AsyncClient() as http:
        token = (await http.post(f"{node.url}/api/login", json={"name": name, "password": PASSWORD})).json()[
            "token"
        ]
    agent = AgentClient(node.ws("/ws/agent"), token)
    await agent.connect()
    await agent.skip_history()
    return agent


async def _move(agent: AgentClient, node: NodeProcess) -> list[dict[str, Any]]:
    """Reconnect ``agent`` to ``node`` with its last seq; return the pushes replayed up to the reply's lastSeq."""
    before = agent.last_seq

    def unread_old() -> list[int]:
        return [m["seq"] for m in agent.link.pending_events() if 0 < m.get("seq", 0) <= before]

    old = unread_old()  # pushes seen before the move that the test did not read
    agent.link.url = node.ws("/ws/agent")
    await agent.connect()
    upto = agent.auth["payload"]["lastSeq"]
    got = []
    while (got[-1]["seq"] if got else before) < upto:
        got.append(await agent.link.next_event(where=lambda m: m.get("seq", 0) > before))
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(before + 1, upto + 1)), (before, seqs)  # no gap, no duplicate
    assert unread_old() == old  # nothing seen before came again
    return got


async def _visitor(node: NodeProcess, name: str) -> Link:
    link = Link(node.ws("/ws/visitor"), timeout=5.0)
    await link.connect()
    reply = await link.request("hello", {"name": name})
    assert reply["subMark"] == "success"
    link.visitor_key = reply["payload"]["visitorKey"]  # type: ignore[attr-defined]
    return link


async def test_node_killed_mid_chat_agent_resumes_on_another_node(deployment: Deployment) -> None:
    async with NodeProcess(deployment, "1") as n1, NodeProcess(deployment, "2") as n2:
        store = await _setup(deployment, n1, "a1")
        agent = await _agent(n1, "a1")
        v = await _visitor(n2, "v1")
        try:
            await agent.call("setAgentState", {"state": "idle"})
            await v.call("sendMessage", {"text": "m1"})
            sid = (await agent.next_event("sessionAssigned"))["payload"]["sessionId"]
            await agent.call("sendMessage", {"session_id": sid, "text": "r1"})
            assert (await v.next_event("message"))["payload"]["text"] == "r1"

            await n1.kill()
            await v.call("sendMessage", {"text": "m2"})  # stored for the agent while it has no node
            await v.call("sendMessage", {"text": "m3"})
            replay = await _move(agent, n2)
            texts = [m["payload"]["text"] for m in replay if m.get("subMark") == "message"]
            assert texts == ["m2", "m3"]
            await agent.call("sendMessage", {"session_id": sid, "text": "r2"})
            assert (await v.next_event("message"))["payload"]["text"] == "r2"
            await v.call("sendMessage", {"text": "m4"})  # live again, across the bus
            assert (await agent.next_event("message"))["payload"]["text"] == "m4"
        finally:
            await agent.aclose()
            await v.disconnect()
            await store.close()


async def test_node_killed_mid_call_timer_fires_and_record_completes(deployment: Deployment) -> None:
    opts = ("--ring-timeout", "2", "--call-grace", "30")
    async with NodeProcess(deployment, "1", *opts) as n1, NodeProcess(deployment, "2", *opts) as n2:
        store = await _setup(deployment, n1, "a1")
        agent = await _agent(n1, "a1")
        v = await _visitor(n2, "v1")
        try:
            await agent.call("setAgentState", {"state": "idle"})
            # 1. a ringing call whose timer node 1 owns; node 1 dies
            ringing = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
            await call_event(v, "invited")
            await n1.kill()
            assert (await call_event(v, "cancelled"))["reason"] == "timeout"  # node 2 fired it
            replay = await _move(agent, n2)
            codes = [m["state"] for m in replay if m.get("mark") == "state"]
            assert codes[-1] == "002002", codes
            async with store.read() as conn:
                row = (await conn.execute(select(calls).where(calls.c.id == ringing))).one()
            assert row.status == "ended" and row.end_reason == "timeout" and row.ended_at is not None

            # 2. a call in progress through node 2 and a new node 3; node 2 dies; hung up from node 3
            async with NodeProcess(deployment, "3", *opts) as n3:
                fresh = agent.last_seq  # the unread pushes of part 1 are not this call's

                async def state(agent: AgentClient, code: str) -> None:
                    msg = await agent.link.next_event(
                        where=lambda m: m.get("mark") == "state" and m.get("seq", 0) > fresh
                    )
                    assert msg["state"] == code, msg

                await agent.call("setAgentState", {"state": "idle"})
                await state(agent, "002000")
                call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
                await call_event(v, "invited")
                await v.call("answerCall", {"callId": call_id, "answer": "accept"})
                await state(agent, "003001")
                await state(agent, "006011")
                await n2.kill()
                await _move(agent, n3)
                v.url = n3.ws("/ws/visitor")
                await v.connect()
                key = v.visitor_key  # type: ignore[attr-defined]
                hello = await v.request("hello", {"name": "v1", "visitorKey": key, "lastSeq": v.last_seq})
                assert hello["subMark"] == "success"
                out = await agent.call("videoDisconnect")
                assert out["subMark"] == "success" and out["state"] == "005004"
                await call_event(v, "ended")
                async with store.read() as conn:
                    row = (await conn.execute(select(calls).where(calls.c.id == call_id))).one()
                    members = (
                        await conn.execute(select(call_members).where(call_members.c.call_id == call_id))
                    ).all()
                assert row.status == "ended" and row.ended_at is not None and row.answered_at is not None
                assert all(m.left_at is not None and m.outcome for m in members), members
        finally:
            await agent.aclose()
            await v.disconnect()
            await store.close()
