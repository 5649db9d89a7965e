"""Bad input on both sockets: each is answered with an error in the spec's form and a
documented code, the connection stays up, and the next good message works."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kefu.protocol.wire import Json
from kefu.visitor import Visitor
from kefu.visitor.link import Link, LinkClosed
from tests.conftest import ServerHandle
from tests.server.clients import AgentClient


async def error_after(link: Link, frame: str | bytes) -> Json:
    await link.send_raw(frame)
    return await link.next_event("error")


async def still_works(link: Link) -> None:
    assert (await link.call("ping"))["subMark"] == "pong"


BAD_FRAMES = [
    ("hello", "bad_json", None),
    ('{"v":1,"id":"x","mark":', "bad_json", None),
    ("[]", "bad_request", None),
    ("null", "bad_request", None),
    ('{"v":1,"mark":"ping"}', "missing_field", "id"),
    ('{"v":1,"id":"x"}', "missing_field", "mark"),
    ('{"v":2,"id":"x","mark":"ping"}', "unsupported_version", "v"),
    ('{"v":1,"id":"x","mark":"installUpdate"}', "unknown_mark", "mark"),
    ('{"v":1,"id":"x","mark":"ping","mark":"logout"}', "bad_json", "mark"),
    ('{"v":1,"id":"x","mark":"ping","params":{"n":NaN}}', "bad_json", None),
    ('{"v":1,"id":"x","mark":"ping","params":' + "[" * 40 + "]" * 40 + "}", "bad_json", None),
    ('{"v":1,"id":"x","mark":"ping","params":{"n":' + "9" * 30 + "}}", "bad_json", None),
    ('{"v":1,"id":"x","mark":"ping","extra":1}', "invalid_field", "extra"),
    ('{"v":1,"id":"x","mark":"ping","params":[]}', "invalid_field", "params"),
    ('{"v":1,"id":"x","mark":"ping","params":{"a":1}}', "invalid_field", "params.a"),
]

AGENT_FRAMES = [
    ('{"v":1,"id":"x","mark":"pickUpSession","params":{}}', "missing_field", "params.session_id"),
    (
        '{"v":1,"id":"x","mark":"pickUpSession","params":{"session_id":123}}',
        "invalid_field",
        "params.session_id",
    ),
    (
        '{"v":1,"id":"x","mark":"pickUpSession","params":{"sessionId":"s"}}',
        "missing_field",
        "params.session_id",
    ),
    ('{"v":1,"id":"x","mark":"setAgentState","params":{"state":"IDLE"}}', "invalid_field", "params.state"),
    (
        '{"v":1,"id":"x","mark":"sendMessage","params":{"session_id":"s","text":""}}',
        "invalid_field",
        "params.text",
    ),
    ('{"v":1,"id":"x","mark":"auth","params":{"token":"t","lastSeq":-1}}', "invalid_field", "params.lastSeq"),
]

VISITOR_FRAMES = [
    ('{"v":1,"id":"x","mark":"sendMessage","params":{"text":""}}', "invalid_field", "params.text"),
    (
        '{"v":1,"id":"x","mark":"sendMessage","params":{"text":"' + "x" * 4097 + '"}}',
        "invalid_field",
        "params.text",
    ),
    ('{"v":1,"id":"x","mark":"sendMessage","params":{"text":true}}', "invalid_field", "params.text"),
    ('{"v":1,"id":"x","mark":"sendMessage","params":{"text":"\\ud800"}}', "bad_json", None),
    ('{"v":1,"id":"x","mark":"hello","params":{"name":"' + "n" * 65 + '"}}', "invalid_field", "params.name"),
]


async def test_bad_frames_on_the_agent_socket(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    for frame, code, field in BAD_FRAMES + AGENT_FRAMES:
        err = await error_after(agent.link, frame)
        assert err["error"]["code"] == code, frame
        assert err["error"].get("field") == field, frame
        assert isinstance(err["error"]["msg"], str) and err["error"]["msg"]
        await still_works(agent.link)
    # a binary frame
    err = await error_after(agent.link, b"\x00\x01")
    assert err["error"]["code"] == "binary_frame"
    await still_works(agent.link)
    # the reply names the request when it could be read
    err = await error_after(agent.link, AGENT_FRAMES[0][0])
    assert err["id"] == "x" and err["mark"] == "pickUpSession" and err["subMark"] == "error"


async def test_bad_frames_on_the_visitor_socket(server: ServerHandle) -> None:
    v = await server.visitor("v1")
    for frame, code, field in BAD_FRAMES + VISITOR_FRAMES:
        err = await error_after(v.link, frame)
        assert err["error"]["code"] == code, frame
        assert err["error"].get("field") == field, frame
        await still_works(v.link)
    await v.send_message("still here")


async def test_unknown_foreign_and_closed_sessions_change_nothing(server: ServerHandle) -> None:
    a1 = await server.agent("a1", ready=True)
    a2 = await server.agent("a2")
    v1 = await server.visitor("v1")
    v2 = await server.visitor("v2")
    s1 = (await v1.send_message("to a1"))["sessionId"]
    await a1.next_event("sessionAssigned")
    s2 = (await v2.send_message("to a1 as well"))["sessionId"]
    await a1.next_event("sessionAssigned")
    await a1.call("chatClose", {"session_id": s2})

    async def code(client: AgentClient, mark: str, params: dict[str, str]) -> str:
        reply = await client.request(mark, params)
        assert reply["subMark"] == "error"
        return str(reply["error"]["code"])

    unknown = "0" * 32
    assert await code(a2, "pickUpSession", {"session_id": unknown}) == "no_such_session"
    assert await code(a2, "sendMessage", {"session_id": unknown, "text": "x"}) == "no_such_session"
    assert await code(a2, "chatClose", {"session_id": unknown}) == "no_such_session"
    assert await code(a2, "pickUpSession", {"session_id": s1}) == "forbidden"
    assert await code(a2, "sendMessage", {"session_id": s1, "text": "not mine"}) == "forbidden"
    assert await code(a2, "chatClose", {"session_id": s1}) == "forbidden"
    assert await code(a2, "pickUpSession", {"session_id": s2}) == "session_closed"
    assert await code(a1, "sendMessage", {"session_id": s2, "text": "late"}) == "session_closed"
    # nothing changed: a1 still has s1 open; v1 heard nothing from a2
    assert (await a1.call("sessionState"))["payload"]["sessions"][0]["sessionId"] == s1
    assert (await a2.call("sessionCount"))["payload"]["sessionCount"] == 0
    await a1.call("sendMessage", {"session_id": s1, "text": "the real answer"})
    assert (await v1.next_event("message"))["payload"]["text"] == "the real answer"
    await still_works(a2.link)


async def test_before_auth_only_auth_is_accepted(server: ServerHandle) -> None:
    await server.add_agent("a1")
    link = Link(server.ws("/ws/agent"), timeout=5.0)
    await link.connect()
    early = await link.request("ping")
    assert early["subMark"] == "error" and early["error"]["code"] == "unauthenticated"
    early = await link.request("sessionState")
    assert early["error"]["code"] == "unauthenticated" and "payload" not in early
    ok = await link.request("auth", {"token": await server.login("a1"), "lastSeq": 0})
    assert ok["subMark"] == "success" and ok["state"] == "001000"
    await still_works(link)
    await link.disconnect()


async def test_a_wrong_token_is_refused_and_closed(server: ServerHandle) -> None:
    link = Link(server.ws("/ws/agent"), timeout=5.0)
    await link.connect()
    reply = await link.request("auth", {"token": "not-a-token", "lastSeq": 0})
    assert reply["error"] == {"code": "unauthenticated", "msg": "authenticate first"}
    assert await link.wait_closed() == 1008


@pytest.mark.server_settings(auth_timeout=0.2)
async def test_no_auth_in_time_closes_1008(server: ServerHandle) -> None:
    for path in ("/ws/agent", "/ws/visitor"):
        link = Link(server.ws(path), timeout=5.0)
        await link.connect()
        assert await link.wait_closed() == 1008


async def test_call_apis_not_allowed_now_change_nothing(server: ServerHandle) -> None:
    agent = await server.agent("a1")
    before = (await agent.call("getState"))["state"]
    for mark, params, code in [
        ("videoPickUp", {"session_id": "s1"}, "invalid_state"),
        ("videoInviteAgent", {"agentName": "a2"}, "invalid_state"),
        ("videoInviteVisitor", {"visitorName": "v2"}, "invalid_state"),
        ("multipleVideoPickUp", None, "invalid_state"),
        ("multipleVideoRefuse", None, "invalid_state"),
        ("videoDisconnect", None, "not_in_call"),
        ("takePhoto", None, "not_in_call"),
        ("inviteShare", None, "not_in_call"),
    ]:
        reply = await agent.request(mark, params)
        assert reply["subMark"] == "error" and reply["error"]["code"] == code, (mark, reply)
        assert "state" not in reply, mark
        await still_works(agent.link)
    assert (await agent.call("getState"))["state"] == before


async def test_requests_after_logout_need_a_login(server: ServerHandle) -> None:
    """Logout answers, revokes the token and closes the socket (docs/protocol.md): a request
    after it finds the socket closed, and the old token cannot log in again."""
    agent = await server.agent("a1")
    out = await agent.call("logout")
    assert out["state"] == "000000"
    assert await agent.link.wait_closed() == 4003
    with pytest.raises(LinkClosed):
        await agent.request("setAgentState", {"state": "idle"})
    again = AgentClient(server.ws("/ws/agent"), agent.token)
    assert (await again.connect())["error"]["code"] == "token_revoked"
    fresh = AgentClient(server.ws("/ws/agent"), await server.login("a1"))
    assert (await fresh.connect())["state"] == "001000"
    assert (await fresh.call("setAgentState", {"state": "idle"}))["state"] == "002000"
    await fresh.aclose()


@pytest.mark.server_settings(oversize_strikes=3)
async def test_oversized_messages_get_an_error_then_1009(server: ServerHandle) -> None:
    v = await server.visitor("v1")
    big = json.dumps({"v": 1, "id": "big", "mark": "ping", "params": {"pad": "x" * (64 * 1024)}})
    for _ in range(2):
        err = await error_after(v.link, big)
        assert err["error"]["code"] == "too_large"
        await still_works(v.link)
    await v.link.send_raw(big)
    assert await v.link.wait_closed() == 1009


async def test_a_frame_over_the_transport_limit_is_cut_with_1009(server: ServerHandle) -> None:
    v = await server.visitor("v1")
    await v.link.send_raw("x" * (server.settings.transport_max_bytes + 1))
    assert await v.link.wait_closed() == 1009


@pytest.mark.server_settings(rate_limit_messages=5, rate_limit_window=10.0, rate_limit_strikes=3)
async def test_a_flood_is_rate_limited_then_closed(server: ServerHandle) -> None:
    agent = await server.agent("a1")  # auth was message 1 of this window
    for _ in range(4):
        await still_works(agent.link)
    limited = await agent.request("ping")
    assert limited["subMark"] == "error" and limited["mark"] == "ping"
    assert limited["error"]["code"] == "rate_limited" and limited["error"]["retryAfter"] > 0
    server.clock.advance(10)  # a new window: the next good message works
    await still_works(agent.link)
    # the flood goes on: four more are answered, three are refused, the next one closes
    for _ in range(8):
        await agent.link.send_raw('{"v":1,"id":"f","mark":"ping"}')
    assert await agent.link.wait_closed() == 1008
    answers = [m for m in agent.link.pending_events() if m.get("id") == "f"]
    assert [m.get("subMark") for m in answers] == ["pong"] * 4 + ["error"] * 3


async def test_a_page_from_a_foreign_origin_cannot_open_the_sockets(server: ServerHandle) -> None:
    for path in ("/ws/agent", "/ws/visitor"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws(path), origin="https://evil.example", proxy=None):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
    # a page served by the server itself may
    own = server.url.replace("ws://", "http://")
    async with connect(server.ws("/ws/visitor"), origin=own, proxy=None) as ws:  # type: ignore[arg-type]
        await ws.send('{"v":1,"id":"p","mark":"ping"}')
        assert json.loads(await ws.recv())["error"]["code"] == "unauthenticated"


async def test_a_visitor_ping_before_hello_is_refused_without_data(server: ServerHandle) -> None:
    v = Visitor(server.url, "v1", timeout=5.0)
    await v.link.connect()
    reply = await v.link.request("sendMessage", {"text": "hi"})
    assert reply["error"]["code"] == "unauthenticated"
    await v.connect()
    assert (await v.send_message("hi"))["status"] == "queued"
    await v.aclose()
