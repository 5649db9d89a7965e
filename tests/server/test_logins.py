"""A token ends with its login: logout revokes it, and an agent's open socket is closed
(4003, the error first) within a second of logout, of its account being disabled, or of
its token expiring (by the test's clock)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kefu.server.accounts import set_disabled
from kefu.server.logins import CLOSE_LOGIN_ENDED
from tests.conftest import ServerHandle
from tests.server.clients import AgentClient


def api(server: ServerHandle, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


async def closed_within(agent: AgentClient, seconds: float) -> tuple[int | None, str, list[str]]:
    """Wait for the server to close the agent's socket; return the close code and reason and the
    codes of the errors pushed before it. Fails if it takes longer than ``seconds``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    code = await agent.link.wait_closed()
    took = loop.time() - start
    assert took < seconds, f"closed after {took:.2f} s"
    errors = [m["error"]["code"] for m in agent.link.pending_events() if m.get("subMark") == "error"]
    return code, agent.link.close_reason, errors


async def test_logout_revokes_the_token_for_rest_and_sockets(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    async with api(server, agent.token) as c:
        assert (await c.get("/api/me")).status_code == 200
    out = await agent.call("logout")
    assert out["state"] == "000000"
    # the socket that logged out is answered by its reply, then closed: no error after it
    assert await closed_within(agent, 1.0) == (CLOSE_LOGIN_ENDED, "token_revoked", [])
    async with api(server, agent.token) as c:
        r = await c.get("/api/me")
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
    again = AgentClient(server.ws("/ws/agent"), agent.token)
    reply = await again.connect()
    assert reply["subMark"] == "error" and reply["error"]["code"] == "token_revoked"
    assert await again.link.wait_closed() == 1008
    # a new login works
    fresh = AgentClient(server.ws("/ws/agent"), await server.login("a1"))
    assert (await fresh.connect())["subMark"] == "success"
    await fresh.aclose()


async def test_rest_logout_closes_the_socket_of_that_token(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    other = await server.agent("a2")
    async with api(server, agent.token) as c:
        r = await c.post("/api/logout")
        assert r.status_code == 204 and "kefu_token=" in r.headers["set-cookie"]
        assert (await c.get("/api/me")).json()["error"]["code"] == "token_revoked"
        again = await c.post("/api/logout")
        assert again.status_code == 401 and again.json()["error"]["code"] == "token_revoked"
    assert await closed_within(agent, 1.0) == (CLOSE_LOGIN_ENDED, "token_revoked", ["token_revoked"])
    assert (await other.call("getState"))["state"] == "001000"  # another login is untouched


async def test_disabling_the_account_closes_its_socket(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    # as `kefu agent disable` does: straight on the database, without the server
    await set_disabled(server.services.store, "a1")
    assert await closed_within(agent, 1.0) == (
        CLOSE_LOGIN_ENDED,
        "account_disabled",
        ["account_disabled"],
    )
    async with api(server, agent.token) as c:
        r = await c.get("/api/me")
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"


@pytest.mark.server_settings(token_ttl=60.0)
async def test_an_expired_token_closes_its_socket(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    await agent.call("ping")
    server.clock.advance(59.0)
    await agent.call("ping")  # still valid
    assert agent.link.connected
    server.clock.advance(2.0)
    assert await closed_within(agent, 1.0) == (CLOSE_LOGIN_ENDED, "token_expired", ["token_expired"])
