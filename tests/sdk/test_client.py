"""The asyncio ``Client``: lifetime, typed errors, events and state changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kefu.protocol import ApiError, Code, ErrorCode
from kefu.sdk import Client, PluginEvent, RequestError
from tests.plugin.harness import LIMIT, Stack, fast_settings, silent_server


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(tmp_path) as s:
        yield s


def client_of(stack: Stack, **kw: object) -> Client:
    return Client(stack.p.url, data_dir=stack.p.settings.data_dir, **kw)  # type: ignore[arg-type]


async def test_async_with_and_a_closed_client_refuses_reuse(stack: Stack) -> None:
    client = client_of(stack)
    async with client as c:
        assert c is client and c.hello["payload"]["version"] == 1
        assert await c.connect() is c  # connecting again is a no-op
        assert await c.get_window() == {"width": 800, "height": 600, "minimized": False, "visible": True}
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.connect()
    with pytest.raises(RequestError) as info:
        await client.get_window()
    assert info.value.code is ErrorCode.plugin_unreachable


async def test_errors_are_typed(stack: Stack, tmp_path: Path) -> None:
    async with client_of(stack) as client:
        with pytest.raises(ApiError) as info:
            await client.pick_up_session("s1")
        assert info.value.code is ErrorCode.not_logged_in and info.value.msg
        with pytest.raises(RequestError) as bad:
            await client.set_window_size("-1", 10)
        assert bad.value.code is ErrorCode.invalid_field and bad.value.field == "params.width"
        with pytest.raises(RequestError) as media:
            await client.take_photo()
        assert media.value.code is ErrorCode.not_logged_in
    with pytest.raises(RequestError) as no_token:
        await Client(stack.p.url, data_dir=tmp_path / "nowhere").connect()
    assert no_token.value.code is ErrorCode.plugin_unreachable and "plugin.token" in no_token.value.msg
    with pytest.raises(RequestError) as wrong:
        await Client(stack.p.url, token="wrong").connect()
    assert wrong.value.code is ErrorCode.unauthenticated


async def test_events_and_state_changes_as_async_iterators(stack: Stack) -> None:
    client = client_of(stack)
    events = client.events()  # before connecting: nothing is missed
    seen: list[PluginEvent] = []
    client.on("kefuReady", seen.append)
    async with client:
        first = await asyncio.wait_for(anext(events), LIMIT)
        assert (first.kind, first.name) == ("client", "ssoReady")
        states = client.states()
        got = await client.start_login(stack.login_url())
        assert got["agent"]["name"] == "a1" and client.state is Code.busy
        ready = await asyncio.wait_for(anext(events), LIMIT)
        assert ready.name == "kefuReady" and seen == [ready] and client.agent == got["agent"]
        assert await client.set_agent_state("idle") is Code.idle
        change = await asyncio.wait_for(anext(states), LIMIT)
        assert change.code is Code.idle and change.old is Code.busy and change.event == "setReady"
        assert client.state is Code.idle
    # the client closed: the iterators end
    rest = [e async for e in events]
    # what came and was not taken: the state push, and the waiting list (pushed when a1 got ready)
    assert all(e.kind == "state" or (e.kind, e.name) == ("event", "queue") for e in rest), rest
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(states), LIMIT)


async def test_stream_follows_a_call_to_its_last_message(stack: Stack) -> None:
    async with client_of(stack) as client:
        await client.start_login(stack.login_url())
        await client.set_agent_state("idle")
        visitor = await stack.visitor("v1")
        replies = client.stream("callbackToVisitor", {"visitorName": "v1", "startVideo": True})
        first = await asyncio.wait_for(anext(replies), LIMIT)
        assert (first.sub_mark, first.state) == ("inviteSuccess", "003001")
        invited = await visitor.event("call")
        await visitor.request("answerCall", {"callId": invited["payload"]["callId"], "answer": "refuse"})
        rest = [r async for r in replies]
        assert [(r.sub_mark, r.state) for r in rest] == [("visitorRefuse", "002001")]
        errors = [r async for r in client.stream("videoPickUp", {"session_id": "s1"})]
        assert len(errors) == 1 and errors[0].is_error and errors[0].raw["error"]["code"] == "invalid_state"


async def test_no_answer_in_time_is_a_timeout(tmp_path: Path) -> None:
    from kefu.plugin import Plugin

    async with silent_server() as url:
        async with Plugin(fast_settings(url, tmp_path / "p", login_timeout=30)) as plugin:
            async with Client(plugin.url, data_dir=plugin.settings.data_dir, timeout=0.05) as client:
                with pytest.raises(RequestError) as info:
                    await client.start_login(f"{url}/doLogin?name=a&pwd=b&returnTo=")
                assert info.value.code is ErrorCode.timeout


async def test_the_plugin_quitting_ends_the_client(stack: Stack) -> None:
    closed: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
    async with client_of(stack) as client:
        client.emitter.on("close", lambda *args: closed.put_nowait(args))
        events = client.events("client")
        await client.quit()
        names = [e.name async for e in events]
        assert names[-1] == "quit"
        code, _reason = await asyncio.wait_for(closed.get(), LIMIT)
        assert code == 1001 and client.closed
