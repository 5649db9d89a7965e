"""The plugin over TLS (``kefu plugin --tls-cert --tls-key``): ``wss://`` and
``https://…/imclient.js`` on its port with a certificate for a name that
resolves to 127.0.0.1 (SPEC §3: ``wss://lccp-ex.easemob.com:1040``); that
name is accepted as Host besides 127.0.0.1 and localhost, no other one is.
Real TLS on 127.0.0.1, the client trusting the test's CA only."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kefu.cli import app
from kefu.plugin import Plugin
from kefu.protocol import ErrorCode
from kefu.tls import TlsError
from tests.tlscerts import Leaf, TestCA

from .harness import PluginFactory, Raw, ServerHandle, fast_settings, http_handshake

NAME = "lccp-ex.easemob.com"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "tls")


@pytest.fixture
def leaf(ca: TestCA) -> Leaf:
    return ca.issue(NAME)


async def test_wss_with_the_certificate_name_as_host(
    kefu_server: ServerHandle, plugin_factory: PluginFactory, ca: TestCA, leaf: Leaf
) -> None:
    p = await plugin_factory(kefu_server.url, tls_cert=leaf.cert, tls_key=leaf.key)
    assert p.url == f"wss://{NAME}:{p.port}" and p.tls_names == (NAME,)
    # the URL's name, connected on 127.0.0.1 (what the name resolves to); the certificate is checked
    async with Raw.connect(p, host="127.0.0.1", ssl=ca.client_context()) as raw:
        state = await raw.call("w", "getWindow")
        assert state["subMark"] == "success"
    # imclient.js over https, asked for by that name
    async with httpx.AsyncClient(verify=ca.client_context(), trust_env=False) as http:
        script = await http.get(
            f"https://127.0.0.1:{p.port}/imclient.js",
            headers={"Host": f"{NAME}:{p.port}"},
            extensions={"sni_hostname": NAME},
        )
    assert script.status_code == 200 and "IMClient" in script.text


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        (f"{NAME}:{{port}}", False),
        ("127.0.0.1:{port}", False),
        ("localhost:{port}", False),
        ("evil.example:{port}", True),  # a rebinding page's own name
        (f"{NAME}:1", True),
        (f"x.{NAME}:{{port}}", True),
        (f"{NAME}.evil.example:{{port}}", True),
    ],
)
async def test_only_the_certificate_names_and_loopback_are_hosts(
    kefu_server: ServerHandle, plugin_factory: PluginFactory, ca: TestCA, leaf: Leaf, host: str, refused: bool
) -> None:
    p = await plugin_factory(kefu_server.url, tls_cert=leaf.cert, tls_key=leaf.key)
    status, body = await http_handshake(
        p.port, {"Host": host.format(port=p.port)}, tls=ca.client_context(), sni=NAME
    )
    if refused:
        assert status == 403 and body["error"]["code"] == ErrorCode.host_refused.value
        assert f"{NAME}:{p.port}" in body["error"]["msg"]
    else:
        assert status == 101


async def test_a_key_others_may_read_is_refused_before_anything(
    kefu_server: ServerHandle, leaf: Leaf, tmp_path: Path
) -> None:
    os.chmod(leaf.key, 0o644)
    p = Plugin(fast_settings(kefu_server.url, tmp_path / "p", tls_cert=leaf.cert, tls_key=leaf.key))
    with pytest.raises(TlsError, match=f"chmod 600 {leaf.key}"):
        await p.start()
    assert not p.settings.token_path.exists()  # nothing was started: no pairing token written
    await p.aclose()


def test_the_command_line_refuses_half_a_pair_and_a_readable_key(leaf: Leaf, tmp_path: Path) -> None:
    base = [
        "plugin",
        "--server",
        "http://127.0.0.1:9",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--headless",
    ]
    run = CliRunner().invoke(app, [*base, "--no-media", "--tls-cert", str(leaf.cert)])
    assert run.exit_code == 2 and "--tls-key" in run.output
    os.chmod(leaf.key, 0o604)
    run = CliRunner().invoke(
        app, [*base, "--no-media", "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key)]
    )
    assert run.exit_code == 2 and "chmod 600" in " ".join(run.output.split())


async def test_the_link_to_an_https_server_trusts_the_server_ca(
    tmp_path: Path, plugin_factory: PluginFactory, ca: TestCA
) -> None:
    """Both ends on TLS: the plugin logs in over https (``startLogin``'s fetch) and links
    over wss to a server whose certificate comes from the bank's CA (``--server-ca``)."""
    server_cert = ca.issue("127.0.0.1", file="server")
    server = ServerHandle(tmp_path / "server", tls_cert=server_cert.cert, tls_key=server_cert.key)
    await server.start()
    try:
        assert server.url.startswith("https://")
        await server.add_agent("a1")
        trusting = await plugin_factory(server.url, server_ca=ca.cert)
        async with Raw.connect(trusting) as raw:
            await raw.push("client", "ssoReady")
            reply = await raw.call("L", "startLogin", {"data": {"url": server.login_url("a1")}})
            assert reply["subMark"] == "success", reply
            await raw.push("client", "kefuReady")
            state = await raw.call("s", "setAgentState", {"state": "idle"})
            assert state["subMark"] == "success" and state["state"] == "002000"  # over the wss link
        # without the CA, the system's store does not know the server's certificate
        other = await plugin_factory(server.url)
        async with Raw.connect(other) as raw:
            await raw.push("client", "ssoReady")
            reply = await raw.call("L", "startLogin", {"data": {"url": server.login_url("a1")}})
            assert reply["subMark"] == "error" and reply["error"]["code"] == ErrorCode.upstream_down.value
    finally:
        await server.stop()
