"""Twenty agents, each with its own plugin and ``IMClient``, call twenty
visitors at once: every agent's states, callbacks and call record are its
own (nothing of one call leaks into another)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kefu.visitor import CallUpdate, Visitor
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT

from .callkit import AgentSide

N = 20
pytestmark = pytest.mark.server_settings(ring_timeout=10.0, call_grace=1.0)


async def test_twenty_agents_call_twenty_visitors_at_once(server: ServerHandle, tmp_path: Path) -> None:
    for i in range(N):
        await server.add_agent(f"a{i}")
    agents = [AgentSide(server, f"a{i}", tmp_path / f"plugin-{i}") for i in range(N)]
    visitors: list[Visitor] = []
    try:
        await asyncio.gather(*(a.start(ready=True) for a in agents))
        visitors = list(
            await asyncio.gather(*(server.visitor(f"v{i}", on_invite="accept") for i in range(N)))
        )
        marks = [len(a.states.items) for a in agents]
        calls = [a.call("callbackToVisitor", {"visitorName": f"v{i}"}) for i, a in enumerate(agents)]
        accepted = await asyncio.gather(*(c.callback("acceptSuccess", "006011", LIMIT * 2) for c in calls))
        call_ids = [a["payload"]["callId"] for a in accepted]
        assert len(set(call_ids)) == N

        # even agents hang up, odd visitors do; all at once
        async def hang_up(i: int) -> None:
            if i % 2 == 0:
                await agents[i].call("videoDisconnect").callback("success", "005004", LIMIT * 2)
            else:
                v = visitors[i]
                await v.wait_for(CallUpdate, lambda e: e.what == "invited")
                await v.settled()
                await v.hangup()

        await asyncio.gather(*(hang_up(i) for i in range(N)))
        for i, c in enumerate(calls):
            last = "kefuCloseVideoSuccess" if i % 2 == 0 else "visitorDisconnect"
            end = await c.callback(last, "005004" if i % 2 == 0 else "005003", LIMIT * 2)
            assert end["payload"]["callId"] == call_ids[i]
            assert c.names == ["inviteSuccess", "acceptSuccess", last], (i, c.names)
        for i, a in enumerate(agents):
            end = "005004" if i % 2 == 0 else "005003"
            await a.state(end, LIMIT * 2, start=marks[i])
            seen = [(code, p.get("callId")) for code, p in a.states.items[marks[i] :]]
            assert seen == [(code, call_ids[i]) for code in ("003001", "006011", end)], (i, seen)
            assert a.plugin.state == end
        records = await server.services.calls.list_calls()
        assert len(records) == N
        for r in records:
            i = call_ids.index(r["callId"])
            names = {(m["kind"], m["name"]) for m in r["members"]}
            assert names == {("agent", f"a{i}"), ("visitor", f"v{i}")}, r
            by = f"a{i}" if i % 2 == 0 else f"v{i}"
            assert (r["status"], r["endedBy"], r["endReason"], r["flow"]) == (
                "ended",
                by,
                "hangup",
                "callVisitor",
            )
    finally:
        for v in visitors:
            await v.aclose()
        await asyncio.gather(*(a.close() for a in agents))
