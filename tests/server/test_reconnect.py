"""Nothing lost, nothing twice: reconnects mid-session, a replaced link, a server restart."""

from __future__ import annotations

import httpx

from kefu.visitor import Visitor
from tests.conftest import ServerHandle
from tests.server.clients import AgentClient


async def test_agent_reconnects_mid_session_and_gets_exactly_what_it_missed(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("m0"))["sessionId"]
    await agent.next_event("sessionAssigned")
    agent.link.abort()  # the network drops: no closing handshake
    await agent.link.wait_closed()
    for i in range(1, 6):
        await v.send_message(f"m{i}")
    # it comes back with the last seq it saw
    reply = await agent.connect()
    assert reply["subMark"] == "success" and reply["state"] == "002000"
    assert [s["sessionId"] for s in reply["payload"]["sessions"]] == [sid]
    got = [(await agent.next_event("message"))["payload"]["text"] for _ in range(5)]
    assert got == [f"m{i}" for i in range(1, 6)]
    await agent.call("sendMessage", {"session_id": sid, "text": "sorry, I was away"})
    assert (await v.next_event("message"))["payload"]["text"] == "sorry, I was away"
    assert agent.link.duplicates == 0 and agent.link.gaps == 0
    seqs = [m["seq"] for m in agent.link.history]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_visitor_reconnects_mid_session_and_gets_exactly_what_it_missed(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("hello"))["sessionId"]
    await agent.next_event("sessionAssigned")
    await v.next_event("sessionAssigned")
    await v.disconnect()
    for i in range(5):
        await agent.call("sendMessage", {"session_id": sid, "text": f"a{i}"})
    hello = await v.reconnect()
    assert hello["session"]["sessionId"] == sid and hello["session"]["status"] == "open"
    got = [(await v.next_event("message"))["payload"]["text"] for _ in range(5)]
    assert got == [f"a{i}" for i in range(5)]
    await v.send_message("thanks")
    assert (await agent.next_event("message"))["payload"]["text"] == "thanks"
    assert v.link.duplicates == 0 and v.link.gaps == 0


async def test_replaying_overlaps_are_not_duplicated(server: ServerHandle) -> None:
    """A client that resumes from an older seq gets each push once, in order."""
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("x"))["sessionId"]
    await agent.next_event("sessionAssigned")
    for i in range(3):
        await agent.call("sendMessage", {"session_id": sid, "text": f"a{i}"})
    for _ in range(3):
        await v.next_event("message")
    # a second visitor object for the same visitor, resuming from seq 0, replaces the first
    twin = Visitor(server.url, "v1", visitor_key=v.visitor_key, timeout=5.0)
    await twin.connect()
    replaced = await v.next_event("replaced")
    assert replaced["mark"] == "event"
    assert await v.link.wait_closed() == 4001
    texts = []
    while len(texts) < 3:
        ev = await twin.next_event()
        if ev.get("subMark") == "message":
            texts.append(ev["payload"]["text"])
    assert texts == ["a0", "a1", "a2"]
    seqs = [m["seq"] for m in twin.link.history]
    assert seqs == list(range(1, len(seqs) + 1))
    await twin.aclose()


async def test_a_new_agent_connection_replaces_the_old(server: ServerHandle) -> None:
    first = await server.agent("a1")
    second = AgentClient(server.ws("/ws/agent"), await server.login("a1"))
    reply = await second.connect()
    assert reply["subMark"] == "success"
    ev = await first.next_event("replaced")
    assert ev == {"v": 1, "mark": "event", "subMark": "replaced", "payload": ev["payload"]}
    assert await first.link.wait_closed() == 4001
    assert (await second.call("ping"))["subMark"] == "pong"
    await second.aclose()


async def test_restart_keeps_sessions_messages_and_state_history(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("before the restart"))["sessionId"]
    await agent.next_event("sessionAssigned")
    await agent.call("sendMessage", {"session_id": sid, "text": "answer 1"})
    await v.next_event("message")
    await agent.call("setAgentState", {"state": "busy", "reason": "lunch"})
    await agent.next_event(mark="state")
    v2 = await server.visitor("v2")
    queued = (await v2.send_message("waiting over the restart"))["sessionId"]
    token = agent.token
    agent_seq, visitor_seq, key = agent.last_seq, v.last_seq, v.visitor_key
    await server.restart()

    # the agent's token, state, open session and push sequence survived
    back = AgentClient(server.ws("/ws/agent"), token)
    back.link.last_seq = agent_seq
    reply = await back.connect()
    assert reply["state"] == "001000"
    assert [s["sessionId"] for s in reply["payload"]["sessions"]] == [sid]
    assert reply["payload"]["lastSeq"] == agent_seq  # nothing new: nothing replayed
    # the visitor gets its session back and the conversation goes on
    again = Visitor(server.url, "v1", visitor_key=key, timeout=5.0)
    again.link.last_seq = visitor_seq
    hello = await again.connect()
    assert hello["session"]["sessionId"] == sid and hello["session"]["lastMessage"]["text"] == "answer 1"
    await again.send_message("after the restart")
    assert (await back.next_event("message"))["payload"]["text"] == "after the restart"
    assert back.link.duplicates == 0 and again.link.duplicates == 0
    # the queued session is still queued and is routed when the agent becomes ready
    await back.call("setAgentState", {"state": "idle"})
    assigned = await back.next_event("sessionAssigned")
    assert assigned["payload"]["sessionId"] == queued

    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        msgs = (await c.get(f"/api/sessions/{sid}/messages")).json()
        history = (await c.get("/api/agents/a1/states")).json()
    assert [m["text"] for m in msgs] == ["before the restart", "answer 1", "after the restart"]
    assert [(h["old"], h["new"], h["event"], h["reason"]) for h in history] == [
        ("000000", "001000", "login", "login"),
        ("001000", "002000", "setReady", None),
        ("002000", "001000", "setNotReady", "lunch"),
        ("001000", "002000", "setReady", None),
    ]
    await back.aclose()
    await again.aclose()


async def test_pushes_missed_while_the_server_was_down_are_replayed_from_the_database(
    server: ServerHandle,
) -> None:
    agent = await server.agent("a1", ready=True)
    v = await server.visitor("v1")
    sid = (await v.send_message("hi"))["sessionId"]
    await agent.next_event("sessionAssigned")
    await v.next_event("sessionAssigned")
    seen = v.last_seq
    await v.disconnect()
    await agent.call("sendMessage", {"session_id": sid, "text": "sent while you were away"})
    await agent.call("chatClose", {"session_id": sid})
    await server.restart()
    again = Visitor(server.url, "v1", visitor_key=v.visitor_key, timeout=5.0)
    again.link.last_seq = seen
    hello = await again.connect()
    assert hello["session"] is None  # closed meanwhile
    assert (await again.next_event("message"))["payload"]["text"] == "sent while you were away"
    assert (await again.next_event("sessionClosed"))["payload"]["by"] == "agent"
    assert [m["seq"] for m in again.link.history] == [seen + 1, seen + 2]
    await again.aclose()
