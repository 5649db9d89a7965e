"""A page on a foreign origin cannot control the plugin (docs/plugin.md):
the same workstation page, served from an origin the plugin does not allow,
loads imclient.js but its socket is refused before the upgrade (HTTP 403),
while the page on the allowed origin keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from .harness import PageServer, calls, wait_js
from .workstation import Workstation

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_a_foreign_origin_cannot_control_the_plugin(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path) as ws, PageServer(config=ws.pages.config) as foreign:
        await ws.init()
        await ws.login()
        assert foreign.origin != ws.pages.origin

        page = await context.new_page()
        await page.goto(foreign.url("/workstation.html"))
        assert await page.evaluate("() => typeof IMClient") == "function"  # the script itself loads
        await page.evaluate("() => { window.client = window.initIMClient(); }")
        err = (await calls(page, "IMClient", "error"))[0]["args"][0]
        assert err["error"]["code"] == "plugin_unreachable"
        # a bare WebSocket from that page: refused before it opens
        code = await page.evaluate(
            """port => new Promise(resolve => {
                const s = new WebSocket("ws://127.0.0.1:" + port + "/");
                s.onopen = () => resolve("open");
                s.onclose = ev => resolve(ev.code);
            })""",
            ws.stack.p.port,
        )
        assert code == 1006
        # its requests go nowhere: the plugin's window and state stay as the real page left them
        await page.evaluate("() => { client.minimize(); client.logout(); }")
        assert await page.evaluate("() => [client.linkStatus, client.ready]") == [False, False]
        names = [c["name"] for c in await page.evaluate("() => window.__calls")]
        assert "success" not in names and "ssoReady" not in names and "kefuReady" not in names
        await page.close()

        # the allowed page still controls the plugin, and nothing changed
        assert len(ws.stack.p.controllers) == 1
        assert ws.stack.p.window.state.minimized is False
        assert await ws.set_state("busy") == "001000"
        await wait_js(ws.page, "() => client.linkStatus === true")
