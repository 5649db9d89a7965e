"""Every API of SPEC §4.1, §4.2 and §4.6 from asyncio code: ``IMClient`` on
the caller's loop (both conventions on every call), and the asyncio-native
``Client``. Server, plugin and SDK on loopback ports, in the test's loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kefu.protocol import Code, ErrorCode
from kefu.sdk import Client, IMClient, RequestError
from tests.plugin.harness import LIMIT, Stack


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(tmp_path) as s:
        yield s


class Both:
    """Calls an API with a v1204 object and a v190307 callback at once; both answers."""

    def __init__(self, client: IMClient) -> None:
        self.client = client

    async def __call__(
        self, api: str, params: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any], Any]:
        old: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        new: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        options = dict(params or {})
        options["success"] = lambda data: old.put_nowait(("success", data))
        options["error"] = lambda data: old.put_nowait(("error", data))
        reply = await getattr(self.client, api)(
            options, lambda state, payload: new.put_nowait((state, payload))
        )
        sub, data = await asyncio.wait_for(old.get(), LIMIT)
        state, payload = await asyncio.wait_for(new.get(), LIMIT)
        assert reply is data or reply == data  # the Pending is the first answer
        assert state == data["state"]
        return sub, data, payload


async def test_every_api_from_asyncio_with_both_conventions(stack: Stack) -> None:
    pushes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def on(name: str) -> Any:
        return lambda data: pushes.put_nowait((name, data))

    client = IMClient(stack.options(ssoReady=on("ssoReady"), kefuReady=on("kefuReady"), quit=on("quit")))
    client.initInnerCallBack({"chatCloseCB": on("chatCloseCB")})
    call = Both(client)

    async def push(name: str) -> Any:
        while True:
            got, data = await asyncio.wait_for(pushes.get(), LIMIT)
            if got == name:
                return data

    try:
        await push("ssoReady")
        sub, data, payload = await call("startLogin", {"minimize": True, "data": {"url": stack.login_url()}})
        assert sub == "success" and payload == data["payload"] and payload["agent"]["name"] == "a1"
        assert (await push("kefuReady"))["payload"]["agent"]["name"] == "a1"
        sub, data, payload = await call("setWindowSize", {"width": "300", "height": "400"})
        assert (payload["width"], payload["height"]) == (300, 400)
        assert (await call("minimize"))[2]["minimized"] is True
        assert (await call("restore"))[2]["minimized"] is False
        assert (await call("startup", {"clientUrl": "pocprotocol://"}))[2]["visible"] is True
        sub, data, payload = await call("sessionCount")
        assert data["payload"]["sessionCount"] == 0 and payload == {"sessionCount": 0}
        sub, data, payload = await call("isMultipleVideo")
        assert data["data"] is False and payload == {"data": False}
        assert (await call("isShareState"))[1]["data"] is False
        sid = await stack.visitor_says("v1", "hello")
        sub, data, payload = await call("pickUpSession", {"session_id": sid})
        assert sub == "success" and payload["sessionId"] == sid
        sub, data, payload = await call("sessionState")
        assert [s["sessionId"] for s in data["payload"]["sessions"]] == [sid]
        sub, data, payload = await call("pickUpSession", {"session_id": "x"})
        assert sub == "error" and data["error"]["msg"] and payload == {"error": data["error"]}
        sub, data, payload = await call("chatClose")
        assert sub == "success" and (await push("chatCloseCB"))["payload"]["sessionId"] == sid
        sub, data, payload = await call("setAgentState", {"state": "idle"})
        assert data["state"] == "002000"
        sub, data, payload = await call("logout")
        assert data["state"] == "000000"
        await push("ssoReady")
        assert (await call("quit"))[0] == "success"
        assert (await push("quit"))["payload"] == {"reason": "quit"}
    finally:
        await client.aclose()


async def test_every_api_from_the_async_client(stack: Stack) -> None:
    async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as client:
        events = client.events("initInnerCallBack", "client")
        states = client.states()
        assert (await anext(events)).name == "ssoReady"
        login = await client.start_login(stack.login_url(), minimize=True)
        agent = {"name": "a1", "admin": False, "maxSessions": 5}
        assert login == {"agent": agent, "state": "001000", "currentCall": None}
        assert (await anext(events)).name == "kefuReady"
        assert await client.set_window_size(300, "400") == {
            "width": 300,
            "height": 400,
            "minimized": True,
            "visible": True,
        }
        assert (await client.restore())["minimized"] is False
        assert (await client.minimize())["minimized"] is True
        assert (await client.startup())["minimized"] is False
        assert (await client.get_window())["visible"] is True
        assert await client.session_count() == 0
        assert await client.session_state() == []
        assert await client.is_multiple_video() is False
        assert await client.is_share_state() is False
        sid = await stack.visitor_says("v1", "hello")
        picked = await client.pick_up_session(sid)
        assert picked["sessionId"] == sid
        assert await client.session_count() == 1
        assert [s["sessionId"] for s in await client.session_state()] == [sid]
        sent = await client.send_message(sid, "how can I help?", client_msg_id="m-1")
        assert sent["text"] == "how can I help?"
        with pytest.raises(RequestError) as info:
            await client.pick_up_session("nope")
        assert info.value.code is ErrorCode.no_such_session
        closed = await client.chat_close()
        assert closed == {"sessionId": sid, "by": "agent", "reason": "chatClose"}
        cb = await anext(events)
        assert (cb.kind, cb.name, cb.payload["sessionId"]) == ("initInnerCallBack", "chatCloseCB", sid)
        assert await client.set_agent_state("idle") is Code.idle
        assert (await anext(states)).code is Code.idle
        assert await client.set_agent_state("busy", reason="meeting") is Code.busy
        change = await anext(states)
        assert change.code is Code.busy and change.reason == "meeting"
        assert await client.get_state() is Code.busy
        with pytest.raises(RequestError) as call_api:
            await client.callback_to_visitor("nobody")
        assert call_api.value.code is ErrorCode.SDK_08 and call_api.value.state == "002004"
        with pytest.raises(RequestError) as media:
            await client.take_photo()
        assert media.value.code is ErrorCode.not_in_call  # logged in, but in no call
        assert await client.logout() is Code.notLogin
        assert (await anext(events)).name == "ssoReady"
        await client.quit()
        assert (await anext(events)).name == "quit"
