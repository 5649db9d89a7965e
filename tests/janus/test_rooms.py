"""The SFU mode's rooms: a call gets a Janus room, its end destroys it, Janus down refuses calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select

from kefu.server import Settings
from kefu.server.schema import calls, media_rooms
from tests.conftest import ServerHandle
from tests.server.test_calls import call_event, state, visitor

from .kit import Janus


@pytest.fixture
async def sfu_server(janus: Janus, server_settings: Callable[..., Settings]) -> AsyncIterator[ServerHandle]:
    handle = ServerHandle(
        server_settings(
            ring_timeout=5.0,
            call_grace=0.2,
            janus_url=janus.url,
            janus_api_secret=janus.api_secret,
            janus_admin_key=janus.admin_key,
            janus_recordings=janus.recordings,
            janus_timeout=1.0,
        )
    )
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


async def _rooms(server: ServerHandle) -> list[Any]:
    async with server.services.store.read() as c:
        return list((await c.execute(select(media_rooms))).all())


async def test_a_call_gets_a_room_and_its_end_destroys_it(sfu_server: ServerHandle, janus: Janus) -> None:
    server = sfu_server
    sfu = server.services.calls.sfu
    assert sfu is not None
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    room = await sfu.room_of(call_id)
    assert room is not None and len(room.secret) >= 24
    assert await sfu.janus.room_exists(room.number)
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(agent, "003001")
    await state(agent, "006011")
    # the room's secret stays on the server: nothing a member receives carries it
    update = await call_event(agent, "update")
    assert room.secret not in repr(update)

    await agent.call("videoDisconnect")
    await call_event(v, "ended")
    await sfu.aclose_pending()
    assert not await sfu.janus.room_exists(room.number)
    rows = await _rooms(server)
    assert [(r.call_id, r.closed_at is not None) for r in rows] == [(call_id, True)]


async def test_janus_down_refuses_the_call_and_a_restarted_janus_is_used(
    sfu_server: ServerHandle, janus: Janus
) -> None:
    server = sfu_server
    agent = await server.agent("a1", ready=True)
    await visitor(server, "v1")
    janus.kill()
    reply = await agent.request("callbackToVisitor", {"visitorName": "v1"})
    assert reply["error"]["code"] == "media_server_unavailable", reply
    assert reply["state"] == "002004"  # the flow's error code, through the state machine
    assert await _rooms(server) == []  # no call, no room
    async with server.services.store.read() as c:
        assert (await c.execute(select(calls.c.id))).all() == []

    await agent.call("setAgentState", {"state": "idle"})
    await janus.start()
    reply = await agent.call("callbackToVisitor", {"visitorName": "v1"})
    assert reply["subMark"] == "inviteSuccess"
    room = await server.services.calls.sfu.room_of(reply["payload"]["callId"])  # type: ignore[union-attr]
    assert room is not None


async def test_a_visitors_video_request_is_refused_while_janus_is_down(
    sfu_server: ServerHandle, janus: Janus
) -> None:
    server = sfu_server
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    await v.call("sendMessage", {"text": "hello"})
    await agent.next_event("sessionAssigned")
    janus.kill()
    reply = await v.request("requestVideo", {})
    assert reply["error"]["code"] == "media_server_unavailable", reply
    assert (await agent.call("getState"))["state"] == "002000"  # the agent never rang
