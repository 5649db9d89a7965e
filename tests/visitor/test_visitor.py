"""kefu.visitor.Visitor and `kefu visitor` against the real server."""

from __future__ import annotations

import asyncio
import sys

import pytest

from kefu.visitor import LinkClosed, RequestFailed, Visitor, ws_url
from kefu.visitor.events import from_push
from tests.conftest import ServerHandle, child_env


def test_ws_url() -> None:
    assert ws_url("http://127.0.0.1:8600", "/ws/visitor") == "ws://127.0.0.1:8600/ws/visitor"
    assert ws_url("https://kefu.example/", "/ws/visitor") == "wss://kefu.example/ws/visitor"
    assert ws_url("ws://127.0.0.1:1/", "/x") == "ws://127.0.0.1:1/x"


async def test_a_visitor_chats_reconnects_and_closes(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    async with Visitor(server.url, "v1", timeout=5.0) as v:
        assert v.visitor_id and v.visitor_key and v.session is None
        sent = await v.send_message("hello")
        assigned = await v.next_event("sessionAssigned")
        assert assigned["payload"]["sessionId"] == sent["sessionId"]
        await agent.next_event("sessionAssigned")
        await agent.call("sendMessage", {"session_id": sent["sessionId"], "text": "how can I help?"})
        assert (await v.next_event("message"))["payload"]["text"] == "how can I help?"
        await v.disconnect()
        await agent.call("sendMessage", {"session_id": sent["sessionId"], "text": "are you there?"})
        hello = await v.reconnect()
        assert hello["session"]["sessionId"] == sent["sessionId"] and v.session is not None
        assert (await v.next_event("message"))["payload"]["text"] == "are you there?"
        closed = await v.close_session()
        assert closed["by"] == "visitor"
        assert (await v.ping())["subMark"] == "pong"
    with pytest.raises(RuntimeError):
        await v.connect()  # a closed Visitor is not reused
    with pytest.raises(LinkClosed):
        await v.send_message("after close")


async def test_errors_are_raised_with_their_code(server: ServerHandle) -> None:
    v = await server.visitor("v1")
    with pytest.raises(RequestFailed) as info:
        await v.close_session()
    assert info.value.code.value == "no_such_session" and info.value.reply["subMark"] == "error"


def describe(push: dict[str, object]) -> str | None:
    event = from_push(push)
    return None if event is None else event.describe()


def test_describe_prints_readable_lines() -> None:
    assert describe({"subMark": "queue", "payload": {"position": 2}}) == "waiting in the queue: position 2"
    assert describe({"subMark": "message", "payload": {"from": "agent", "text": "hi"}}) == "agent: hi"
    assert describe({"subMark": "sessionClosed", "payload": {"by": "agent", "reason": "chatClose"}}) == (
        "the session was closed by the agent (chatClose)"
    )
    assert describe({"mark": "state"}) is None


async def test_the_visitor_cli_prints_what_happens(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kefu.cli",
        "visitor",
        "v1",
        "--server",
        server.url,
        "--chat",
        "I lost my card",
        "--wait",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(COLUMNS="200"),
    )
    try:
        assigned = (await agent.next_event("sessionAssigned"))["payload"]
        assert [m["text"] for m in assigned["messages"]] == ["I lost my card"]
        await agent.call("sendMessage", {"session_id": assigned["sessionId"], "text": "I will block it now"})
        await agent.call("chatClose", {"session_id": assigned["sessionId"]})
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "connected as v1" in text
    assert "you: I lost my card" in text
    assert f"agent a1 took the session {assigned['sessionId']}" in text
    assert "agent: I will block it now" in text
    assert text.rstrip().endswith("the session was closed by the agent (chatClose)")


async def test_the_visitor_cli_says_when_the_server_is_not_there() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kefu.cli",
        "visitor",
        "v1",
        "--server",
        "http://127.0.0.1:9",
        "--chat",
        "hi",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(COLUMNS="200"),
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in out.decode()


def test_the_package_exports_what_it_lists() -> None:
    import kefu.visitor as pkg
    from kefu.visitor import events

    assert all(hasattr(pkg, name) for name in pkg.__all__)
    assert set(events.__all__) - set(pkg.__all__) == {"CALL_PUSHES"}  # every event type is exported
