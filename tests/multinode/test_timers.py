"""Timers of a node that is gone still fire: the sweeper of another node takes them.

Node 1 sets the after-call work deadline of its agent, then stops (its own
timer is cancelled with it). The test's clock moves past the deadline and
node 2's sweeper ends the after-call work (``FOR UPDATE SKIP LOCKED``); the
agent, back on node 2, gets the ``wrapUpTimeout`` change once.
"""

from __future__ import annotations

from kefu.server.accounts import add_agent
from kefu.visitor.link import Link
from tests.conftest import PASSWORD
from tests.server.clients import AgentClient
from tests.server.test_calls import call_event

from .conftest import Cluster, Deployment
from .test_routing_race import _agent


async def test_the_wrap_up_timer_of_a_stopped_node_fires_on_another(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2, wrap_up_timeout=30.0)
    await cluster.start()
    n1 = cluster.services(0)
    await add_agent(n1.store, "a1", PASSWORD, now=n1.settings.now(), scrypt_n=2**10)
    token = (await n1.auth.login("a1", PASSWORD, "127.0.0.1")).token
    agent = AgentClient(cluster.urls[0].replace("http", "ws", 1) + "/ws/agent", token)
    v = Link(cluster.urls[1].replace("http", "ws", 1) + "/ws/visitor", timeout=5.0)
    try:
        await agent.connect()
        await agent.call("setAgentState", {"state": "idle"})
        await v.connect()
        await v.request("hello", {"name": "v1"})
        call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
        await call_event(v, "invited")
        await v.call("answerCall", {"callId": call_id, "answer": "accept"})
        out = await agent.call("videoDisconnect")
        assert out["state"] == "005004"
        await agent.disconnect()
        await cluster.runners[0].stop()  # node 1 and its wrap-up timer are gone

        agent.link.url = cluster.urls[1].replace("http", "ws", 1) + "/ws/agent"
        await agent.connect()
        assert (await agent.call("getState"))["state"] == "005004"  # not due yet
        deployment.clock.advance(31)
        msg = await agent.link.next_event(
            where=lambda m: m.get("mark") == "state" and m["payload"].get("reason") == "wrapUpTimeout"
        )
        assert msg["state"] == "002000" and msg["payload"]["old"] == "005004", msg
        assert (await agent.call("getState"))["state"] == "002000"
        me = await _agent(cluster.services(1), "a1")
        history = await cluster.services(1).agents.history(me.id)
        assert [h["reason"] for h in history].count("wrapUpTimeout") == 1
    finally:
        await agent.aclose()
        await v.disconnect()
        await cluster.runners[1].stop()
