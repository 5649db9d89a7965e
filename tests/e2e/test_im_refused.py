"""Who may not control the plugin, end to end (SPEC §6): a foreign Origin, a
foreign Host, a non-browser client without the token or with a wrong one, a
second controller. Each is refused; the agent's controller is not disturbed."""

from __future__ import annotations

import json
import queue
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kefu.protocol import ErrorCode
from kefu.sdk import Client, IMClient, RequestError
from tests.plugin.harness import LIMIT, Stack, ThreadedStack, http_handshake, wait_for


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(tmp_path) as s:
        yield s


async def logged_in_client(stack: Stack) -> Client:
    client = Client(stack.p.url, data_dir=stack.p.settings.data_dir)
    await client.connect()
    await client.start_login(stack.login_url())
    return client


async def test_a_foreign_origin_is_refused_and_the_agent_is_undisturbed(stack: Stack) -> None:
    client = await logged_in_client(stack)
    try:
        for origin in ("https://evil.example", "null", f"{stack.server.url}.evil.example"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(stack.p.url, additional_headers={"Origin": origin}):
                    pass
            assert info.value.response.status_code == 403
            assert json.loads(info.value.response.body or b"{}")["error"]["code"] == "origin_refused"
        assert await client.session_count() == 0
    finally:
        await client.aclose()


async def test_a_foreign_host_is_refused(stack: Stack) -> None:
    client = await logged_in_client(stack)
    try:
        port = stack.p.port
        for host in (f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", "localhost"):
            status, body = await http_handshake(port, {"Host": host, "Origin": "http://evil.example"})
            assert status == 403 and body["error"]["code"] == "host_refused"
        assert await client.session_count() == 0
    finally:
        await client.aclose()


async def test_a_client_without_the_token_or_with_a_wrong_one(stack: Stack, tmp_path: Path) -> None:
    client = await logged_in_client(stack)
    try:
        with pytest.raises(RequestError) as wrong:
            await Client(stack.p.url, token="0" * 43).connect()
        assert wrong.value.code is ErrorCode.unauthenticated
        with pytest.raises(RequestError) as none:
            await Client(stack.p.url, data_dir=tmp_path / "not-the-plugins").connect()
        assert none.value.code is ErrorCode.plugin_unreachable
        # a raw client that skips the hello gets nothing but an error, then the door
        async with connect(stack.p.url) as ws:
            await ws.send(json.dumps({"v": 1, "id": "1", "mark": "sessionState"}))
            reply = json.loads(await wait_for(ws.recv()))
            assert reply["error"]["code"] == "unauthenticated" and "payload" not in reply
            with pytest.raises(ConnectionClosed):
                await wait_for(ws.recv())
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1008
        assert await client.session_count() == 0
    finally:
        await client.aclose()


async def test_a_second_controller_gets_a_clear_error_and_the_first_keeps_working(stack: Stack) -> None:
    client = await logged_in_client(stack)
    try:
        with pytest.raises(RequestError) as busy:
            await Client(stack.p.url, data_dir=stack.p.settings.data_dir).connect()
        assert busy.value.code is ErrorCode.controller_busy and "--allow-many" in (busy.value.detail or "")
        # a page of an allowed origin is a controller too: refused the same way
        async with connect(stack.p.url, additional_headers={"Origin": stack.server.url}) as page:
            refused = json.loads(await wait_for(page.recv()))
            assert refused["error"]["code"] == "controller_busy"
        # the first controller still works, and still hears the server
        sid = await stack.visitor_says("v1", "hello")
        assert (await client.pick_up_session(sid))["sessionId"] == sid
        assert await client.session_count() == 1
    finally:
        await client.aclose()


def test_a_second_imclient_is_told_why(tmp_path: Path) -> None:
    with ThreadedStack(tmp_path) as ts:
        errors: queue.Queue[dict[str, Any]] = queue.Queue()
        first = IMClient(ts.stack.options())
        assert first.wait_connected()
        second = IMClient(ts.stack.options(error=errors.put))
        try:
            assert second.wait_connected() is False
            data = errors.get(timeout=LIMIT)
            assert data["error"]["code"] == "controller_busy"
            assert "another client controls the plugin" in data["error"]["detail"]
            assert first.getWindow().result(LIMIT)["subMark"] == "success"
        finally:
            second.close()
            first.close()
