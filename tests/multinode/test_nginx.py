"""nginx (Debian's nginx-light) in front of two nodes, round robin, no stickiness.

The agent's and the visitor's sockets go through nginx; round robin puts them
on different nodes, and they chat as on one node. nginx runs from a generated
config in the test's temp dir, on 127.0.0.1, without root paths.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
from bench.multinode import nginx_config  # the one nginx configuration, as docs/deploy.md shows it

from kefu.server.accounts import add_agent
from kefu.visitor.link import Link
from tests.conftest import PASSWORD
from tests.server.clients import AgentClient

from .conftest import Cluster, Deployment

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)"
)
async def test_agent_and_visitor_chat_through_nginx_on_different_nodes(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2)
    await cluster.start()
    port = free_port()
    conf = nginx_config(deployment.tmp, port, cluster.urls)
    assert NGINX is not None
    proc = await asyncio.create_subprocess_exec(NGINX, "-p", str(deployment.tmp), "-c", str(conf))
    lb = f"ws://127.0.0.1:{port}"
    try:
        n1 = cluster.services(0)
        await add_agent(n1.store, "a1", PASSWORD, now=n1.settings.now(), scrypt_n=2**10)
        token = (await n1.auth.login("a1", PASSWORD, "127.0.0.1")).token
        agent = AgentClient(f"{lb}/ws/agent", token)
        async with asyncio.timeout(10):
            while True:  # nginx is up when it accepts
                try:
                    await agent.connect()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        await agent.call("setAgentState", {"state": "idle"})
        v = Link(f"{lb}/ws/visitor", timeout=5.0)
        await v.connect()
        assert (await v.request("hello", {"name": "v1"}))["subMark"] == "success"
        # round robin put the two sockets on different nodes
        nodes = [s.hub.bus.connected for s in (cluster.services(0), cluster.services(1))]
        assert [c("a:1") for c in nodes] != [c(f"v:{(await _vid(n1))}") for c in nodes]
        await v.call("sendMessage", {"text": "hello through nginx"})
        assigned = await agent.next_event("sessionAssigned")
        sid = assigned["payload"]["sessionId"]
        assert assigned["payload"]["messages"][-1]["text"] == "hello through nginx"
        await agent.call("sendMessage", {"session_id": sid, "text": "welcome"})
        assert (await v.next_event("message"))["payload"]["text"] == "welcome"
        await agent.aclose()
        await v.disconnect()
    finally:
        proc.terminate()
        await proc.wait()
        await cluster.stop()


async def _vid(services: object) -> str:
    from sqlalchemy import select

    from kefu.server.schema import visitors

    async with services.store.read() as conn:  # type: ignore[attr-defined]
        return str((await conn.execute(select(visitors.c.id))).scalar_one())
