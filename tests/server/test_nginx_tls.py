"""kefu behind nginx terminating TLS, with the configuration docs/deploy.md
("TLS") gives (``bench.multinode.nginx_config``): Debian's nginx with a test
CA's certificate in front of a kefu node in plain http on loopback. An agent
and a visitor talk over ``wss://`` through it, trusting that CA only; the node
knows each client's own address from ``X-Forwarded-For`` (the login lock is
per client, not one lock for everyone behind nginx) and that it came over
https from ``X-Forwarded-Proto`` (the login cookie is ``Secure``).

Clients come from different loopback addresses (127.0.0.2, 127.0.0.3: the
whole of 127/8 is this machine's) to be told apart.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bench.multinode import nginx_config

from kefu.visitor import Visitor, ws_url
from tests.conftest import PASSWORD, ServerHandle, scaled
from tests.server.clients import AgentClient
from tests.tlscerts import TestCA

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
NAME = "kefu.bank.test"
LIMIT = scaled(10.0)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def listening(port: int, proc: asyncio.subprocess.Process) -> None:
    """Until nginx accepts on ``port`` (it says nothing when it is ready); fails if it exited."""
    async with asyncio.timeout(LIMIT):
        while True:
            assert proc.returncode is None, "nginx exited"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return


@pytest.fixture
async def proxied(server: ServerHandle, tmp_path: Path) -> AsyncIterator[tuple[str, TestCA]]:
    """nginx with TLS in front of ``server``: (its https URL, the CA clients trust)."""
    ca = TestCA(tmp_path / "tls")
    leaf = ca.issue(NAME, "127.0.0.1")
    port = free_port()
    conf = nginx_config(tmp_path, port, [server.url], tls=(leaf.cert, leaf.key))
    assert NGINX is not None
    proc = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(tmp_path), "-c", str(conf), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await listening(port, proc)
        yield f"https://127.0.0.1:{port}", ca
    finally:
        proc.terminate()
        await proc.wait()


def client(ca: TestCA, address: str) -> httpx.AsyncClient:
    """An https client from ``address`` (a loopback address of its own) trusting ``ca`` only."""
    transport = httpx.AsyncHTTPTransport(verify=ca.client_context(), local_address=address)
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=LIMIT)


@pytest.mark.server_settings(login_max_failures_per_address=3, login_max_failures=100, public_names=(NAME,))
async def test_agent_and_visitor_over_wss_through_nginx_and_the_clients_own_addresses(
    server: ServerHandle, proxied: tuple[str, TestCA]
) -> None:
    url, ca = proxied
    await server.add_agent("a1")
    async with client(ca, "127.0.0.2") as http:
        login = await http.post(url + "/api/login", json={"name": "a1", "password": PASSWORD})
        assert login.status_code == 200, login.text
        assert "secure" in login.headers["set-cookie"].lower()  # kefu knows the client used https
        token = login.json()["token"]
        # the Host the clients use passes nginx and the node's Host check; another is refused
        named = await http.get(url + "/static/imclient.js", headers={"Host": NAME})
        assert named.status_code == 200
        other = await http.get(url + "/static/imclient.js", headers={"Host": "evil.example"})
        assert other.status_code == 403 and other.json()["error"]["code"] == "host_refused"

    agent = AgentClient(ws_url(url, "/ws/agent"), token, tls=ca.client_context())
    visitor = Visitor(url, "v-nginx", timeout=LIMIT, ssl=ca.client_context())
    try:
        await agent.connect()
        await agent.skip_history()
        await agent.call("setAgentState", {"state": "idle"})
        async with visitor:
            await visitor.send_message("hello through nginx over wss")
            assigned = await agent.next_event("sessionAssigned")
            assert [m["text"] for m in assigned["payload"]["messages"]] == ["hello through nginx over wss"]
            await agent.call(
                "sendMessage", {"session_id": assigned["payload"]["sessionId"], "text": "welcome"}
            )
            said = await visitor.next_event("message")  # bounded by the visitor's timeout
            assert said["payload"]["text"] == "welcome"
    finally:
        await agent.aclose()

    # a guesser on 127.0.0.2 locks its own address...
    async with client(ca, "127.0.0.2") as guesser:
        for i in range(3):
            bad = await guesser.post(url + "/api/login", json={"name": f"x{i}", "password": "guess-1"})
            assert bad.json()["error"]["code"] == "bad_credentials"
        locked = await guesser.post(url + "/api/login", json={"name": "a1", "password": PASSWORD})
        assert locked.json()["error"]["code"] == "login_locked"
    # ...not every client behind nginx: kefu saw 127.0.0.2 in X-Forwarded-For, not nginx's 127.0.0.1
    async with client(ca, "127.0.0.3") as agent_pc:
        fine = await agent_pc.post(url + "/api/login", json={"name": "a1", "password": PASSWORD})
        assert fine.status_code == 200, fine.text
