"""The agent's authoritative state: one setter, every change stored and pushed."""

from __future__ import annotations

import pytest

from kefu.protocol import InvalidTransition
from kefu.protocol.machine import Event, Flow
from kefu.visitor.link import LinkClosed
from tests.conftest import ServerHandle
from tests.server.clients import AgentClient


async def test_login_ready_not_ready_logout_with_reasons(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    assert agent.auth["state"] == "001000"
    assert agent.auth["payload"]["agent"] == {"name": "a1", "admin": False, "maxSessions": 5}
    r = await agent.call("setAgentState", {"state": "idle"})
    assert r["state"] == "002000" and r["payload"]["old"] == "001000"
    push = await agent.next_event(mark="state")
    assert push["state"] == "002000"
    assert push["payload"]["old"] == "001000" and push["payload"]["event"] == "setReady"
    r = await agent.call("setAgentState", {"state": "busy", "reason": "training"})
    assert r["state"] == "001000"
    push = await agent.next_event(mark="state")
    assert push["payload"]["reason"] == "training" and push["payload"]["flow"] == "agent"
    assert (await agent.call("getState"))["state"] == "001000"
    out = await agent.call("logout")
    assert out["state"] == "000000"
    assert (await agent.next_event(mark="state"))["state"] == "000000"
    history = await server.services.agents.history((await server.services.agents.get(1)).id)
    assert [(h["old"], h["new"], h["event"], h["reason"]) for h in history] == [
        ("000000", "001000", "login", "login"),
        ("001000", "002000", "setReady", None),
        ("002000", "001000", "setNotReady", "training"),
        ("001000", "000000", "logout", "logout"),
    ]


@pytest.mark.server_settings(ready_on_login=True)
async def test_ready_on_login(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    assert agent.auth["state"] == "002000"


async def test_a_transition_the_table_refuses_changes_nothing(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    sv = server.services
    me = await sv.agents.get(1)
    with pytest.raises(InvalidTransition) as info:
        # a busy agent cannot be "answered" in a call it is not in
        await sv.agents.apply(me.id, Flow.callVisitor, Event.accept)
    assert info.value.state == "001000"
    assert (await sv.agents.get(me.id)).state.code.value == "001000"
    assert len(await sv.agents.history(me.id)) == 1  # only the login
    await agent.call("ping")
    assert [m for m in agent.link.pending_events() if m.get("mark") == "state"] == []


async def test_call_events_pass_the_same_setter_with_the_call_id(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    sv = server.services
    aid = (await sv.agents.get(1)).id
    for event, code in [(Event.invite, "003001"), (Event.accept, "006011"), (Event.agentHangup, "005004")]:
        change = await sv.agents.apply(aid, Flow.callVisitor, event, call_id="c1")
        assert change.after.state.code.value == code
        push = await agent.next_event(mark="state")
        assert push["state"] == code and push["payload"]["callId"] == "c1"
    # after-call work ends when the agent says so (SPEC §5.3.6 addition)
    r = await agent.call("setAgentState", {"state": "idle"})
    assert r["state"] == "002000" and r["payload"]["old"] == "005004"
    history = await sv.agents.history(aid)
    assert [h["callId"] for h in history[-4:]] == ["c1", "c1", "c1", None]


@pytest.mark.server_settings(wrap_up_timeout=0.05)
async def test_wrap_up_timeout_makes_the_agent_ready(server: ServerHandle) -> None:
    agent = await server.agent("a1", ready=True)
    sv = server.services
    aid = (await sv.agents.get(1)).id
    for event in (Event.invite, Event.accept, Event.agentHangup):
        await sv.agents.apply(aid, Flow.callVisitor, event, call_id="c1")
    codes = [(await agent.next_event(mark="state"))["state"] for _ in range(4)]
    assert codes == ["003001", "006011", "005004", "002000"]
    last = (await sv.agents.history(aid))[-1]
    assert last["event"] == "wrapUpTimeout" and last["reason"] == "wrapUpTimeout"


@pytest.mark.server_settings(wrap_up_timeout=3600.0)
async def test_the_wrap_up_timer_survives_a_restart(server: ServerHandle) -> None:
    await server.agent("a1", ready=True)
    sv = server.services
    aid = (await sv.agents.get(1)).id
    for event in (Event.invite, Event.accept, Event.agentHangup):
        await sv.agents.apply(aid, Flow.callVisitor, event, call_id="c1")
    await server.restart()
    server.clock.advance(3600)  # the timeout passed while the server was down
    await server.restart()
    client = AgentClient(server.ws("/ws/agent"), await server.login("a1"))
    await client.connect()
    await client.skip_history()
    state = (await client.call("getState"))["state"]
    assert state == "002000"
    await client.aclose()


async def test_a_disabled_agent_is_refused_on_its_socket(server: ServerHandle) -> None:
    from kefu.server.accounts import set_disabled

    agent = await server.agent("a1")
    await set_disabled(server.services.store, "a1")
    # the request races the socket's close (tests/server/test_logins.py): refused either way
    try:
        reply = await agent.request("getState")
        assert reply["subMark"] == "error" and reply["error"]["code"] == "account_disabled"
    except LinkClosed:
        pass
    assert await agent.link.wait_closed() == 4003
    again = AgentClient(server.ws("/ws/agent"), agent.token)
    assert (await again.connect())["error"]["code"] == "token_revoked"
