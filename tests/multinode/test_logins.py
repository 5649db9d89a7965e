"""A login ends on every node: a logout on one node, or disabling the account, closes the
agent's socket on another within a second."""

from __future__ import annotations

import httpx

from kefu.server.accounts import add_agent, set_disabled
from kefu.server.logins import CLOSE_LOGIN_ENDED
from kefu.visitor import ws_url
from tests.conftest import PASSWORD
from tests.server.clients import AgentClient
from tests.server.test_logins import closed_within

from .conftest import Cluster, Deployment


async def test_a_logout_on_one_node_closes_the_socket_on_another(deployment: Deployment) -> None:
    cluster = Cluster(deployment, 2)
    await cluster.start()
    try:
        n1 = cluster.services(0)
        for name in ("a1", "a2"):
            await add_agent(n1.store, name, PASSWORD, now=n1.settings.now(), scrypt_n=2**10)
        t1 = (await n1.auth.login("a1", PASSWORD, "127.0.0.1")).token
        t2 = (await n1.auth.login("a2", PASSWORD, "127.0.0.1")).token
        a1 = AgentClient(ws_url(cluster.urls[1], "/ws/agent"), t1)
        a2 = AgentClient(ws_url(cluster.urls[1], "/ws/agent"), t2)
        assert (await a1.connect())["subMark"] == "success"
        assert (await a2.connect())["subMark"] == "success"
        async with httpx.AsyncClient(base_url=cluster.urls[0]) as c:
            r = await c.post("/api/logout", headers={"Authorization": f"Bearer {t1}"})
            assert r.status_code == 204
        assert await closed_within(a1, 1.0) == (CLOSE_LOGIN_ENDED, "token_revoked", ["token_revoked"])
        await set_disabled(n1.store, "a2")
        assert await closed_within(a2, 1.0) == (
            CLOSE_LOGIN_ENDED,
            "account_disabled",
            ["account_disabled"],
        )
    finally:
        await cluster.stop()
