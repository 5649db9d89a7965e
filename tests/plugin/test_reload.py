"""A page reloaded mid-call (issue 15): the new controller is told the call,
not only the state code — in the ``hello`` reply, in ``kefuReady``, in the
``getState`` reply — and the SDKs keep it as ``currentCall`` until the call
moves on. The real server, a real plugin, a real visitor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kefu.sdk import Client, IMClient
from kefu.visitor import CallUpdate
from tests.conftest import ServerHandle
from tests.e2e.callkit import AgentSide, Log

from .harness import Raw, wait_for

pytestmark = pytest.mark.server_settings(ring_timeout=10.0, call_grace=1.0)

Json = dict[str, Any]


def check_call(call: Any, call_id: str) -> None:
    assert isinstance(call, dict), call
    assert call["callId"] == call_id
    assert call["phase"] == "connected" and call["flow"] == "callVisitor" and call["primary"] == "a1"
    members = {(m["kind"], m["name"]): m["status"] for m in call["members"]}
    assert members == {("agent", "a1"): "joined", ("visitor", "v1"): "joined"}
    assert call["share"] is False


async def test_a_controller_that_connects_mid_call_is_told_the_call(
    server: ServerHandle, tmp_path: Path
) -> None:
    await server.add_agent("a1")
    a1 = AgentSide(server, "a1", tmp_path / "plugin")
    visitor = None
    again: IMClient | None = None
    try:
        await a1.start(ready=True)
        visitor = await server.visitor("v1", on_invite="accept")
        accepted = await a1.call("callbackToVisitor", {"visitorName": "v1"}).callback(
            "acceptSuccess", "006011"
        )
        call_id = accepted["payload"]["callId"]
        # the page reloads: its IMClient goes, another comes
        await a1.sdk.aclose()
        plugin = a1.plugin
        ready: Log[Json] = Log()
        again = IMClient(
            {
                "baseWsUrl": plugin.url,
                "ssoTo": f"{server.url}/agent",
                "token": plugin.token._value,
                "kefuReady": ready.add,
            }
        )
        greeting = await ready.find(lambda _: True)
        assert greeting["payload"]["state"] == "006011"
        check_call(greeting["payload"]["currentCall"], call_id)
        check_call(again.currentCall, call_id)
        got = await again.getState()
        assert got["subMark"] == "success" and got["state"] == "006011"
        check_call(got["payload"]["currentCall"], call_id)
        await again.aclose()

        # the hello reply says it too (a client that reads only its first answer)
        async with Raw.connect(plugin, hello=False) as raw:
            await raw.send({"v": 1, "id": "h", "mark": "hello", "params": {"token": plugin.token._value}})
            hello = await raw.reply("h")
            assert hello["payload"]["state"] == hello["state"] == "006011"
            assert hello["payload"]["agent"]["name"] == "a1"
            check_call(hello["payload"]["currentCall"], call_id)

        # the asyncio Client too; and the call's end clears it
        async with Client(plugin.url, token=plugin.token._value) as client:
            check_call(client.current_call, call_id)
            ended = asyncio.Event()
            client.on("call", lambda event: ended.set() if event.payload.get("what") == "ended" else None)
            await visitor.wait_for(CallUpdate, lambda e: e.what == "invited")
            await visitor.settled()
            await visitor.hangup()
            await wait_for(ended.wait())
            assert client.current_call is None
            assert (await client.get_state()).value == "005003"
            assert client.current_call is None
    finally:
        if again is not None:
            await again.aclose()
        if visitor is not None:
            await visitor.aclose()
        await a1.close()


async def test_out_of_a_call_currentCall_is_none(server: ServerHandle, tmp_path: Path) -> None:
    await server.add_agent("a1")
    a1 = AgentSide(server, "a1", tmp_path / "plugin")
    try:
        await a1.start()
        assert a1.sdk.currentCall is None
        got = await a1.sdk.getState()
        assert got["payload"]["currentCall"] is None and "since" in got["payload"]
        await a1.sdk.aclose()
        async with Client(a1.plugin.url, token=a1.plugin.token._value) as client:
            assert client.hello["payload"]["currentCall"] is None
            assert client.current_call is None
    finally:
        await a1.close()
