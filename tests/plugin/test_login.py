"""``startLogin`` (SPEC §4.1): the login URL, the server's refusals, the timeout."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.plugin.login import LoginForm, check_login_url, redact
from kefu.plugin.security import canonical_path, path_within
from kefu.protocol import ErrorCode, ProtocolError
from kefu.server.accounts import set_disabled

from .harness import (
    PluginFactory,
    Raw,
    ServerHandle,
    login_url,
    silent_server,
)

SERVER = "http://127.0.0.1:8600"


def test_the_login_url_must_be_the_servers_doLogin() -> None:
    ok = f"{SERVER}/doLogin?name=a&pwd=b&returnTo="
    assert check_login_url(ok, SERVER) == LoginForm("a", "b")
    assert check_login_url(f"{SERVER}/doLogin?pwd=p%26w%3D&name=%E5%9D%90", SERVER) == LoginForm("坐", "p&w=")
    assert "b" not in repr(check_login_url(ok, SERVER))  # the password is not in the repr
    for bad in (
        "http://127.0.0.1:8601/doLogin?name=a&pwd=b",
        "http://evil.example/doLogin?name=a&pwd=b",
        "http://127.0.0.1:8600/api/agents?name=a&pwd=b",
        "http://127.0.0.1:8600/kefu/doLogin?name=a&pwd=b",  # the server's /doLogin is at its root
        "http://user:pw@127.0.0.1:8600/doLogin?name=a&pwd=b",
        "file:///etc/passwd",
        "ws://127.0.0.1:8600/doLogin?name=a&pwd=b",
        "javascript:alert(1)",
        f"{SERVER}/doLogin?name=a",  # no password
        f"{SERVER}/doLogin?pwd=b",  # no name
        f"{SERVER}/doLogin?name=a&name=b&pwd=c",  # which name?
        f"{SERVER}/doLogin?name=&pwd=b",
    ):
        with pytest.raises(ProtocolError) as info:
            check_login_url(bad, SERVER)
        assert info.value.code is ErrorCode.invalid_field and info.value.field == "params.data.url"


#: Paths that a server, or a proxy in front of it, may decode and resolve elsewhere.
DOT_SEGMENTS = (
    "/%2e%2e/doLogin",
    "/%2E%2E/doLogin",
    "/api/%2e%2e/doLogin",
    "/api/agents/%2e%2e/%2E%2E/doLogin",
    "/x/..%2fdoLogin",
    "/x/..%2FdoLogin",
    "/x/%2e%2e%2fdoLogin",
    "/%252e%252e/doLogin",
    "/x/%252e%252e%252fdoLogin",
    "/x/../doLogin",
    "/./doLogin",
    "/doLogin/.",
    "/doLogin/..",
    "/do%4cogin",
    "/doLogin%2f",
    "/x\\..\\doLogin",
    "//doLogin",
    "/doLogin%00",
    "/%ff/../doLogin",
)


def test_dot_segments_and_encoded_paths_are_refused() -> None:
    for path in DOT_SEGMENTS:
        with pytest.raises(ProtocolError) as info:
            check_login_url(f"{SERVER}{path}?name=a&pwd=b", SERVER)
        assert info.value.code is ErrorCode.invalid_field, path
        assert "dot segments" in info.value.msg, path


def test_canonical_paths() -> None:
    assert canonical_path("/a/./b/../c") == "/a/c"
    assert canonical_path("/a/b/..") == "/a/"
    assert canonical_path("/x/%252e%252e/doLogin") == "/doLogin"  # decoded twice, then resolved
    assert canonical_path("/%2e%2e/doLogin") is None  # above the root
    assert canonical_path("/%25252525252e") is None  # still encoded after every round
    assert canonical_path("doLogin") is None and canonical_path("/a\\b") is None
    assert path_within("/api/media/m1", "/api/")
    assert not path_within("/api/media/../calls/c1/recording", "/api/media/")
    assert not path_within("/api", "/api/")


async def test_an_encoded_path_is_refused_with_a_clear_error_and_nothing_fetched(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        await raw.push("client", "ssoReady")
        for i, path in enumerate(DOT_SEGMENTS):
            url = f"{kefu_server.url}{path}?name=a1&pwd=secret-pw&returnTo="
            reply = await login(raw, url, rid=f"d{i}")
            assert reply["subMark"] == "error", path
            assert reply["error"]["code"] == "invalid_field" and reply["error"]["field"] == "params.data.url"
        assert plugin.link is None and plugin.agent is None
        assert (await login(raw, kefu_server.login_url("a1"), rid="ok"))["subMark"] == "success"


def test_the_password_never_reaches_a_log_line() -> None:
    assert redact(f"{SERVER}/doLogin?name=a1&pwd=76160006&returnTo=") == f"{SERVER}/doLogin"


async def login(raw: Raw, url: str, rid: str = "L", **params: Any) -> dict[str, Any]:
    return await raw.call(rid, "startLogin", {"data": {"url": url}, **params})


async def test_success_answers_the_agent_and_pushes_kefuReady(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1", max_sessions=3)
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        await raw.push("client", "ssoReady")
        reply = await login(raw, kefu_server.login_url("a1"), minimize=True)
        assert reply["subMark"] == "success"
        assert reply["payload"]["agent"] == {"name": "a1", "admin": False, "maxSessions": 3}
        assert reply["payload"]["state"] == reply["state"] == "001000"
        ready = await raw.push("client", "kefuReady")
        assert ready["payload"] == reply["payload"]
        assert plugin.window.state.minimized  # minimised while logging in
        # the plugin keeps the token in memory only: nothing in its folder but the pairing token
        assert sorted(p.name for p in plugin.settings.data_dir.iterdir()) == ["plugin.token"]


async def test_wrong_credentials_give_the_servers_message(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        await raw.push("client", "ssoReady")
        for rid, url in (
            ("1", kefu_server.login_url("a1", "wrong-pw")),
            ("2", kefu_server.login_url("nobody")),
        ):
            reply = await raw.call(rid, "startLogin", {"data": {"url": url}})
            assert reply["subMark"] == "error"
            assert reply["error"] == {"code": "bad_credentials", "msg": "用户名或密码错误"}  # zh by default
            assert reply["code"] == "bad_credentials"
            assert (await raw.push("client", "ssoReady"))["payload"]["server"] == kefu_server.url
        assert plugin.link is None and plugin.agent is None


async def test_a_disabled_account_is_refused(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    await set_disabled(kefu_server.services.store, "a1", True)
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        reply = await login(raw, kefu_server.login_url("a1"))
        assert reply["error"]["code"] == "account_disabled"


async def test_a_url_off_the_server_is_refused_without_a_fetch(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        reply = await login(raw, "http://127.0.0.1:9/doLogin?name=a&pwd=b")
        assert reply["error"]["code"] == "invalid_field" and reply["error"]["field"] == "params.data.url"


async def test_no_answer_within_the_login_timeout_is_code_minus_one(plugin_factory: PluginFactory) -> None:
    async with silent_server() as url:
        plugin = await plugin_factory(url, login_timeout=0.2)
        async with Raw.connect(plugin) as raw:
            reply = await login(raw, login_url(url, "a1"))
            # SPEC §4.1: ``if (err && err.code == -1)``; v1204: ``data.error.msg``
            assert reply["code"] == -1
            assert reply["error"] == {"code": -1, "msg": "登录超时"}
            assert plugin.link is None


async def test_a_server_that_is_down_is_upstream_down(plugin_factory: PluginFactory) -> None:
    plugin = await plugin_factory("http://127.0.0.1:9")
    async with Raw.connect(plugin) as raw:
        reply = await login(raw, "http://127.0.0.1:9/doLogin?name=a1&pwd=x&returnTo=")
        assert reply["error"]["code"] == "upstream_down"
        assert "pwd" not in reply["error"]["msg"]


async def test_another_agent_logging_in_logs_the_first_out(
    kefu_server: ServerHandle, plugin_factory: PluginFactory
) -> None:
    await kefu_server.add_agent("a1")
    await kefu_server.add_agent("a2")
    plugin = await plugin_factory(kefu_server.url)
    async with Raw.connect(plugin) as raw:
        assert (await login(raw, kefu_server.login_url("a1")))["subMark"] == "success"
        again = await raw.call("L2", "startLogin", {"data": {"url": kefu_server.login_url("a2")}})
        assert again["payload"]["agent"]["name"] == "a2"
        assert (await raw.call("s", "getState"))["state"] == "001000"
    agents = {a["name"]: a for a in await agent_rows(kefu_server)}
    assert agents["a1"]["state"] == "000000" and agents["a2"]["state"] == "001000"


async def agent_rows(kefu_server: ServerHandle) -> list[dict[str, Any]]:
    from kefu.server.accounts import list_agents

    async with kefu_server.services.store.read() as conn:
        rows: list[dict[str, Any]] = await list_agents(conn)
        return rows
