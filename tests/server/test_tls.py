"""The server's own TLS (``kefu server --tls-cert --tls-key``): https and wss
on its port, checked by real clients that trust the test's CA only: httpx,
the Python visitor and an agent's socket. A key others may read is refused."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kefu.cli import app
from kefu.server import Settings
from kefu.server.runner import ServerRunner
from kefu.tls import TlsError
from kefu.visitor import Visitor, ws_url
from tests.conftest import PASSWORD, ServerHandle, child_env
from tests.server.clients import AgentClient
from tests.tlscerts import Leaf, TestCA


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "tls")


@pytest.fixture
def leaf(ca: TestCA) -> Leaf:
    return ca.issue("kefu.bank.test", "127.0.0.1")


@pytest.fixture
async def tls_server(server_settings: Callable[..., Settings], leaf: Leaf) -> AsyncIterator[ServerHandle]:
    handle = ServerHandle(server_settings(tls_cert=leaf.cert, tls_key=leaf.key))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


async def test_https_and_wss_with_the_test_ca(tls_server: ServerHandle, ca: TestCA) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    async with httpx.AsyncClient(verify=ca.client_context(), trust_env=False) as http:
        script = await http.get(tls_server.url + "/static/imclient.js")
        assert script.status_code == 200 and "IMClient" in script.text
        await tls_server.add_agent("a1")
        login = await http.post(tls_server.url + "/api/login", json={"name": "a1", "password": PASSWORD})
        assert login.status_code == 200
        # the server knows it is on https: its cookie is Secure
        assert "secure" in login.headers["set-cookie"].lower()
        token = login.json()["token"]

    agent = AgentClient(ws_url(tls_server.url, "/ws/agent"), token, tls=ca.client_context())
    visitor = Visitor(tls_server.url, "v-tls", timeout=5.0, ssl=ca.client_context())
    try:
        await agent.connect()
        await agent.skip_history()
        await agent.call("setAgentState", {"state": "idle"})
        async with visitor:
            await visitor.send_message("hello over wss")
            assigned = await agent.next_event("sessionAssigned")
            assert assigned["payload"]["visitorName"] == "v-tls"
            assert [m["text"] for m in assigned["payload"]["messages"]] == ["hello over wss"]
    finally:
        await agent.aclose()


async def test_a_client_without_the_ca_is_refused(tls_server: ServerHandle) -> None:
    """The certificate is really checked: the system's CAs do not know the test's."""
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(tls_server.url + "/static/imclient.js")
    visitor = Visitor(tls_server.url, "v-no-ca", timeout=5.0)
    with pytest.raises(ssl.SSLCertVerificationError):
        await visitor.connect()
    await visitor.aclose()


def test_a_key_others_may_read_is_refused(server_settings: Callable[..., Settings], leaf: Leaf) -> None:
    os.chmod(leaf.key, 0o644)
    with pytest.raises(TlsError, match=f"chmod 600 {leaf.key}"):
        ServerRunner(server_settings(tls_cert=leaf.cert, tls_key=leaf.key))


def test_the_command_line_wants_both_files_and_a_private_key(leaf: Leaf, tmp_path: Path) -> None:
    run = CliRunner().invoke(
        app, ["server", "--port", "0", "--data-dir", str(tmp_path), "--tls-cert", str(leaf.cert)]
    )
    assert run.exit_code == 2 and "--tls-key" in run.output
    os.chmod(leaf.key, 0o640)
    run = CliRunner().invoke(
        app,
        [
            "server",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--tls-cert",
            str(leaf.cert),
            "--tls-key",
            str(leaf.key),
        ],
    )
    assert run.exit_code == 2 and "chmod 600" in " ".join(run.output.split())  # rich wraps lines


async def visitor_cli(*args: str) -> tuple[int, str]:
    """``kefu visitor …`` in a child process: (exit code, its stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kefu.cli",
        "visitor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(COLUMNS="200"),
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    return proc.returncode or 0, " ".join(out.decode().split())


async def test_the_visitor_command_trusts_a_banks_ca_with_ca_file(
    tls_server: ServerHandle, ca: TestCA, tmp_path: Path
) -> None:
    code, out = await visitor_cli(
        "v-cli",
        "--server",
        tls_server.url,
        "--ca-file",
        str(ca.cert),
        "--chat",
        "hello over wss",
        "--wait",
        "0.1",
    )
    assert code == 0, out
    assert "connected as v-cli" in out and "you: hello over wss" in out
    # the system's CAs do not know the test's: refused, saying what to do
    code, out = await visitor_cli("v-cli2", "--server", tls_server.url, "--chat", "x")
    assert code == 1 and "certificate is not trusted" in out and "--ca-file" in out, out
    # a CA file that is not one: a bad option
    code, out = await visitor_cli(
        "v-cli3", "--server", tls_server.url, "--ca-file", str(tmp_path / "none.pem")
    )
    assert code == 2 and "cannot load the CA certificates" in out, out
