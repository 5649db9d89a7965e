"""imclient.js itself, in Chromium: its table of final callbacks is the
protocol's, it waits for the plugin and reconnects, and a second page gets
the plugin's controller_busy once while the first keeps control."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from kefu.plugin import Plugin
from kefu.protocol.plugin_api import CALL_FINAL_SUBMARKS, PLUGIN_API, is_final
from tests.plugin.harness import ServerHandle, fast_settings

from .harness import PageServer, calls, wait_js
from .workstation import SPEC_AGENT, Workstation

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

BLANK = "/blank.html"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_final_callbacks_are_the_protocols(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        sub_marks = sorted(
            set().union(*CALL_FINAL_SUBMARKS.values()) | {"success", "inviteSuccess", "ringing"}
        )
        marks = sorted(PLUGIN_API.marks)
        table = await ws.js(
            "([marks, subs]) => marks.map(m => subs.map(s => IMClient.isFinal(m, s)))", [marks, sub_marks]
        )
        expected = [[is_final(m, s) for s in sub_marks] for m in marks]
        assert table == expected


async def test_it_waits_for_the_plugin_and_reconnects(context: BrowserContext, tmp_path: Path) -> None:
    port = free_port()
    server = ServerHandle(tmp_path / "server")
    await server.start()
    async with PageServer() as pages:
        page = await context.new_page()
        await page.goto(pages.url(BLANK))
        await page.add_script_tag(url=f"{server.url}/static/imclient.js")  # the server serves it too
        settings = fast_settings(server.url, tmp_path / "plugin", port=port, allow_origins=(pages.origin,))
        try:
            # nothing listens yet: `error` once, and a request made now waits for the connection
            await page.evaluate(
                """port => {
                    window.__got = [];
                    window.client = new IMClient({
                        baseWsUrl: "ws://127.0.0.1:" + port, ssoTo: "http://127.0.0.1/agent",
                        success: d => __got.push(["success", d.payload.browser]),
                        error: d => __got.push(["error", d.error.code]),
                        ssoReady: d => __got.push(["ssoReady", d.payload.server]),
                    });
                    client.isShareState({success: d => __got.push(["isShareState", d.data])});
                }""",
                port,
            )
            await wait_js(page, "() => __got.length >= 1")
            assert await page.evaluate("() => __got") == [["error", "plugin_unreachable"]]

            plugin = Plugin(settings)
            await plugin.start()  # the client's next try (a growing delay from 0.5 s) connects
            try:
                got = await wait_js(page, "() => __got.length >= 4 && __got")
                assert got == [
                    ["error", "plugin_unreachable"],
                    ["success", True],
                    ["ssoReady", server.url],
                    ["isShareState", False],
                ]
                assert await page.evaluate("() => client.linkStatus") is True
            finally:
                await plugin.aclose()
            # the plugin went away: one more `error`, and the client is not linked
            await wait_js(page, "() => __got.length >= 5")
            assert (await page.evaluate("() => __got"))[4] == ["error", "plugin_unreachable"]
            assert await page.evaluate("() => client.linkStatus") is False
        finally:
            await page.close()
            await server.stop()


async def test_a_second_page_gets_controller_busy(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        second = await context.new_page()
        await second.goto(ws.pages.url("/workstation.html"))
        await second.evaluate("() => { window.client = window.initIMClient(); }")
        err = (await calls(second, "IMClient", "error"))[0]["args"][0]
        assert err["error"]["code"] == "controller_busy" and err["code"] == "controller_busy"
        names = [c["name"] for c in await second.evaluate("() => window.__calls")]
        assert names == ["error"]  # no success, no ssoReady, and the close is not a second error
        await second.close()
        await ws.login()  # the first page still controls the plugin
        assert await ws.set_state("idle") == "002000"


async def test_a_page_reloaded_mid_call_gets_the_current_call(
    context: BrowserContext, tmp_path: Path
) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        await ws.login()
        assert await ws.set_state("idle") == "002000"
        assert await ws.js("() => client.currentCall") is None
        await ws.visitor("v1", media=None)
        await ws.js(
            "() => client.callbackToVisitor({visitorName: 'v1', acceptSuccess: d => { window.__accepted = d; }})"
        )
        accepted = await wait_js(ws.page, "() => window.__accepted")
        call_id = accepted["payload"]["callId"]
        current = await wait_js(
            ws.page,
            "() => client.currentCall && client.currentCall.phase === 'connected' && client.currentCall",
        )
        assert current["callId"] == call_id

        # the page reloads: a new IMClient, the agent still in its call
        await ws.page.reload()
        await wait_js(ws.page, "() => typeof window.initIMClient === 'function'")
        await ws.init()
        ready = await calls(ws.page, "IMClient", "kefuReady")
        told = ready[0]["args"][0]["payload"]
        assert told["state"] == "006011" and told["currentCall"]["callId"] == call_id
        current = await ws.js("() => client.currentCall")
        assert current["callId"] == call_id and current["phase"] == "connected"
        members = {(m["kind"], m["name"]): m["status"] for m in current["members"]}
        assert members == {("agent", SPEC_AGENT): "joined", ("visitor", "v1"): "joined"}
        got = await ws.js("() => new Promise(r => client.getState((state, payload) => r([state, payload])))")
        assert got[0] == "006011" and got[1]["currentCall"]["callId"] == call_id

        # the call ends: the call event clears it
        await ws.js("() => client.videoDisconnect({})")
        await wait_js(ws.page, "() => client.currentCall === null")
