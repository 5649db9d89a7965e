"""The floor shows the calls waiting in a team's queue (D50, D54): to that team's supervisors and
to admins, live. Real server (SQLite and, when configured, PostgreSQL), real agent and visitor sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from kefu.server.floor import call_queue
from kefu.server.teams import assign, set_supervisor
from tests.conftest import ServerHandle, scaled
from tests.server.test_calls import state, visitor
from tests.server.test_floor import floor_people, sse
from tests.server.test_rest import api


async def frame_where(frames: AsyncIterator[tuple[str, dict[str, Any]]], ok: Any) -> dict[str, Any]:
    """The next floor frame for which ``ok(frame)`` holds (pushed, never polled)."""
    async with asyncio.timeout(scaled(5.0)):
        while True:
            _, frame = await anext(frames)
            if ok(frame):
                return frame


# floor_refresh=0: no periodic re-read, every frame below comes from a hook
@pytest.mark.server_settings(floor_push_interval=0.0, floor_refresh=0.0)
async def test_a_call_waiting_in_a_teams_queue_is_on_its_supervisors_floor_until_it_leaves(
    server: ServerHandle,
) -> None:
    tokens = await floor_people(server)  # t1: a1, a2, sup; t2: a3; boss: admin
    await server.add_agent("sup2")
    await set_supervisor(server.services.store, "sup2")
    await assign(server.services.store, "t2", "sup2")
    tokens["sup2"] = await server.login("sup2")
    a1 = await server.agent("a1", add=False, ready=True)
    v = await visitor(server, "v1")
    call_id = (await a1.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(a1, "003001")
    await state(a1, "006011")
    async with api(server, tokens["sup"]) as c:
        frames = sse(c, "/api/floor/stream")
        _, first = await anext(frames)
        assert first["callQueue"] == []
        # a blind transfer to t1, whose other agent (a2) is not connected: the call waits (D50)
        await a1.call("transferCall", {"teamName": "t1", "mode": "blind"})
        frame = await frame_where(frames, lambda f: f["callQueue"])
        (waiting,) = frame["callQueue"]
        assert waiting["callId"] == call_id and waiting["team"] == "t1" and waiting["visitorName"] == "v1"
        assert waiting["position"] == 1 and waiting["wait"] >= 0 and waiting["since"]
        async with api(server, tokens["sup2"]) as c2:  # t2's supervisor: not its team's queue
            assert (await c2.get("/api/floor")).json()["callQueue"] == []
        async with api(server, tokens["boss"]) as cb:  # an admin sees every team's
            assert [q["callId"] for q in (await cb.get("/api/floor")).json()["callQueue"]] == [call_id]
        await v.call("hangup", {"callId": call_id})  # the visitor gives up waiting
        await frame_where(frames, lambda f: f["callQueue"] == [])
        await frames.aclose()


def test_the_call_queue_numbers_places_per_team() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    row = lambda i, team, s: SimpleNamespace(  # noqa: E731
        id=f"c{i}", team=team, queued_at=t0 + timedelta(seconds=s), name=f"v{i}"
    )
    out = call_queue([row(1, "a", 0), row(2, "b", 5), row(3, "a", 10)], t0 + timedelta(seconds=30))
    assert [(c["callId"], c["team"], c["position"], c["wait"]) for c in out] == [
        ("c1", "a", 1, 30.0),
        ("c2", "b", 1, 25.0),
        ("c3", "a", 2, 20.0),
    ]
