"""``transferSession`` (issue 20) end to end: SDK → plugin → server → the target agent.

``IMClient`` with both calling conventions on one call, and the asyncio
``Client``; the target agent is a second link to the same server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kefu.protocol import ErrorCode
from kefu.sdk import Client, IMClient, RequestError
from tests.e2e.test_im_api_async import Both
from tests.plugin.harness import LIMIT, PASSWORD, Stack
from tests.server.clients import AgentClient


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(tmp_path) as s:
        yield s


async def second_agent(stack: Stack, name: str = "a2") -> AgentClient:
    token = (await stack.server.services.auth.login(name, PASSWORD, "127.0.0.1")).token
    a = AgentClient(stack.server.url.replace("http://", "ws://") + "/ws/agent", token)
    await a.connect()
    await a.skip_history()
    return a


async def test_transfer_session_with_both_conventions_reaches_the_target(stack: Stack) -> None:
    pushes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    client = IMClient(stack.options(kefuReady=lambda d: pushes.put_nowait(("kefuReady", d))))
    client.initInnerCallBack({"sessionTransferred": lambda d: pushes.put_nowait(("sessionTransferred", d))})
    a2 = await second_agent(stack)
    try:
        await Both(client)("startLogin", {"minimize": True, "data": {"url": stack.login_url()}})
        sid = await stack.visitor_says("v1", "I need a loan officer")
        await Both(client)("pickUpSession", {"session_id": sid})
        sub, data, payload = await Both(client)(
            "transferSession", {"session_id": sid, "agentName": "a2", "note": "loan, salaried"}
        )
        assert sub == "success" and payload == data["payload"]
        assert payload["agentName"] == "a2" and payload["transfer"]["note"] == "loan, salaried"
        got = (await a2.next_event("sessionAssigned"))["payload"]
        assert got["sessionId"] == sid and [m["text"] for m in got["messages"]] == ["I need a loan officer"]
        assert got["transfer"] == {"from": "a1", "reason": "transferred", "note": "loan, salaried"}
        while True:  # the plugin passes the server's push on to the SDK's initInnerCallBack
            name, pushed = await asyncio.wait_for(pushes.get(), LIMIT)
            if name == "sessionTransferred":
                break
        assert pushed["payload"]["to"] == "a2" and pushed["payload"]["sessionId"] == sid
        sub, data, payload = await Both(client)("transferSession", {"session_id": sid})
        assert sub == "error" and data["error"]["code"] == "forbidden"  # a2's now
    finally:
        await client.aclose()
        await a2.aclose()


async def test_transfer_session_from_the_async_client(stack: Stack) -> None:
    a2 = await second_agent(stack)
    try:
        async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as client:
            await client.start_login(stack.login_url(), minimize=True)
            sid = await stack.visitor_says("v1", "hello")
            await client.pick_up_session(sid)
            with pytest.raises(RequestError) as info:
                await client.transfer_session(sid, "a1")  # to itself
            assert info.value.code is ErrorCode.invalid_field
            back = await client.transfer_session(sid, note="for the next free agent")
            assert back["status"] == "queued" and back["position"] == 1
            assert await client.session_count() == 0
            picked = await a2.call("pickUpSession", {"session_id": sid})
            assert picked["payload"]["transfer"] == {
                "from": "a1",
                "reason": "transferred",
                "note": "for the next free agent",
            }
    finally:
        await a2.aclose()
