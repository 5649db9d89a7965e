"""The server's call orchestration (SPEC §4.3, §5; docs/calls.md), over real sockets."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.protocol.wire import Json
from kefu.visitor.link import Link

pytestmark = pytest.mark.server_settings(ring_timeout=5.0, call_grace=0.2)


class _Closes:
    """Lets the server fixture close a raw visitor link at the end of a test."""

    def __init__(self, link: Link) -> None:
        self.link = link

    async def aclose(self) -> None:
        await self.link.disconnect()


async def visitor(server: Any, name: str) -> Link:
    link = Link(server.ws("/ws/visitor"), timeout=5.0)
    server._clients.append(_Closes(link))
    await link.connect()
    reply = await link.request("hello", {"name": name})
    assert reply["subMark"] == "success", reply
    link.visitor_key = reply["payload"]["visitorKey"]  # type: ignore[attr-defined]
    return link


async def state(agent: Any, code: str | None = None) -> Json:
    """The agent's next state push (checked against ``code`` when given)."""
    msg = await agent.next_event(mark="state")
    if code is not None:
        assert msg["state"] == code, msg
    return msg


async def call_event(link: Any, what: str, where: Any = None) -> Json:
    while True:
        msg = await link.next_event("call")
        if msg["payload"]["what"] == what and (where is None or where(msg["payload"])):
            return msg["payload"]


async def chatting(server: Any, agent_name: str = "a1", visitor_name: str = "v1") -> tuple[Any, Link]:
    agent = await server.agent(agent_name, ready=True)
    v = await visitor(server, visitor_name)
    await v.call("sendMessage", {"text": "hello"})
    await agent.next_event("sessionAssigned")
    return agent, v


async def test_visitor_asks_for_video_agent_picks_up_visitor_hangs_up(server: Any) -> None:
    agent, v = await chatting(server)
    session_id = (await agent.call("sessionState"))["payload"]["sessions"][0]["sessionId"]
    call_id = (await v.call("requestVideo"))["payload"]["callId"]
    ring = await state(agent, "004001")
    assert ring["payload"]["mark"] == "videoPickUp" and ring["payload"]["subMark"] == "ringing"
    assert (await call_event(agent, "ringing"))["visitorName"] == "v1"
    assert (await call_event(v, "ringing"))["callId"] == call_id

    reply = await agent.call("videoPickUp", {"session_id": session_id})
    assert reply["subMark"] == "success" and reply["state"] == "004001"
    assert (await state(agent, "004001"))["payload"]["requestId"] is not None  # answered by the reply
    await call_event(v, "accepted")
    await v.call("joinCall", {"callId": call_id})
    joined = await state(agent, "006013")
    assert joined["payload"]["requestId"] is None and joined["payload"]["subMark"] == "visitorJoin"

    await v.call("hangup", {"callId": call_id})
    end = await state(agent, "005007")
    assert end["payload"]["subMark"] == "visitorDisconnect" and end["payload"]["mark"] == "videoPickUp"
    record = await server.services.calls.get_call(call_id)
    assert record["status"] == "ended" and record["endedBy"] == "v1" and record["answeredAt"]
    members = {m["name"]: m for m in record["members"]}
    assert members["v1"]["joinedAt"] and members["v1"]["leftAt"] and members["v1"]["outcome"] == "left"
    # ready again ends after-call work
    assert (await agent.call("setAgentState", {"state": "idle"}))["state"] == "002000"


