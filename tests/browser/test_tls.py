"""The real network of a bank's workstation in today's Chrome (docs/deploy.md):
the seed's init sample (SPEC §3) on an https workstation origin that is not
loopback reaches the plugin at ``wss://lccp-ex.easemob.com:<port>`` (a name
resolving to 127.0.0.1, with a certificate for it), and ``startLogin`` works;
the same page without the Local Network Access permission gets
``local_network_denied`` in its ``error`` callback at once.

What is real: Debian's Chromium 156 (its own TLS, certificate checks, mixed
content rules and Local Network Access checks), the plugin's TLS, the test
CA's certificates (made here with ``cryptography``). What the test arranges:
``--host-resolver-rules`` maps the two names to 127.0.0.1 (no DNS here);
``--ignore-certificate-errors-spki-list`` makes Chromium trust the two
certificates (a test CA is not in its store); and
``--ip-address-space-overrides`` tells Chromium the workstation's
127.0.0.1:<port> is a public web site, as a bank's workstation server is to
the agent's computer. Headless Chromium cannot show the permission prompt:
without a grant the state is "prompt" and the request is refused
(net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS), as when an agent dismisses
the prompt; Playwright's ``grant_permissions(["local-network-access"])`` is
the allowed state, CDP's ``Browser.setPermission`` the "denied" one (an agent
who chose Block, or a policy).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext

from kefu.plugin.app import IMCLIENT_JS
from kefu.protocol import CATALOGUE, ErrorCode
from tests.tlscerts import Leaf, TestCA

from .harness import CHROMIUM, CHROMIUM_ARGS, PageServer, calls, wait_js
from .workstation import Workstation

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

WORKSTATION = "workstation.bank.test"
PLUGIN = "lccp-ex.easemob.com"  # the seed's wss:// name (SPEC §3)
LNA_LIMIT = 5.0


@dataclass
class Rig:
    ca: TestCA
    plugin_cert: Leaf
    pages: PageServer
    browser: Browser


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    ca = TestCA(tmp_path_factory.mktemp("tls"))
    page_cert = ca.issue(WORKSTATION)
    plugin_cert = ca.issue(PLUGIN)
    # the page's own origin serves imclient.js too: a page the browser keeps off the local network
    # cannot load it from the plugin, and must still be told why
    async with PageServer(
        tls=page_cert.server_context(), name=WORKSTATION, files={"/imclient.js": IMCLIENT_JS}
    ) as pages:
        args = [
            *CHROMIUM_ARGS,
            f"--host-resolver-rules=MAP {WORKSTATION} 127.0.0.1, MAP {PLUGIN} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={page_cert.spki_hash},{plugin_cert.spki_hash}",
            f"--ip-address-space-overrides=127.0.0.1:{pages.port}=public",
        ]
        b = await browser.browser_type.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield Rig(ca, plugin_cert, pages, b)
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def bank_context(rig: Rig) -> AsyncIterator[BrowserContext]:
    ctx = await rig.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield ctx
    finally:
        await ctx.close()


async def test_the_seed_page_on_https_reaches_the_plugin_over_wss(
    rig: Rig, bank_context: BrowserContext, tmp_path: Path
) -> None:
    await bank_context.grant_permissions(["local-network-access"], origin=rig.pages.origin)
    async with Workstation.open(
        bank_context,
        tmp_path,
        pages=rig.pages,
        media=None,
        tls_cert=rig.plugin_cert.cert,
        tls_key=rig.plugin_cert.key,
    ) as ws:
        assert rig.pages.config["imclientUrl"] == f"https://{PLUGIN}:{ws.stack.p.port}/imclient.js"
        assert await ws.js("() => [location.protocol, location.hostname]") == ["https:", WORKSTATION]
        await ws.init()
        # the sample chose wss:// by itself (location.protocol is https:)
        assert await ws.js("() => window.__sockets") == [f"wss://{PLUGIN}:1040"]
        assert len(ws.stack.p.controllers) == 1
        await ws.login()
        await ws.calls("startLogin", "success")
        assert await ws.js("() => client.ready") is True


@pytest.mark.parametrize("decision", ["none", "denied"])
async def test_without_the_permission_the_page_is_told_local_network_denied(
    rig: Rig, bank_context: BrowserContext, tmp_path: Path, decision: str
) -> None:
    async with Workstation.open(
        bank_context,
        tmp_path,
        pages=rig.pages,
        imclient_url=rig.pages.origin + "/imclient.js",
        media=None,
        tls_cert=rig.plugin_cert.cert,
        tls_key=rig.plugin_cert.key,
    ) as ws:
        if decision == "denied":
            cdp = await bank_context.new_cdp_session(ws.page)
            target = await cdp.send("Target.getTargetInfo")
            await cdp.send(
                "Browser.setPermission",
                {
                    "permission": {"name": "local-network-access"},
                    "setting": "denied",
                    "origin": rig.pages.origin,
                    "browserContextId": target["targetInfo"]["browserContextId"],
                },
            )
        started = time.monotonic()
        await ws.js("() => { window.client = window.initIMClient(); }")
        err = (await calls(ws.page, "IMClient", "error", limit=LNA_LIMIT))[0]["args"][0]
        assert time.monotonic() - started < LNA_LIMIT
        assert err["code"] == "local_network_denied" and err["error"]["code"] == "local_network_denied"
        # undecided, headless Chromium refuses the request as an agent dismissing the prompt would,
        # and may report the state as "prompt" or (once it refused) "denied"
        states = ["denied"] if decision == "denied" else ["prompt", "denied"]
        # in the seed's language (Chinese by default), what to do; the specific English in detail
        assert err["error"]["msg"] == CATALOGUE[ErrorCode.local_network_denied].msg_zh
        assert "LocalNetworkAccessAllowedForUrls" in err["error"]["msg"]
        assert any(f"Local Network Access permission: {s})" in err["error"]["detail"] for s in states)
        assert "LocalNetworkAccessAllowedForUrls" in err["error"]["detail"]
        # a request fails the same way, at once, instead of waiting for a connection that cannot come
        await ws.js("() => client.startLogin({data: {url: 'x'}, error: function (e) {}})")
        failed = (await ws.calls("startLogin", "error"))[0]["args"][0]
        assert failed["error"]["code"] == "local_network_denied"
        assert await ws.js("() => client.linkStatus") is False
        assert ws.stack.p.controllers == []  # the plugin never heard of the page


async def test_with_the_permission_a_missing_plugin_is_still_plugin_unreachable(
    rig: Rig, bank_context: BrowserContext
) -> None:
    """The detection tells the two apart: allowed, a plugin that does not answer is not a denial."""
    await bank_context.grant_permissions(["local-network-access"], origin=rig.pages.origin)
    async with PageServer() as closed:  # a port nothing answers WebSockets on, once closed
        port = closed.port
    rig.pages.config.update(pluginPort=port, imclientUrl=rig.pages.origin + "/imclient.js")
    page = await bank_context.new_page()
    try:
        await page.goto(rig.pages.url("/workstation.html"))
        await wait_js(page, "() => typeof window.initIMClient === 'function'")
        await page.evaluate("() => { window.client = window.initIMClient(); }")
        err = (await calls(page, "IMClient", "error", limit=LNA_LIMIT))[0]["args"][0]
        assert err["error"]["code"] == "plugin_unreachable"
        assert await page.evaluate("() => window.__sockets[0]") == f"wss://{PLUGIN}:1040"
    finally:
        await page.close()
