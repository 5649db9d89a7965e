"""No lost customer and session transfers (issue 20), over real sockets.

An agent who logs out (itself or by a supervisor) or whose connection stays
lost beyond ``session_grace`` gives its open sessions back to the head of the
queue; ``transferSession`` moves one to another agent or back to the queue
with a note. The visitor is told (``sessionTransferred``) and never sees the
note; whoever takes the session gets its history.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from kefu.visitor import Visitor
from tests.conftest import ServerHandle
from tests.server.clients import AgentClient
from tests.server.test_integrations import journal, settled


async def served(agent: AgentClient, visitors: list[Visitor]) -> dict[str, str]:
    """Each visitor's first message, assigned to ``agent``: visitor name → session id."""
    out: dict[str, str] = {}
    for v in visitors:
        out[v.name] = (await v.send_message(f"hello from {v.name}"))["sessionId"]
        got = (await agent.next_event("sessionAssigned"))["payload"]
        assert got["sessionId"] == out[v.name]
        await v.next_event("sessionAssigned")
    return out


async def position_of(v: Visitor, wanted: int) -> None:
    """Queue pushes coalesce: wait until the visitor is shown ``wanted``."""
    while (await v.next_event("queue"))["payload"]["position"] != wanted:
        pass


async def test_an_agent_logging_out_gives_three_sessions_back_to_the_head_of_the_queue(
    server: ServerHandle,
) -> None:
    a1 = await server.agent("a1", ready=True, max_sessions=3)
    vs = [await server.visitor(f"v{i}") for i in range(1, 4)]
    sids = await served(a1, vs)
    for v in vs:
        await a1.call("sendMessage", {"session_id": sids[v.name], "text": f"a1 answers {v.name}"})
    late = await server.visitor("v4")  # a1 is full: v4 waits, first in the queue
    assert (await late.send_message("me too"))["position"] == 1

    out = await a1.call("logout")
    assert out["state"] == "000000"
    # the three come back ahead of v4, in their order of arrival, each told its place
    for i, v in enumerate(vs, start=1):
        told = (await v.next_event("sessionTransferred"))["payload"]
        assert told == {
            "sessionId": sids[v.name],
            "from": "a1",
            "to": None,
            "reason": "agentLoggedOut",
            "position": i,
        }
    await position_of(late, 4)
    for i, v in enumerate(vs, start=1):
        await v.disconnect()
        resumed = (await v.reconnect())["session"]
        assert resumed["status"] == "queued" and resumed["agentName"] is None
        assert resumed["position"] == i
        assert "transfer" not in resumed  # the agents' record, not the visitor's

    a2 = await server.agent("a2", ready=True)
    for v in [*vs, late]:  # the head of the queue first, then v4
        got = (await a2.next_event("sessionAssigned"))["payload"]
        assert got["visitorName"] == v.name and got["agentName"] == "a2"
        texts = [m["text"] for m in got["messages"]]
        if v is late:
            assert texts == ["me too"] and got["transfer"] is None
        else:
            assert texts == [f"hello from {v.name}", f"a1 answers {v.name}"]  # the history
            assert got["transfer"] == {"from": "a1", "reason": "agentLoggedOut", "note": None}
        assigned = (await v.next_event("sessionAssigned"))["payload"]
        assert assigned["agentName"] == "a2" and "transfer" not in assigned


async def test_a_supervisor_logging_an_agent_out_gives_its_sessions_back(server: ServerHandle) -> None:
    await server.add_agent("boss", admin=True)
    a1 = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await served(a1, [v]))["v1"]
    token = await server.login("boss")
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/api/agents/a1/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    told = (await v.next_event("sessionTransferred"))["payload"]
    assert told["sessionId"] == sid and told["reason"] == "agentLoggedOut" and told["position"] == 1
    moved = (await a1.next_event("sessionTransferred"))["payload"]  # its console drops it
    assert moved["sessionId"] == sid and moved["to"] is None


@pytest.mark.server_settings(session_grace=0.05)
async def test_an_agent_lost_beyond_the_grace_gives_its_sessions_back(server: ServerHandle) -> None:
    a1 = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await served(a1, [v]))["v1"]
    await a1.disconnect()
    told = (await v.next_event("sessionTransferred"))["payload"]
    assert told == {"sessionId": sid, "from": "a1", "to": None, "reason": "agentLost", "position": 1}
    a2 = await server.agent("a2", ready=True)
    got = (await a2.next_event("sessionAssigned"))["payload"]
    assert got["sessionId"] == sid and [m["text"] for m in got["messages"]] == ["hello from v1"]
    assert got["transfer"]["reason"] == "agentLost"


@pytest.mark.server_settings(session_grace=0.05)
async def test_an_agent_back_within_the_grace_keeps_its_sessions(server: ServerHandle) -> None:
    a1 = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await served(a1, [v]))["v1"]
    transfers = server.services.transfers
    await a1.disconnect()
    await a1.connect()  # back (its auth cancels the grace)
    assert [s["sessionId"] for s in a1.auth["payload"]["sessions"]] == [sid]
    # a grace that began after the reconnect (the old socket's close seen late) finds it present
    await asyncio.gather(*transfers._grace.values(), return_exceptions=True)
    state = (await a1.call("sessionState"))["payload"]["sessions"]
    assert [(s["sessionId"], s["agentName"]) for s in state] == [(sid, "a1")]
    assert [m for m in v.link.pending_events() if m.get("subMark") == "sessionTransferred"] == []
    # the grace itself: agent_back cancels it; an unknown agent has nothing to give back
    a1_id = await _id_of(server, "a1")
    transfers.agent_gone(a1_id)
    task = transfers._grace[a1_id]
    transfers.agent_back(a1_id)
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and transfers._grace == {}
    assert await transfers.give_back(999_999, "agentLost") == []


