"""IM sessions over real sockets: queue, routing, pickUpSession, capacity, messages, close."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kefu.visitor import RequestFailed, Visitor
from tests.conftest import ServerHandle


async def rest(server: ServerHandle, path: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as c:
        return await c.get(path, headers={"Authorization": f"Bearer {token}"})


async def test_queue_positions_then_assignment_to_a_ready_agent(server: ServerHandle) -> None:
    agent = await server.agent("a1")  # logged in: 001000, not ready
    v1 = await server.visitor("v1")
    v2 = await server.visitor("v2")
    r1 = await v1.send_message("hello, I need help")
    assert r1["status"] == "queued" and r1["position"] == 1
    assert (await v1.next_event("queue"))["payload"] == {"position": 1}
    r2 = await v2.send_message("me too")
    assert r2["position"] == 2
    assert (await v2.next_event("queue"))["payload"] == {"position": 2}
    # the agent's queue pushes are snapshots, coalesced: the last one it gets lists both
    q = await agent.next_event("queue")
    while q["payload"]["total"] < 2:
        q = await agent.next_event("queue")
    assert [(w["visitorName"], w["position"]) for w in q["payload"]["waiting"]] == [("v1", 1), ("v2", 2)]
    assert "seq" not in q  # volatile: a state shown, not an event stored

    # an agent who logs in now sees the queue in its auth answer
    late = await server.agent("a2")
    snapshot = late.auth["payload"]["queue"]
    assert snapshot["total"] == 2 and [w["visitorName"] for w in snapshot["waiting"]] == ["v1", "v2"]
    ready = await agent.call("setAgentState", {"state": "idle"})
    assert ready["state"] == "002000"
    got = await agent.next_event("sessionAssigned")
    s1 = got["payload"]
    assert s1["visitorName"] == "v1" and s1["status"] == "open" and s1["agentName"] == "a1"
    assert [m["text"] for m in s1["messages"]] == ["hello, I need help"]
    assert (await v1.next_event("sessionAssigned"))["payload"]["sessionId"] == s1["sessionId"]
    # FIFO: v2 is the next one, and the agent (capacity 5) takes it too (v2 may be shown
    # position 1 on the way, or be assigned before the queue is shown again: pushes coalesce)
    s2 = (await agent.next_event("sessionAssigned"))["payload"]
    assert s2["visitorName"] == "v2"
    assert (await v2.next_event("sessionAssigned"))["payload"]["sessionId"] == s2["sessionId"]


async def test_pick_up_session_takes_one_from_the_queue(server: ServerHandle) -> None:
    agent = await server.agent("a1")  # not ready: nothing is routed to it
    v1 = await server.visitor("v1")
    v2 = await server.visitor("v2")
    await v1.send_message("first")
    s2 = (await v2.send_message("second"))["sessionId"]
    await v2.next_event("queue")
    picked = await agent.call("pickUpSession", {"session_id": s2})
    assert picked["subMark"] == "success"
    assert picked["payload"]["sessionId"] == s2 and picked["payload"]["status"] == "open"
    assert (await v2.next_event("sessionAssigned"))["payload"]["agentName"] == "a1"
    await v1.next_event("queue")  # its first position
    # v1 was ahead of v2: its position does not change, so it hears nothing more
    again = await agent.call("pickUpSession", {"session_id": s2})  # idempotent
    assert again["payload"]["sessionId"] == s2
    count = await agent.call("sessionCount")
    assert count["payload"] == {"sessionCount": 1}
    assert v1.link.pending_events() == []


async def test_capacity_is_respected(server: ServerHandle) -> None:
    agent = await server.agent("a1", max_sessions=2, ready=True)
    visitors = [await server.visitor(f"v{i}") for i in range(3)]
    sids = [(await v.send_message(f"hi from {v.name}"))["sessionId"] for v in visitors]
    assigned = {(await agent.next_event("sessionAssigned"))["payload"]["sessionId"] for _ in range(2)}
    assert assigned == set(sids[:2])
    refused = await agent.request("pickUpSession", {"session_id": sids[2]})
    assert refused["subMark"] == "error" and refused["error"]["code"] == "no_capacity"
    state = await agent.call("sessionState")
    assert {s["sessionId"] for s in state["payload"]["sessions"]} == set(sids[:2])
    # closing one frees a place: the waiting session is routed at once
    await agent.call("chatClose", {"session_id": sids[0]})
    third = await agent.next_event("sessionAssigned")
    assert third["payload"]["sessionId"] == sids[2]
    assert (await agent.call("sessionCount"))["payload"]["sessionCount"] == 2


async def test_messages_flow_both_ways_in_order_and_are_stored(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("v0"))["sessionId"]
    await agent.next_event("sessionAssigned")
    await v.next_event("sessionAssigned")
    for i in range(1, 11):
        await v.send_message(f"v{i}")
        await agent.call("sendMessage", {"session_id": sid, "text": f"a{i}"})
    got_by_agent = [(await agent.next_event("message"))["payload"]["text"] for _ in range(10)]
    got_by_visitor = [(await v.next_event("message"))["payload"]["text"] for _ in range(10)]
    assert got_by_agent == [f"v{i}" for i in range(1, 11)]
    assert got_by_visitor == [f"a{i}" for i in range(1, 11)]
    stored = (await rest(server, f"/api/sessions/{sid}/messages", agent.token)).json()
    expected = ["v0"] + [t for i in range(1, 11) for t in (f"v{i}", f"a{i}")]
    assert [m["text"] for m in stored] == expected
    assert {m["from"] for m in stored} == {"visitor", "agent"}


async def test_unicode_and_injection_text_is_stored_verbatim(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("访客一")
    texts = ["你好 👋🏽", "e\u0301 \u200d zwj", "<script>alert(1)</script>", "'; DROP TABLE messages; --"]
    sid = (await v.send_message(texts[0]))["sessionId"]
    for t in texts[1:]:
        await v.send_message(t)
    stored = (await rest(server, f"/api/sessions/{sid}/messages", agent.token)).json()
    assert [m["text"] for m in stored] == texts
    assert (await agent.next_event("sessionAssigned"))["payload"]["visitorName"] == "访客一"


async def test_a_repeated_client_msg_id_stores_once(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    first = await v.send_message("only once", client_msg_id="k1")
    again = await v.send_message("only once", client_msg_id="k1")
    assert again["messageId"] == first["messageId"] and again["repeated"] is True
    sid = first["sessionId"]
    await agent.next_event("sessionAssigned")
    a1 = await agent.call("sendMessage", {"session_id": sid, "text": "answer", "clientMsgId": "x"})
    a2 = await agent.call("sendMessage", {"session_id": sid, "text": "answer", "clientMsgId": "x"})
    assert a1["payload"]["messageId"] == a2["payload"]["messageId"]
    stored = (await rest(server, f"/api/sessions/{sid}/messages", agent.token)).json()
    assert [m["text"] for m in stored] == ["only once", "answer"]
    assert (await v.next_event("message"))["payload"]["text"] == "answer"


async def test_agent_closes_with_chat_close(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("bye soon"))["sessionId"]
    await agent.next_event("sessionAssigned")
    closed = await agent.call("chatClose")  # no session_id: the most recent open session
    assert closed["payload"] == {"sessionId": sid, "by": "agent", "reason": "chatClose"}
    # the push the plugin turns into chatCloseCB (SPEC §3.2)
    cb = await agent.next_event("sessionClosed")
    assert cb["payload"]["sessionId"] == sid and cb["payload"]["by"] == "agent"
    assert (await v.next_event("sessionClosed"))["payload"]["by"] == "agent"
    again = await agent.request("chatClose", {"session_id": sid})
    assert again["error"]["code"] == "session_closed"
    nothing = await agent.request("chatClose")
    assert nothing["error"]["code"] == "no_such_session"
    # a closed session takes no more messages from the agent; the visitor's next one opens a new session
    late = await agent.request("sendMessage", {"session_id": sid, "text": "late"})
    assert late["error"]["code"] == "session_closed"
    fresh = await v.send_message("one more question")
    assert fresh["sessionId"] != sid


async def test_visitor_closes_and_the_agent_hears_it(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("hi"))["sessionId"]
    await agent.next_event("sessionAssigned")
    assert (await v.close_session())["by"] == "visitor"
    cb = await agent.next_event("sessionClosed")
    assert cb["payload"] == {"sessionId": sid, "by": "visitor", "reason": "closeSession"}
    assert (await agent.call("sessionCount"))["payload"]["sessionCount"] == 0
    with pytest.raises(RequestFailed) as info:
        await v.close_session()
    assert info.value.code.value == "no_such_session"


async def test_a_visitor_closing_while_queued_moves_the_others_up(server: ServerHandle) -> None:
    await server.agent("a1")
    v1 = await server.visitor("v1")
    v2 = await server.visitor("v2")
    await v1.send_message("one")
    await v2.send_message("two")
    assert (await v2.next_event("queue"))["payload"]["position"] == 2
    await v1.close_session()
    assert (await v2.next_event("queue"))["payload"]["position"] == 1


async def test_session_state_lists_details(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("what is my balance?"))["sessionId"]
    await agent.next_event("sessionAssigned")
    state = (await agent.call("sessionState"))["payload"]["sessions"]
    assert len(state) == 1
    s = state[0]
    assert s["sessionId"] == sid and s["visitorName"] == "v1" and s["since"]
    assert s["lastMessage"]["text"] == "what is my balance?"


async def test_visitor_name_needs_its_key(server: ServerHandle) -> None:
    v = await server.visitor("v1")
    await v.send_message("hello")
    other = await server.visitor("v2")
    assert other.visitor_key != v.visitor_key
    thief = Visitor(server.url, "v1", timeout=5.0)
    with pytest.raises(RequestFailed) as info:
        await thief.connect()
    assert info.value.code.value == "forbidden"
    await thief.aclose()
    again = Visitor(server.url, "v1", visitor_key=v.visitor_key, timeout=5.0)
    hello = await again.connect()
    assert hello["visitorId"] == v.visitor_id and hello["session"]["status"] == "queued"
    assert hello["session"]["position"] == 1
    await again.aclose()


async def test_many_visitors_at_once_are_routed_fifo_within_capacity(server: ServerHandle) -> None:
    agents = [await server.agent(f"a{i}", max_sessions=3, ready=True) for i in range(3)]
    visitors = [await server.visitor(f"v{i:02d}") for i in range(12)]
    replies = await asyncio.gather(*(v.send_message(f"hi from {v.name}") for v in visitors))
    sids = [r["sessionId"] for r in replies]
    assert len(set(sids)) == 12
    assigned = [
        (await a.next_event("sessionAssigned"))["payload"]["sessionId"] for a in agents for _ in range(3)
    ]
    assert len(assigned) == len(set(assigned)) == 9
    # FIFO: the three left waiting are the three that were queued last
    await server.add_agent("boss", admin=True)
    every = (await rest(server, "/api/sessions", await server.login("boss"))).json()
    assert [s["status"] for s in every] == ["open"] * 9 + ["queued"] * 3
    assert {s["sessionId"] for s in every[:9]} == set(assigned)
    # each waiting visitor is told its place: its position pushes end at it
    for place, w in enumerate(every[9:], start=1):
        v = next(v for v in visitors if v.name == w["visitorName"])
        while (await v.next_event("queue"))["payload"]["position"] != place:
            pass
    for a in agents:
        assert (await a.call("sessionCount"))["payload"]["sessionCount"] == 3


@pytest.mark.server_settings(queue_push_interval=0.3)
async def test_queue_pushes_are_volatile_and_coalesced(server: ServerHandle) -> None:
    """Twelve visitors queue at once: the agent is shown the queue a few times, not twelve,
    and the last showing is the whole queue; nothing of it is stored for a replay."""
    agent = await server.agent("a1")  # logged in, not ready: the sessions stay queued
    visitors = [await server.visitor(f"v{i}") for i in range(12)]
    replies = await asyncio.gather(*(v.send_message(f"hello {i}") for i, v in enumerate(visitors)))
    assert sorted(r["position"] for r in replies) == list(range(1, 13))
    shown = [await agent.next_event("queue")]
    while shown[-1]["payload"]["total"] < 12:
        shown.append(await agent.next_event("queue"))
    assert len(shown) < 12
    assert [w["position"] for w in shown[-1]["payload"]["waiting"]] == list(range(1, 13))
    assert all("seq" not in q for q in shown)
    # each visitor is told its place (a volatile push too)
    for v, r in zip(visitors, replies, strict=True):
        pos = await v.next_event("queue")
        assert "seq" not in pos and pos["payload"]["position"] == r["position"]
    # an agent reconnecting with lastSeq 0 is not replayed stale queues: its auth answer has the queue
    late = await server.agent("a2")
    assert late.auth["payload"]["queue"]["total"] == 12
    assert server.services.router.notifier.flushes < 12