async def test_call_out_accepted_then_agent_hangs_up(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    reply = await agent.call("callbackToVisitor", {"visitorName": "v1", "startVideo": True})
    assert reply["subMark"] == "inviteSuccess" and reply["state"] == "003001"
    call_id = reply["payload"]["callId"]
    invited = await call_event(v, "invited")
    assert invited["agentName"] == "a1" and invited["callId"] == call_id
    await state(agent, "003001")
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    accepted = await state(agent, "006011")
    assert (
        accepted["payload"]["subMark"] == "acceptSuccess"
        and accepted["payload"]["mark"] == "callbackToVisitor"
    )
    first = await call_event(agent, "update")
    assert {(m["name"], m["status"]) for m in first["members"]} == {("a1", "joined"), ("v1", "invited")}
    update = await call_event(agent, "update")
    assert {(m["name"], m["status"]) for m in update["members"]} == {("a1", "joined"), ("v1", "joined")}
    out = await agent.call("videoDisconnect")
    assert out["subMark"] == "success" and out["state"] == "005004"
    await call_event(v, "ended")


@pytest.mark.parametrize(
    ("answer", "code", "sub"), [("refuse", "002001", "visitorRefuse"), ("busy", "002003", "videoBusyMark")]
)
async def test_call_out_refused_or_busy(server: Any, answer: str, code: str, sub: str) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await state(agent, "003001")
    await v.call("answerCall", {"callId": call_id, "answer": answer})
    msg = await state(agent, code)
    assert msg["payload"]["subMark"] == sub


@pytest.mark.server_settings(ring_timeout=0.2)
async def test_call_out_not_answered_times_out_once(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await state(agent, "003001")
    msg = await state(agent, "002002")
    assert msg["payload"]["subMark"] == "timeoutDisconnect"
    assert (await call_event(v, "cancelled"))["reason"] == "timeout"
    reply = await v.request("answerCall", {"callId": call_id, "answer": "accept"})
    assert reply["error"]["code"] == "invalid_state"  # a late answer changes nothing
    assert (await agent.call("getState"))["state"] == "002002"


async def test_spec_errors_sdk_08_sdk_11_and_offline(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    reply = await agent.request("callbackToVisitor", {"visitorName": "nobody"})
    assert reply["error"]["code"] == "SDK_08" and reply["state"] == "002004"
    assert reply["error"]["msg"] == "id lookup failed; check the visitor's details"
    # v2 chats with a2 (a1 not ready, so the chat is a2's): a1 may not call v2
    await agent.call("setAgentState", {"state": "busy"})
    _a2, _v2 = await chatting(server, "a2", "v2")
    reply = await agent.request("callbackToVisitor", {"visitorName": "v2"})
    assert reply["error"]["code"] == "SDK_11" and reply["state"] == "002004"
    v3 = await visitor(server, "v3")
    await v3.disconnect()
    reply = await agent.request("callbackToVisitor", {"visitorName": "v3"})
    assert reply["error"]["code"] == "visitor_offline" and reply["state"] == "002004"


async def test_a_visitor_in_a_call_is_busy(server: Any) -> None:
    a1 = await server.agent("a1", ready=True)
    a2 = await server.agent("a2", ready=True)
    v = await visitor(server, "v1")
    call_id = (await a1.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    reply = await a2.call("callbackToVisitor", {"visitorName": "v1"})
    assert reply["subMark"] == "videoBusyMark" and reply["state"] == "002003"


async def test_third_agent_joins_and_leaves(server: Any) -> None:
    a1 = await server.agent("a1", ready=True)
    a2 = await server.agent("a2", ready=True)
    v = await visitor(server, "v1")
    call_id = (await a1.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(a1, "003001")
    await state(a1, "006011")
    reply = await a1.call("videoInviteAgent", {"agentName": "a2"})
    assert reply["subMark"] == "inviteSuccess" and reply["state"] == "007002"
    ring = await state(a2, "004002")
    assert ring["payload"]["mark"] == "multipleVideoPickUp"
    assert (await call_event(a2, "invited"))["inviter"] == "a1"
    reply = await a2.call("multipleVideoPickUp")
    assert reply["subMark"] == "acceptSuccess" and reply["state"] == "006014"
    await state(a1, "007002")
    assert (await state(a1, "008002"))["payload"]["subMark"] == "acceptSuccess"
    assert (await a2.call("videoDisconnect"))["state"] == "005010"
    left = await state(a1, "006010")
    assert left["payload"]["subMark"] == "exitSuccess" and left["payload"]["mark"] == "videoInviteAgent"
    assert (await a1.call("videoDisconnect"))["state"] == "005004"


async def test_an_agent_who_is_not_ready_is_busy_for_an_invitation(server: Any) -> None:
    a1 = await server.agent("a1", ready=True)
    await server.agent("a2")  # logged in, not ready
    v = await visitor(server, "v1")
    call_id = (await a1.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    reply = await a1.call("videoInviteAgent", {"agentName": "a2"})
    assert reply["subMark"] == "videoBusyMark" and reply["state"] == "006007"
    reply = await a1.request("videoInviteAgent", {"agentName": "ghost"})
    assert reply["error"]["code"] == "SDK_08" and reply["state"] == "006009"


async def test_signalling_is_relayed_between_members_only(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    intruder = await visitor(server, "v9")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    offer = {"type": "offer", "sdp": "v=0 …"}
    await agent.call("signal", {"callId": call_id, "to": {"kind": "visitor", "name": "v1"}, "data": offer})
    got = await v.next_event("signal")
    assert got["payload"] == {"callId": call_id, "from": {"kind": "agent", "name": "a1"}, "data": offer}
    answer = {"type": "answer", "sdp": "v=0 …"}
    await v.call("signal", {"callId": call_id, "to": {"kind": "agent", "name": "a1"}, "data": answer})
    assert (await agent.next_event("signal"))["payload"]["data"] == answer
    reply = await intruder.request(
        "signal", {"callId": call_id, "to": {"kind": "agent", "name": "a1"}, "data": {}}
    )
    assert reply["error"]["code"] == "forbidden"


async def test_a_visitor_whose_connection_dies_is_hung_up_after_the_grace(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(agent, "003001")
    await state(agent, "006011")
    v.abort()  # the TCP connection dies, no close handshake
    msg = await state(agent, "005003")
    assert msg["payload"]["reason"] == "visitor_disconnected"
    record = await server.services.calls.get_call(call_id)
    assert record["endReason"] == "visitor_disconnected" and record["endedBy"] == "v1"


async def test_photo_disabled_gives_the_spec_error_to_the_agent(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    request_id = (await agent.call("takePhoto"))["payload"]["requestId"]
    asked = await v.next_event("photoRequest")
    assert asked["payload"]["requestId"] == request_id
    await v.call("photoAnswer", {"callId": call_id, "requestId": request_id, "answer": "disabled"})
    photo = await agent.next_event("photo")
    assert photo["payload"]["error"] == {"type": "snapShotDisabled", "msg": "snapShotDisabled"}


async def test_calls_are_listed_for_their_agents(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "refuse"})
    await state(agent, "003001")
    await state(agent, "002001")
    rows = await server.services.calls.list_calls(agent_id=None, visitor="v1")
    assert [r["callId"] for r in rows] == [call_id]
    assert rows[0]["members"][1]["outcome"] == "refused"


async def plugin_login(server: Any, name: str, last_seq: int, params: dict[str, Any]) -> tuple[Any, Json]:
    """A new connection of agent ``name`` with ``auth`` ``params`` (it replaces the
    last one, so no grace runs); its auth reply."""
    from tests.server.clients import AgentClient

    client = AgentClient(server.ws("/ws/agent"), await server.login(name))
    server._clients.append(client)
    await client.link.connect()
    auth = {"token": client.token, "lastSeq": last_seq, **params}
    return client, await client.link.request("auth", auth)


async def test_a_plugin_logging_in_without_the_calls_media_ends_it(server: Any) -> None:
    """``auth`` with ``mediaCalls`` (docs/calls.md): a connected call the plugin does
    not hold lost its media with the previous plugin process and ends at once
    (``agent_media_lost``); one it holds, or an ``auth`` that does not say, goes on;
    a malformed ``mediaCalls`` is refused and changes nothing."""
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(agent, "003001")
    await state(agent, "006011")

    async def login(params: dict[str, Any]) -> tuple[Any, Json]:
        return await plugin_login(server, "a1", agent.last_seq, params)

    for params in ({"mediaCalls": [call_id, "another"]}, {}):  # it holds the call; it does not say
        again, reply = await login(params)
        assert reply["subMark"] == "success" and reply["state"] == "006011"
        assert (await again.call("getState"))["state"] == "006011"  # after the check: still in the call
    for bad in ("c1", [""], [1], ["x" * 65], ["c"] * 17):
        _, reply = await login({"mediaCalls": bad})
        assert reply["subMark"] == "error" and reply["error"]["code"] == "invalid_field", reply
        assert reply["error"]["field"].startswith("params.mediaCalls"), reply
    assert (await again.call("getState"))["state"] == "006011"
    record = await server.services.calls.get_call(call_id)
    assert record["status"] == "connected"

    fresh, reply = await login({"mediaCalls": []})  # a new plugin process: no media
    assert reply["subMark"] == "success" and reply["state"] == "006011"
    left = await state(fresh, "005004")
    assert left["payload"]["reason"] == "agent_media_lost" and left["payload"]["callId"] == call_id
    ended = await call_event(v, "ended")
    assert (ended["callId"], ended["by"], ended["reason"]) == (call_id, "a1", "agent_media_lost")
    record = await server.services.calls.get_call(call_id)
    assert (record["status"], record["endedBy"], record["endReason"]) == ("ended", "a1", "agent_media_lost")
    members = {m["name"]: m for m in record["members"]}
    assert members["a1"]["reason"] == members["v1"]["reason"] == "agent_media_lost"


async def test_a_third_agent_back_without_the_media_leaves_the_call_to_the_others(server: Any) -> None:
    a1 = await server.agent("a1", ready=True)
    a2 = await server.agent("a2", ready=True)
    v = await visitor(server, "v1")
    call_id = (await a1.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    await state(a1, "003001")
    await state(a1, "006011")
    await a1.call("videoInviteAgent", {"agentName": "a2"})
    await state(a2, "004002")
    assert (await a2.call("multipleVideoPickUp"))["state"] == "006014"
    await state(a1, "007002")
    await state(a1, "008002")
    a2_again, reply = await plugin_login(server, "a2", a2.last_seq, {"mediaCalls": []})
    assert reply["subMark"] == "success" and reply["state"] == "006014"
    left = await state(a2_again, "005010")
    assert left["payload"]["reason"] == "agent_media_lost"
    assert (await state(a1, "006010"))["payload"]["subMark"] == "exitSuccess"
    gone = await call_event(v, "memberLeft")
    assert (gone["kind"], gone["name"]) == ("agent", "a2")
    record = await server.services.calls.get_call(call_id)
    members = {m["name"]: m for m in record["members"]}
    assert record["status"] == "connected" and members["a2"]["reason"] == "agent_media_lost"
    assert (await a1.call("videoDisconnect"))["state"] == "005004"  # the call went on
