"""The plugin's link to the server (``/ws/agent``): forwarding, pushes,
breaks and resumption, replacement, refusal.

Most tests run the real server; a few edge cases (a server that sends a
duplicate, a gap, or never answers) use :class:`ContractServer`, a small
WebSocket server that speaks the agent socket's contract and does only what
the test tells it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from kefu.plugin import AgentLink, Plugin
from kefu.protocol import ApiError, ErrorCode
from kefu.server.accounts import set_disabled

from .harness import (
    PluginFactory,
    Proxy,
    Raw,
    ServerHandle,
    Visitor,
    login_url,
    wait_for,
)


async def logged_in(raw: Raw, url: str, *, ready: bool = True, sso: bool = True) -> dict[str, Any]:
    if sso:
        await raw.push("client", "ssoReady")
    reply = await raw.call("login", "startLogin", {"data": {"url": url}})
    assert reply["subMark"] == "success", reply
    await raw.push("client", "kefuReady")
    if ready:
        assert (await raw.call("ready", "setAgentState", {"state": "idle"}))["state"] == "002000"
        await raw.push("state")
    return reply


async def texts_until_reply(raw: Raw, rid: str, mark: str) -> list[str]:
    """Send ``mark``; the texts of the ``message`` events that arrive before its reply."""
    await raw.send({"v": 1, "id": rid, "mark": mark})
    await raw.reply(rid)
    texts = [m["payload"]["text"] for m in raw.pushes if m.get("subMark") == "message"]
    raw.pushes = [m for m in raw.pushes if m.get("subMark") != "message"]
    return texts


# --- the real server


async def test_requests_are_forwarded_and_answers_mapped_back(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw, Visitor.connect(kefu_server, "v1") as visitor:
        await logged_in(raw, kefu_server.login_url("a1"))
        await visitor.say("hi")
        assigned = await raw.push("event", "sessionAssigned")
        sid = assigned["payload"]["sessionId"]
        reply = await raw.call(
            "my-id", "sendMessage", {"session_id": sid, "text": "hello", "clientMsgId": "m1"}
        )
        assert reply["id"] == "my-id" and reply["mark"] == "sendMessage" and reply["subMark"] == "success"
        assert reply["payload"]["text"] == "hello" and "seq" not in reply
        assert (await visitor.event("message"))["payload"]["text"] == "hello"
        err = await raw.call("e", "pickUpSession", {"session_id": "nope"})
        assert err["subMark"] == "error" and err["error"]["code"] == "no_such_session"
        assert err["state"] == "002000"
        closed = await raw.call("c", "chatClose", {"session_id": sid})
        assert closed["payload"] == {"sessionId": sid, "by": "agent", "reason": "chatClose"}
        cb = await raw.push("initInnerCallBack", "chatCloseCB")
        assert cb["payload"]["sessionId"] == sid and "seq" not in cb


async def test_a_cut_link_reports_kefuWSClose_then_recovers_with_every_missed_event_once(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    proxy = Proxy(kefu_server.port)
    await proxy.start()
    plugin = await plugin_factory(proxy.url)
    try:
        async with Raw.connect(plugin) as raw, Visitor.connect(kefu_server, "v1") as visitor:
            await logged_in(raw, login_url(proxy.url, "a1"))
            await visitor.say("m0")
            sid = (await raw.push("event", "sessionAssigned"))["payload"]["sessionId"]
            await proxy.cut()
            down = await raw.push("client", "kefuWSClose")
            assert down["payload"]["reconnecting"] is True
            # while the link is down: the server keeps the agent's events
            for i in range(1, 4):
                await visitor.say(f"m{i}")
            refused = await raw.call("x", "sessionCount")
            assert refused["error"]["code"] == "upstream_down"
            await proxy.restore()
            up = await raw.push("client", "kefuWSOpen")
            assert up["payload"]["state"] == "002000"
            assert await texts_until_reply(raw, "sync1", "sessionCount") == ["m1", "m2", "m3"]
            await visitor.say("m4")
            assert (await raw.push("event", "message"))["payload"]["text"] == "m4"
            assert await texts_until_reply(raw, "sync2", "sessionState") == []
            assert (await raw.call("n", "sessionCount"))["payload"]["sessionCount"] == 1
            assert sid
    finally:
        await proxy.aclose()


async def test_the_server_restarting_is_survived(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        await logged_in(raw, kefu_server.login_url("a1"))
        async with Visitor.connect(kefu_server, "v1") as visitor:
            await visitor.say("before")
            await raw.push("event", "sessionAssigned")
        await kefu_server.stop()
        assert (await raw.push("client", "kefuWSClose"))["payload"]["reconnecting"] is True
        await kefu_server.start()
        assert (await raw.push("client", "kefuWSOpen"))["payload"]["state"] == "002000"
        async with Visitor.connect(kefu_server, "v1b") as visitor:
            await visitor.say("after")
            assigned = await raw.push("event", "sessionAssigned")
            assert assigned["payload"]["visitorName"] == "v1b"
        texts = await texts_until_reply(raw, "sync", "sessionCount")
        assert "before" not in texts  # nothing from before the break comes again


async def test_a_newer_login_of_the_agent_replaces_the_link_without_a_fight(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    first = await plugin_factory(kefu_server.url)
    second = await plugin_factory(kefu_server.url)
    async with Raw.connect(first) as one, Raw.connect(second) as two:
        await logged_in(one, kefu_server.login_url("a1"))
        await logged_in(two, kefu_server.login_url("a1"), ready=False)
        closed = await one.push("client", "kefuWSClose")
        assert closed["payload"]["reason"] == "replaced" and closed["payload"]["reconnecting"] is False
        await one.push("client", "ssoReady")
        assert first.link is None and first.agent is None
        assert (await one.call("1", "sessionCount"))["error"]["code"] == "not_logged_in"
        # the newer link stays up: its SDK hears of no break
        assert (await two.call("2", "sessionCount"))["subMark"] == "success"
        assert not [m for m in two.pushes if m.get("subMark") == "kefuWSClose"]


async def test_a_refused_token_on_reconnect_ends_the_login(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    proxy = Proxy(kefu_server.port)
    await proxy.start()
    plugin = await plugin_factory(proxy.url)
    try:
        async with Raw.connect(plugin) as raw:
            await logged_in(raw, login_url(proxy.url, "a1"), ready=False)
            await proxy.cut()
            await raw.push("client", "kefuWSClose")
            await set_disabled(kefu_server.services.store, "a1", True)  # revokes the agent's tokens
            await proxy.restore()
            ended = await raw.push("client", "kefuWSClose")
            assert ended["payload"]["reconnecting"] is False
            assert ended["payload"]["reason"] in ("unauthenticated", "token_revoked", "account_disabled")
            await raw.push("client", "ssoReady")
            assert plugin.link is None
    finally:
        await proxy.aclose()


async def test_a_page_reload_keeps_the_agent_logged_in(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        await logged_in(raw, kefu_server.login_url("a1"))
    async with Raw.connect(plugin) as again:
        ready = await again.push("client", "kefuReady")
        assert ready["payload"]["agent"]["name"] == "a1" and ready["payload"]["state"] == "002000"
        assert not [m for m in again.pushes if m.get("subMark") == "ssoReady"]
        assert (await again.call("1", "getState"))["state"] == "002000"


async def test_logout_ends_the_link_and_the_plugin_is_ready_for_a_login(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        await logged_in(raw, kefu_server.login_url("a1"))
        reply = await raw.call("o", "logout")
        assert reply["subMark"] == "success" and reply["state"] == "000000"
        await raw.push("client", "ssoReady")
        assert plugin.link is None and plugin.state == "000000"
        assert not [m for m in raw.pushes if m.get("subMark") == "kefuWSClose"]
        await logged_in(raw, kefu_server.login_url("a1"), ready=False, sso=False)  # and again


# --- edge cases against a server that does what the test says


class ContractServer:
    """``/ws/agent`` as the contract says, scripted by the test."""

    def __init__(self) -> None:
        self.port = 0
        self.conns: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.auths: list[dict[str, Any]] = []
        self.last_seq = 5
        self.refuse: dict[str, str] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ContractServer]:
        async with serve(self._handler, "127.0.0.1", 0) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            yield self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent"

    async def _handler(self, ws: ServerConnection) -> None:
        auth = json.loads(await ws.recv())
        self.auths.append(auth)
        if self.refuse is not None:
            await ws.send(
                json.dumps(
                    {"v": 1, "id": auth["id"], "mark": "auth", "subMark": "error", "error": self.refuse}
                )
            )
            await ws.close(1008, self.refuse["code"])
            return
        payload = {"agent": {"name": "a1"}, "lastSeq": self.last_seq, "sessions": []}
        await ws.send(
            json.dumps(
                {
                    "v": 1,
                    "id": auth["id"],
                    "mark": "auth",
                    "subMark": "success",
                    "state": "001000",
                    "payload": payload,
                }
            )
        )
        await self.conns.put(ws)
        with contextlib.suppress(Exception):
            async for raw in ws:
                await self.requests.put(json.loads(raw))


class Listener:
    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def link_up(self, auth: Any, recovered: bool) -> None:
        self.events.put_nowait(("up", recovered))

    def link_down(self, reason: str, code: int | None) -> None:
        self.events.put_nowait(("down", code))

    def link_ended(self, reason: str, code: int | None) -> None:
        self.events.put_nowait(("ended", reason))

    def link_push(self, msg: Any) -> None:
        self.events.put_nowait(("push", msg["seq"]))

    async def next(self) -> tuple[str, Any]:
        result: tuple[str, Any] = await wait_for(self.events.get())
        return result


def push(seq: int) -> str:
    return json.dumps({"v": 1, "seq": seq, "mark": "event", "subMark": "queue", "payload": {}})


async def test_history_duplicates_are_dropped_and_the_resume_point_is_sent() -> None:
    cs = ContractServer()
    async with cs.running():
        listener = Listener()
        link = AgentLink(cs.url, "tok", listener, backoff_min=0.01, backoff_max=0.02)
        auth = await link.start()
        assert auth["state"] == "001000" and cs.auths[0]["params"] == {"token": "tok", "lastSeq": 0}
        ws = await wait_for(cs.conns.get())
        for seq in (4, 5, 6, 6, 7, 5, 9):  # history (<= 5), live, duplicates, a gap
            await ws.send(push(seq))
        assert [await listener.next() for _ in range(3)] == [("push", 6), ("push", 7), ("push", 9)]
        await ws.close(1012)  # the server restarts
        assert await listener.next() == ("down", 1012)
        assert await listener.next() == ("up", True)
        assert cs.auths[1]["params"] == {"token": "tok", "lastSeq": 9}
        await link.close()


async def test_what_the_plugin_holds_goes_in_the_login_auth_only() -> None:
    """``mediaCalls`` is said as the plugin logs in; a reconnect (same process, its
    media alive) does not say it, so the server never ends a call for a reconnect."""
    cs = ContractServer()
    async with cs.running():
        listener = Listener()
        link = AgentLink(cs.url, "tok", listener, backoff_min=0.01, backoff_max=0.02)
        await link.start({"mediaCalls": ["c1"], "token": "not this", "lastSeq": 5})
        assert cs.auths[0]["params"] == {"mediaCalls": ["c1"], "token": "tok", "lastSeq": 0}
        ws = await wait_for(cs.conns.get())
        await ws.close(1012)
        assert await listener.next() == ("down", 1012)
        assert await listener.next() == ("up", True)
        assert cs.auths[1]["params"] == {"token": "tok", "lastSeq": link.last_seq}
        await link.close()


async def test_one_answer_per_request_a_timeout_and_a_break() -> None:
    cs = ContractServer()
    async with cs.running():
        link = AgentLink(cs.url, "tok", Listener(), request_timeout=0.05, backoff_min=5, backoff_max=5)
        await link.start()
        ws = await wait_for(cs.conns.get())
        answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await link.request("sessionCount", {}, answers.put_nowait)
        req = await wait_for(cs.requests.get())
        assert req["mark"] == "sessionCount" and req["id"].startswith("p")
        timed_out = await wait_for(answers.get())
        assert timed_out["error"]["code"] == "timeout"
        await ws.send(json.dumps({"v": 1, "id": req["id"], "mark": "sessionCount", "subMark": "success"}))
        await link.request("videoPickUp", {"session_id": "s"}, answers.put_nowait)
        call = await wait_for(cs.requests.get())
        reply = {"v": 1, "id": call["id"], "mark": "videoPickUp", "subMark": "success", "state": "004001"}
        await ws.send(json.dumps(reply))
        got = await wait_for(answers.get())
        assert (
            got["subMark"] == "success" and got["id"] == call["id"]
        )  # the link's id: the server's requestId
        await ws.send(json.dumps({**reply, "state": "006013"}))  # a second answer: not the contract, dropped
        await link.request("pickUpSession", {"session_id": "s"}, answers.put_nowait)
        await wait_for(cs.requests.get())
        await ws.close(1011)
        broken = await wait_for(answers.get())
        assert broken["error"]["code"] == "upstream_down" and broken["mark"] == "pickUpSession"
        assert answers.empty()  # the late answer of the timed-out request and the second answer were dropped
        with pytest.raises(ApiError) as info:
            await link.request("sessionCount", {}, answers.put_nowait)
        assert info.value.code is ErrorCode.upstream_down
        await link.close()


async def test_a_refused_auth_is_the_servers_error() -> None:
    cs = ContractServer()
    cs.refuse = {"code": "token_expired", "msg": "the token has expired; log in again"}
    async with cs.running():
        link = AgentLink(cs.url, "tok", Listener())
        with pytest.raises(ApiError) as info:
            await link.start()
        assert info.value.code is ErrorCode.token_expired and "expired" in info.value.msg


async def test_nothing_to_connect_to_is_upstream_down(tmp_path: Path) -> None:
    link = AgentLink("ws://127.0.0.1:9/ws/agent", "tok", Listener(), open_timeout=1)
    with pytest.raises(ApiError) as info:
        await link.start()
    assert info.value.code is ErrorCode.upstream_down


async def test_a_plugin_whose_link_is_down_greets_a_new_controller_with_both(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    proxy = Proxy(kefu_server.port)
    await proxy.start()
    plugin: Plugin = await plugin_factory(proxy.url)
    try:
        async with Raw.connect(plugin) as raw:
            await logged_in(raw, login_url(proxy.url, "a1"), ready=False)
            await proxy.cut()
            await raw.push("client", "kefuWSClose")
        async with Raw.connect(plugin) as again:
            assert (await again.push("client", "kefuReady"))["payload"]["agent"]["name"] == "a1"
            assert (await again.push("client", "kefuWSClose"))["payload"]["reconnecting"] is True
            await proxy.restore()
            await again.push("client", "kefuWSOpen")
    finally:
        await proxy.aclose()
