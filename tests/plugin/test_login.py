"""``startLogin`` (SPEC §4.1): the login URL, the server's refusals, the timeout."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.plugin.login import check_login_url, redact
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
    assert check_login_url(ok, SERVER) == ok
    assert check_login_url("http://127.0.0.1:8600/kefu/doLogin?name=a", SERVER)
    for bad in (
        "http://127.0.0.1:8601/doLogin?name=a",
        "http://evil.example/doLogin",
        "http://127.0.0.1:8600/api/agents",
        "http://user:pw@127.0.0.1:8600/doLogin",
        "file:///etc/passwd",
        "ws://127.0.0.1:8600/doLogin",
        "javascript:alert(1)",
    ):
        with pytest.raises(ProtocolError) as info:
            check_login_url(bad, SERVER)
        assert info.value.code is ErrorCode.invalid_field and info.value.field == "params.data.url"


def test_the_password_never_reaches_a_log_line() -> None:
    assert redact(f"{SERVER}/doLogin?name=a1&pwd=76160006&returnTo=") == f"{SERVER}/doLogin"


async def login(raw: Raw, url: str, **params: Any) -> dict[str, Any]:
    return await raw.call("L", "startLogin", {"data": {"url": url}, **params})


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
