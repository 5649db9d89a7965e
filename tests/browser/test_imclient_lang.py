"""imclient.js's own errors in the page's language (Chinese by default, as the seed
prints them; English when the page asks), from the catalogue's table that
`kefu docs` embeds in it; and the v1204 release note's closeVideoSuccess, in Chromium."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from kefu.plugin.app import IMCLIENT_JS
from kefu.protocol import CATALOGUE, ErrorCode

from .harness import PageServer, wait_js
from .workstation import Workstation

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

UNREACHABLE = CATALOGUE[ErrorCode.plugin_unreachable]
CJK = re.compile(r"[\u4e00-\u9fff]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def errors_without_plugin(context: BrowserContext, options: dict[str, Any]) -> list[Any]:
    """A page whose plugin does not answer: what its `error` callback and a request's `error` got."""
    port = free_port()  # nothing listens there
    async with PageServer(files={"/imclient.js": IMCLIENT_JS}) as pages:
        page = await context.new_page()
        try:
            await page.goto(pages.url("/blank.html"))
            await page.add_script_tag(url=pages.url("/imclient.js"))
            await page.evaluate(
                """([port, options]) => {
                    window.__got = [];
                    window.client = new IMClient(Object.assign({
                        baseWsUrl: "ws://127.0.0.1:" + port, ssoTo: "http://127.0.0.1/agent",
                        reconnect: false,
                        error: d => __got.push(["client", d.code, d.error]),
                    }, options));
                    client.isShareState({error: d => __got.push(["isShareState", d.code, d.error])});
                }""",
                [port, options],
            )
            got: list[Any] = await wait_js(page, "() => __got.length >= 2 && __got")
            return got
        finally:
            await page.close()


async def test_the_clients_own_errors_are_in_chinese_by_default(context: BrowserContext) -> None:
    got = await errors_without_plugin(context, {})
    assert [g[:2] for g in got] == [["client", "plugin_unreachable"], ["isShareState", "plugin_unreachable"]]
    for _, _, error in got:
        assert error["msg"] == UNREACHABLE.msg_zh == "插件无响应,请先启动插件"
        assert error["detail"].startswith("the plugin does not answer on ws://127.0.0.1:")  # nothing lost


async def test_the_clients_own_errors_are_in_english_when_the_page_asks(context: BrowserContext) -> None:
    got = await errors_without_plugin(context, {"lang": "en"})
    assert [g[:2] for g in got] == [["client", "plugin_unreachable"], ["isShareState", "plugin_unreachable"]]
    for _, _, error in got:
        assert error["msg"].startswith("the plugin does not answer on ws://127.0.0.1:")
        assert not CJK.search(error["msg"]) and "detail" not in error


async def test_close_video_success_is_called_when_the_call_ends(
    context: BrowserContext, tmp_path: Path
) -> None:
    """v1204's release note names the hang-up callback closeVideoSuccess: a page that registers
    only that name (not kefuCloseVideoSuccess) hears the agent's hang-up there."""
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        await ws.login()
        assert await ws.set_state("idle") == "002000"
        await ws.visitor("v1", media=None)
        await ws.js(
            """() => client.callbackToVisitor({visitorName: 'v1',
                   acceptSuccess: d => { window.__accepted = d; },
                   closeVideoSuccess: d => { window.__closed = d; }})"""
        )
        await wait_js(ws.page, "() => window.__accepted")
        assert await ws.js("() => window.__closed === undefined")
        await ws.js("() => client.videoDisconnect({})")
        closed = await wait_js(ws.page, "() => window.__closed")
        assert closed["subMark"] == "kefuCloseVideoSuccess" and closed["state"] == "005004"
