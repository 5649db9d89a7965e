"""The spec's own sample code (SPEC §3, §4, §5), unchanged, in a workstation
page in Chromium, against the real server and plugin, with Python visitors
and agents around it. Each callback's data is recorded by the page's harness
(``window.__calls``) and checked here."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from .workstation import Workstation

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_init_window_login_im_and_queries(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path) as ws:
        await ws.init()
        assert await ws.js("() => window.__sockets") == ["ws://127.0.0.1:1040"]  # the sample's own URL
        success = (await ws.calls("IMClient", "success"))[0]["args"][0]
        assert success["payload"]["browser"] is True
        assert await ws.js("() => [client.linkStatus, client.ready]") == [True, False]
        sso = await ws.calls("IMClient", "ssoReady")
        names = [c["name"] for c in await ws.recorded()]
        assert names.index("success") < names.index("ssoReady")  # connected, then ready for a login
        assert sso[0]["args"][0]["payload"]["server"] == ws.stack.server.url

        # SPEC §4.1 startLogin, unchanged: its URL is the vendor's host, which the plugin never fetches
        await ws.run_ok("s4_startLogin")
        err = (await ws.calls("startLogin", "error"))[0]["args"][0]
        assert err["code"] == "invalid_field" and err["error"]["field"] == "params.data.url"
        await ws.login()  # the same agent (23160006 / 76160006) on the test's server
        print(await ws.recorded())
