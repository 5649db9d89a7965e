"""The REST API under /api: a token is required; an agent sees its own data, an admin all."""

from __future__ import annotations

import httpx

from tests.conftest import ServerHandle


def api(server: ServerHandle, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=server.url, headers=headers)


async def two_agents_with_sessions(server: ServerHandle) -> tuple[str, str, str, str]:
    """a1 has an open session with v1 and a closed one with v2; a2 has one with v3; v4 waits."""
    a1 = await server.agent("a1", ready=True)
    a2 = await server.agent("a2")
    await server.add_agent("boss", admin=True)
    v1, v2, v3, v4 = [await server.visitor(n) for n in ("v1", "v2", "v3", "v4")]
    s1 = (await v1.send_message("one"))["sessionId"]
    await a1.next_event("sessionAssigned")
    s2 = (await v2.send_message("two"))["sessionId"]
    await a1.next_event("sessionAssigned")
    await a1.call("chatClose", {"session_id": s2})
    await a1.call("setAgentState", {"state": "busy"})
    s3 = (await v3.send_message("three"))["sessionId"]
    await a2.call("pickUpSession", {"session_id": s3})
    await v4.send_message("four")
    return a1.token, a2.token, s1, s3


async def test_a_token_is_required(server: ServerHandle) -> None:
    async with api(server, None) as c:
        for path in ("/api/me", "/api/agents", "/api/sessions", "/api/agents/a1/states"):
            r = await c.get(path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", path
    async with api(server, "forged") as c:
        assert (await c.get("/api/agents")).json()["error"]["code"] == "unauthenticated"


async def test_agents_with_their_current_state(server: ServerHandle) -> None:
    _, t2, _, _ = await two_agents_with_sessions(server)
    boss = await server.login("boss")
    async with api(server, boss) as c:
        rows = {r["name"]: r for r in (await c.get("/api/agents")).json()}
        assert set(rows) == {"a1", "a2", "boss"}
        assert rows["a1"]["state"] == "001000" and rows["a1"]["openSessions"] == 1
        assert rows["a1"]["connected"] is True and rows["boss"]["connected"] is False
        assert rows["a2"]["openSessions"] == 1 and rows["boss"]["admin"] is True
        hist = (await c.get("/api/agents/a1/states")).json()
        assert [h["new"] for h in hist] == ["001000", "002000", "001000"]
        assert (await c.get("/api/agents/nobody")).json()["error"]["code"] == "no_such_agent"
    async with api(server, t2) as c:
        rows = (await c.get("/api/agents")).json()
        assert [r["name"] for r in rows] == ["a2"]
        assert (await c.get("/api/agents/a1")).status_code == 403
        assert (await c.get("/api/agents/a1/states")).json()["error"]["code"] == "forbidden"
        assert (await c.get("/api/agents/a2/states")).status_code == 200


async def test_sessions_filtered_and_visible_to_their_agent(server: ServerHandle) -> None:
    t1, _, s1, s3 = await two_agents_with_sessions(server)
    boss = await server.login("boss")
    async with api(server, boss) as c:
        every = (await c.get("/api/sessions")).json()
        assert [s["visitorName"] for s in every] == ["v1", "v2", "v3", "v4"]
        assert [s["status"] for s in every] == ["open", "closed", "open", "queued"]
        assert [s["sessionId"] for s in (await c.get("/api/sessions?status=open")).json()] == [s1, s3]
        by_a2 = (await c.get("/api/sessions?agentName=a2")).json()
        assert [s["sessionId"] for s in by_a2] == [s3]
        by_v2 = (await c.get("/api/sessions", params={"visitorName": "v2"})).json()
        assert by_v2[0]["closedBy"] == "agent" and by_v2[0]["closeReason"] == "chatClose"
        since = every[2]["since"]
        later = (await c.get("/api/sessions", params={"since": since})).json()
        assert [s["visitorName"] for s in later] == ["v3", "v4"]
        assert (await c.get("/api/sessions", params={"until": since})).json()[-1]["visitorName"] == "v2"
        assert (await c.get("/api/sessions?status=bogus")).status_code == 400
        paged = (await c.get("/api/sessions", params={"limit": 2, "offset": 1})).json()
        assert [s["visitorName"] for s in paged] == ["v2", "v3"]
    async with api(server, t1) as c:
        mine = (await c.get("/api/sessions")).json()
        # its own (open and closed) and the waiting one, not a2's
        assert [s["visitorName"] for s in mine] == ["v1", "v2", "v4"]
        assert (await c.get("/api/sessions?agentName=a2")).status_code == 403
        one = (await c.get(f"/api/sessions/{s1}")).json()
        assert one["lastMessage"]["text"] == "one" and one["agentName"] == "a1"
        msgs = (await c.get(f"/api/sessions/{s1}/messages")).json()
        assert [(m["from"], m["text"]) for m in msgs] == [("visitor", "one")]
        hidden = await c.get(f"/api/sessions/{s3}/messages")
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "no_such_session"


async def test_openapi_docs(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/docs")).status_code == 200
        spec = (await c.get("/openapi.json")).json()
    for path in (
        "/doLogin",
        "/api/login",
        "/api/agents",
        "/api/sessions",
        "/api/sessions/{session_id}/messages",
    ):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