async def _id_of(server: ServerHandle, name: str) -> int:
    from kefu.server.accounts import find_agent

    async with server.services.store.read() as conn:
        agent = await find_agent(conn, name=name)
    assert agent is not None
    return agent.id


async def test_transfer_to_another_agent_carries_history_and_note(server: ServerHandle) -> None:
    a1 = await server.agent("a1", ready=True)
    a2 = await server.agent("a2")  # not ready: a transfer does not need it ready
    v = await server.visitor("v1")
    sid = (await served(a1, [v]))["v1"]
    await a1.call("sendMessage", {"session_id": sid, "text": "let me find a colleague"})
    assert (await v.next_event("message"))["payload"]["text"] == "let me find a colleague"
    note = "wants a mortgage quote; verified ID"
    reply = await a1.call("transferSession", {"session_id": sid, "agentName": "a2", "note": note})
    assert reply["subMark"] == "success"
    assert reply["payload"]["agentName"] == "a2" and reply["payload"]["status"] == "open"
    got = (await a2.next_event("sessionAssigned"))["payload"]
    assert got["sessionId"] == sid
    assert [m["text"] for m in got["messages"]] == ["hello from v1", "let me find a colleague"]
    assert got["transfer"] == {"from": "a1", "reason": "transferred", "note": note}
    told = (await v.next_event("sessionTransferred"))["payload"]
    assert told == {"sessionId": sid, "from": "a1", "to": "a2", "reason": "transferred"}
    assert (await a1.next_event("sessionTransferred"))["payload"]["note"] == note
    # the session is a2's now: a1 cannot write in it, a2 and the visitor talk
    refused = await a1.request("sendMessage", {"session_id": sid, "text": "still here?"})
    assert refused["error"]["code"] == "forbidden"
    await a2.call("sendMessage", {"session_id": sid, "text": "a2 here"})
    assert (await v.next_event("message"))["payload"]["text"] == "a2 here"
    await v.send_message("thanks")
    assert (await a2.next_event("message"))["payload"]["text"] == "thanks"
    # the integration event, with the note
    await server.add_agent("admin", admin=True)
    await settled(server)
    events = [
        e for e in await journal(server, await server.login("admin")) if e["type"] == "session.transferred"
    ]
    assert [e["data"] for e in events] == [
        {
            "sessionId": sid,
            "visitorName": "v1",
            "from": "a1",
            "to": "a2",
            "reason": "transferred",
            "note": note,
            "position": None,
        }
    ]


async def test_transfer_back_to_the_queue_waits_at_its_head(server: ServerHandle) -> None:
    a1 = await server.agent("a1", ready=True, max_sessions=1)
    v1 = await server.visitor("v1")
    sid = (await served(a1, [v1]))["v1"]
    v2 = await server.visitor("v2")
    assert (await v2.send_message("waiting"))["position"] == 1
    await a1.call("setAgentState", {"state": "busy"})  # no new session for a1 now
    reply = await a1.call("transferSession", {"session_id": sid, "note": "needs a Cantonese speaker"})
    assert reply["payload"]["status"] == "queued" and reply["payload"]["position"] == 1
    assert (await v1.next_event("sessionTransferred"))["payload"]["position"] == 1
    await position_of(v2, 2)
    a2 = await server.agent("a2", ready=True)
    got = (await a2.next_event("sessionAssigned"))["payload"]
    assert got["sessionId"] == sid  # ahead of v2, who came after v1
    assert got["transfer"] == {"from": "a1", "reason": "transferred", "note": "needs a Cantonese speaker"}
    assert (await a2.next_event("sessionAssigned"))["payload"]["visitorName"] == "v2"


async def test_bad_transfers_get_clear_errors_and_change_nothing(server: ServerHandle) -> None:
    a1 = await server.agent("a1", ready=True, max_sessions=1)  # v2 is not routed to it
    full = await server.agent("full", max_sessions=1)
    await server.add_agent("away")  # never logged in
    v = await server.visitor("v1")
    sid = (await served(a1, [v]))["v1"]
    other = await server.visitor("v2")
    await full.call("pickUpSession", {"session_id": (await other.send_message("hi"))["sessionId"]})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"session_id": sid, "agentName": "nobody"}, "no_such_agent"),
        ({"session_id": sid, "agentName": "a1"}, "invalid_field"),
        ({"session_id": sid, "agentName": "away"}, "agent_offline"),
        ({"session_id": sid, "agentName": "full"}, "no_capacity"),
        ({"session_id": sid, "agentName": "full", "note": "x" * 513}, "invalid_field"),
        ({"session_id": sid, "agentName": 7}, "invalid_field"),
        ({"session_id": "no-such-session"}, "no_such_session"),
        ({"agentName": "full"}, "missing_field"),
    ]
    for params, code in cases:
        r = await a1.request("transferSession", params)
        assert r["subMark"] == "error" and r["error"]["code"] == code, (params, r)
    theirs = (await full.call("sessionState"))["payload"]["sessions"][0]["sessionId"]
    r = await a1.request("transferSession", {"session_id": theirs})
    assert r["error"]["code"] == "forbidden"
    # nothing moved, the connection is intact
    state = (await a1.call("sessionState"))["payload"]["sessions"]
    assert [(s["sessionId"], s["agentName"], s["transfer"]) for s in state] == [(sid, "a1", None)]
    assert (await a1.call("ping"))["subMark"] == "pong"
    assert [m for m in v.link.pending_events() if m.get("subMark") != "queue"] == []
