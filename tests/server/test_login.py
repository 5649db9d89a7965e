"""Login: /doLogin as the spec's URL, POST /api/login, tokens, expiry, throttling, no open redirect."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from sqlalchemy import text as sql

from kefu.server.accounts import set_disabled
from tests.conftest import PASSWORD, ServerHandle
from tests.server.clients import AgentClient

ORIGIN = "http://127.0.0.1:9999"


def client(server: ServerHandle) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, follow_redirects=False)


async def test_do_login_answers_json_with_an_expiring_token(server: ServerHandle) -> None:
    await server.add_agent("23160006")
    async with client(server) as c:
        # the spec's own sample URL shape (SPEC §4.1)
        r = await c.get(f"/doLogin?name=23160006&pwd={PASSWORD}&returnTo=")
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"token", "expiresAt", "agent"}
        assert body["agent"] == {"name": "23160006", "admin": False, "maxSessions": 5}
        assert len(body["token"]) >= 43  # 256 bits, url-safe base64
        assert r.headers["cache-control"] == "no-store"
        me = await c.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"})
        assert me.status_code == 200 and me.json()["name"] == "23160006"


async def test_post_api_login(server: ServerHandle) -> None:
    await server.add_agent("a1", admin=True, max_sessions=3)
    async with client(server) as c:
        r = await c.post("/api/login", json={"name": "a1", "password": PASSWORD})
        assert r.status_code == 200
        assert r.json()["agent"] == {"name": "a1", "admin": True, "maxSessions": 3}
        bad = await c.post("/api/login", json={"name": "a1", "password": "nope"})
        assert bad.status_code == 401
        assert bad.json() == {"error": {"code": "bad_credentials", "msg": "wrong name or password"}}
        extra = await c.post("/api/login", json={"name": "a1", "password": PASSWORD, "x": 1})
        assert extra.status_code == 400 and extra.json()["error"]["code"] == "invalid_field"


@pytest.mark.server_settings(allowed_origins=(ORIGIN,))
async def test_do_login_redirects_to_an_allowed_origin_with_a_strict_cookie(server: ServerHandle) -> None:
    await server.add_agent("a1")
    async with client(server) as c:
        r = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": f"{ORIGIN}/desk?x=1"})
        assert r.status_code == 303
        assert r.headers["location"] == f"{ORIGIN}/desk?x=1"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("kefu_token=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        me = await c.get("/api/me", headers={"Cookie": f"kefu_token={token}"})
        assert me.json()["name"] == "a1"
        # a path on this server is allowed too; Accept: application/json gets the JSON instead
        rel = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": "/console"})
        assert rel.status_code == 303 and rel.headers["location"] == "/console"
        js = await c.get(
            "/doLogin",
            params={"name": "a1", "pwd": PASSWORD, "returnTo": "/console"},
            headers={"Accept": "application/json"},
        )
        assert js.status_code == 200 and "token" in js.json()


@pytest.mark.server_settings(allowed_origins=(ORIGIN,))
@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        f"{ORIGIN}@evil.example/",
        "http://127.0.0.1:99990/",
        "http://127.0.0.1:9999.evil.example/",
        "javascript:alert(1)",
        "https://127.0.0.1:9999/",  # the scheme is part of the origin
    ],
)
async def test_return_to_a_foreign_origin_is_refused(server: ServerHandle, target: str) -> None:
    await server.add_agent("a1")
    async with client(server) as c:
        r = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": target})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "redirect_refused"
    assert "set-cookie" not in r.headers and "location" not in r.headers


async def test_wrong_name_or_password_is_401_in_the_spec_format(server: ServerHandle) -> None:
    await server.add_agent("a1")
    async with client(server) as c:
        for params in ({"name": "a1", "pwd": "wrong"}, {"name": "nobody", "pwd": PASSWORD}):
            r = await c.get("/doLogin", params={**params, "returnTo": ""})
            assert r.status_code == 401
            assert r.json() == {"error": {"code": "bad_credentials", "msg": "wrong name or password"}}
        missing = await c.get("/doLogin", params={"name": "a1"})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_field"


async def test_an_expired_token_is_refused_by_rest_and_socket(server: ServerHandle) -> None:
    await server.add_agent("a1")
    token = await server.login("a1")
    server.clock.advance(server.settings.token_ttl + 1)
    async with client(server) as c:
        r = await c.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"
    agent = AgentClient(server.ws("/ws/agent"), token)
    reply = await agent.connect()
    assert reply["subMark"] == "error" and reply["error"]["code"] == "token_expired"
    assert await agent.link.wait_closed() == 1008


@pytest.mark.server_settings(login_delay_after=2, login_delay=0.05, login_max_failures=4, login_lock=60.0)
async def test_failed_logins_are_slowed_then_locked_then_allowed_again(server: ServerHandle) -> None:
    await server.add_agent("a1")
    await server.add_agent("a2")
    async with client(server) as c:

        async def attempt(name: str, pwd: str) -> tuple[httpx.Response, float]:
            start = time.perf_counter()
            r = await c.get("/doLogin", params={"name": name, "pwd": pwd, "returnTo": ""})
            return r, time.perf_counter() - start

        for _ in range(2):
            r, _ = await attempt("a1", "wrong")
            assert r.status_code == 401
        r, took = await attempt("a1", "wrong")  # third failure: slowed down by one step
        assert r.status_code == 401 and took >= 0.05
        r, _ = await attempt("a1", "wrong")  # fourth: now locked
        assert r.status_code == 401
        locked, _ = await attempt("a1", PASSWORD)  # even the right password is refused now
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "login_locked"
        assert int(locked.headers["retry-after"]) > 0
        other, _ = await attempt("a2", PASSWORD)  # the lock is per name
        assert other.status_code == 200
        server.clock.advance(61)
        ok, _ = await attempt("a1", PASSWORD)
        assert ok.status_code == 200


@pytest.mark.server_settings(login_max_failures=100, login_max_failures_per_address=3, login_lock=60.0)
async def test_failed_logins_from_one_address_lock_the_address(server: ServerHandle) -> None:
    await server.add_agent("a1")
    async with client(server) as c:
        for name in ("x1", "x2", "x3"):
            r = await c.get("/doLogin", params={"name": name, "pwd": "guess", "returnTo": ""})
            assert r.status_code == 401
        r = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": ""})
        assert r.status_code == 429 and r.json()["error"]["code"] == "login_locked"
        server.clock.advance(61)
        r = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": ""})
        assert r.status_code == 200


async def test_a_disabled_account_cannot_log_in_and_its_tokens_stop(server: ServerHandle) -> None:
    await server.add_agent("a1")
    token = await server.login("a1")
    await set_disabled(server.services.store, "a1")
    async with client(server) as c:
        r = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": ""})
        assert r.status_code == 403
        assert r.json()["error"] == {"code": "account_disabled", "msg": "this account is disabled"}
        me = await c.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401  # revoked with the account
        assert me.json()["error"]["code"] == "token_revoked"


async def test_the_password_and_token_never_reach_the_logs_or_the_database(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    await server.add_agent("a1")
    with caplog.at_level(logging.DEBUG):
        async with client(server) as c:
            r = await c.get("/doLogin", params={"name": "a1", "pwd": PASSWORD, "returnTo": ""})
            token = r.json()["token"]
            await c.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        agent = AgentClient(server.ws("/ws/agent"), token)
        await agent.connect()
        await agent.aclose()
    # the server's side: everything but this test's own HTTP and WebSocket clients
    clients = ("httpx", "httpcore", "websockets.client")
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(clients))
    assert "GET /doLogin 200" in text  # the request is logged, without its query string
    assert PASSWORD not in text and token not in text
    async with server.services.store.read() as conn:
        for table in ("agents", "tokens"):
            rows = (await conn.execute(sql(f"SELECT * FROM {table}"))).all()
            dump = repr(rows)
            assert PASSWORD not in dump and token not in dump
