"""The spec's own sample code (SPEC §3, §4, §5), unchanged, in a workstation
page in Chromium, against the real server and plugin, with Python visitors
and agents around it. Each callback's data is recorded by the page's harness
(``window.__calls``) and checked here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from kefu.plugin.window import WindowState

from .harness import LIMIT, wait_js
from .workstation import SPEC_AGENT, Workstation

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
        ready = (await ws.calls("IMClient", "kefuReady"))[0]["args"][0]
        assert ready["payload"]["agent"]["name"] == SPEC_AGENT and ready["payload"]["state"] == "001000"
        assert await ws.logs() == [
            ["成功连接", success],
            ["进入单点登录页面了,可以登录了 123+"],
            ["进入客服系统了,可以退出了 123-"],
        ]


async def test_window_im_and_query_samples(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path) as ws:
        await ws.init()
        await ws.login()
        window = ws.stack.p.window
        changes: asyncio.Queue[WindowState] = asyncio.Queue()
        window.on_change(lambda _old, new: changes.put_nowait(new))

        async def wait_until(ok: Callable[[WindowState], bool]) -> None:
            while not ok(window.state):
                await asyncio.wait_for(changes.get(), LIMIT)

        # SPEC §4.1: the window samples (they have no callbacks: the plugin's window shows them)
        await ws.run_ok("s4_setWindowSize")
        await ws.run_ok("s4_minimize")
        await wait_until(lambda w: (w.width, w.height, w.minimized) == (300, 400, True))
        await ws.run_ok("s4_restore")
        await wait_until(lambda w: not w.minimized)
        await ws.run_ok("s4_startup")
        await wait_until(lambda w: w.visible)

        # SPEC §4.2: a visitor waits; the sample picks the session up by `serviceSessionId`
        v = await ws.visitor("v1")
        sid = (await v.send_message("hello"))["sessionId"]
        await ws.set_global("serviceSessionId", sid)
        await ws.run_ok("s4_pickUpSession")
        picked = (await ws.calls("pickUpSession", "success"))[0]["args"][0]
        assert picked["payload"]["sessionId"] == sid and picked["payload"]["status"] == "open"
        assert ["IM接起成功!", picked] in await ws.logs()  # the sample's own console.log

        # SPEC §4.6
        await ws.run_ok("s4_sessionCount")
        count = (await ws.calls("sessionCount", "success"))[0]["args"][0]
        assert count["payload"]["sessionCount"] == 1
        assert (await ws.logs())[-1] == [1]  # console.log(data.payload.sessionCount)
        await ws.run_ok("s4_sessionState")
        sessions = (await ws.calls("sessionState", "success"))[0]["args"][0]["payload"]["sessions"]
        assert [s["sessionId"] for s in sessions] == [sid]
        await ws.run_ok("s4_isMultipleVideo")
        assert (await ws.calls("isMultipleVideo", "success"))[0]["args"][0]["data"] is False
        await ws.run_ok("s4_isShareState")
        assert (await ws.calls("isShareState", "success"))[0]["args"][0]["data"] is False

        # SPEC §4.2 chatClose: the init sample's chatCloseCB hears it (SPEC §3.2)
        await ws.run_ok("s4_chatClose")
        closed = (await ws.calls("initInnerCallBack", "chatCloseCB"))[0]["args"][0]
        assert closed["payload"]["sessionId"] == sid and closed["payload"]["by"] == "agent"

        # SPEC §4.1 quit: the plugin stops; the sample's `error` is not called for it
        await ws.run_ok("s4_quit")
        await asyncio.wait_for(ws.stack.p.wait_stopped(), LIMIT)
        await wait_js(ws.page, "() => client.linkStatus === false")
        assert [c for c in await ws.recorded() if c["api"] == "IMClient" and c["name"] == "error"] == []
