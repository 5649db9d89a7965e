"""The control server on its own (SPEC §6, reliability §1.4): who may connect,
pairing, one controller, the window and local APIs, bad input, quit.

The plugin's server is a silent one here (it accepts and never answers), so
nothing depends on the kefu server; the link is tested in ``test_link.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kefu.plugin import Plugin
from kefu.protocol import CATALOGUE, MAX_MESSAGE_BYTES, ErrorCode

from .harness import Raw, fast_settings, http_handshake, silent_server, wait_for


@pytest_asyncio.fixture
async def lone(tmp_path: Any) -> AsyncIterator[tuple[Plugin, str]]:
    """A plugin whose server never answers, and that server's URL."""
    async with silent_server() as url:
        p = Plugin(fast_settings(url, tmp_path / "plugin", hello_timeout=0.3, login_timeout=0.5))
        await p.start()
        try:
            yield p, url
        finally:
            await p.aclose()


async def closed_with(raw: Raw) -> int | None:
    """Read until the plugin closes the connection; its close code."""
    with pytest.raises(ConnectionClosed):
        while True:
            raw.pushes.append(json.loads(await wait_for(raw.ws.recv())))
    rcvd = raw.ws.protocol.close_rcvd
    return rcvd.code if rcvd is not None else None


# --- who may connect


async def test_binds_loopback_only_and_writes_the_token_for_the_user(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    assert plugin._server is not None
    assert {s.getsockname()[0] for s in plugin._server.sockets} == {"127.0.0.1"}
    path = plugin.settings.token_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert plugin.token.matches(path.read_text().strip())


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "127.1:{port}", "0x7f000001:{port}", "localhost.:{port}", "127.0.0.1", "", None],
)
async def test_a_foreign_host_is_refused_before_the_upgrade(
    lone: tuple[Plugin, str], host: str | None
) -> None:
    plugin, _ = lone
    headers = {} if host is None else {"Host": host.format(port=plugin.port)}
    status, body = await http_handshake(plugin.port, headers)
    assert status == 403
    assert body["error"]["code"] == "host_refused"


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "null", "http://127.0.0.1:{port}.evil.example", "https://127.0.0.1:{port}"],
)
async def test_a_foreign_origin_is_refused_before_the_upgrade(lone: tuple[Plugin, str], origin: str) -> None:
    plugin, _ = lone
    headers = {"Host": f"127.0.0.1:{plugin.port}", "Origin": origin.format(port=plugin.port)}
    status, body = await http_handshake(plugin.port, headers)
    assert status == 403
    assert body["error"]["code"] == "origin_refused"
    with pytest.raises(InvalidStatus) as info:
        async with connect(plugin.url, additional_headers={"Origin": origin.format(port=plugin.port)}):
            pass
    assert info.value.response.status_code == 403


async def test_unknown_paths_are_404(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    status, body = await http_handshake(
        plugin.port, {"Host": f"localhost:{plugin.port}"}, path="/install.exe"
    )
    assert status == 404 and body["error"]["code"] == "bad_request"


async def test_an_allowed_origin_needs_no_token(lone: tuple[Plugin, str]) -> None:
    plugin, server_url = lone
    for origin in (server_url, f"http://localhost:{plugin.port}"):
        async with Raw.connect(plugin, origin=origin) as page:
            ready = await page.push("client", "ssoReady")
            assert ready["payload"]["server"] == server_url
            reply = await page.call("1", "getWindow")
            assert reply["subMark"] == "success" and reply["payload"]["width"] == 800


async def test_a_client_without_origin_must_say_hello_with_the_token_first(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin, hello=False) as raw:
        reply = await raw.call("1", "getWindow")
        assert reply["subMark"] == "error" and reply["error"]["code"] == "unauthenticated"
        assert "width" not in json.dumps(reply)
        assert await closed_with(raw) == 1008


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_a_missing_or_wrong_token_is_refused(lone: tuple[Plugin, str], token: str | None) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin, hello=False) as raw:
        params = {} if token is None else {"token": token}
        reply = await raw.call("h", "hello", params)
        assert reply["error"]["code"] == "unauthenticated"
        assert await closed_with(raw) == 1008


async def test_silence_after_connecting_is_closed(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin, hello=False) as raw:
        assert await closed_with(raw) == 1008
        assert raw.pushes[-1]["error"]["code"] == "unauthenticated"


async def test_five_wrong_tokens_lock_pairing_but_not_the_controller(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin) as controller:
        for i in range(5):
            async with Raw.connect(plugin, hello=False) as raw:
                reply = await raw.call("h", "hello", {"token": f"guess{i}"})
                assert reply["error"]["code"] == "unauthenticated"
        async with Raw.connect(plugin, hello=False) as raw:
            reply = await raw.call("h", "hello", {"token": plugin.token._value})
            assert reply["error"]["code"] == "rate_limited"
            assert "locked" in reply["error"]["detail"]  # in Chinese by default: the English detail
        assert (await controller.call("w", "getWindow"))["subMark"] == "success"


# --- one controller


async def test_a_second_controller_is_refused_and_the_first_keeps_working(lone: tuple[Plugin, str]) -> None:
    plugin, server_url = lone
    async with Raw.connect(plugin) as first:
        async with Raw.connect(plugin, hello=False) as second:
            reply = await second.call("h", "hello", {"token": plugin.token._value})
            assert reply["error"]["code"] == "controller_busy"
            assert "--allow-many" in reply["error"]["detail"]
            assert await closed_with(second) == 1008
        async with Raw.connect(plugin, origin=server_url, hello=False) as page:
            assert await closed_with(page) == 1008
            assert page.pushes[0]["error"]["code"] == "controller_busy"
        assert (await first.call("1", "minimize"))["payload"]["minimized"] is True
    # the first left: the next one controls the plugin
    async with Raw.connect(plugin) as third:
        assert (await third.call("1", "restore"))["payload"]["minimized"] is False


async def test_allow_many_lets_several_control_and_hear_the_pushes(tmp_path: Any) -> None:
    async with silent_server() as url:
        async with Plugin(fast_settings(url, tmp_path / "p", allow_many=True)) as plugin:
            async with Raw.connect(plugin) as a, Raw.connect(plugin) as b:
                await a.push("client", "ssoReady")
                await b.push("client", "ssoReady")
                plugin.broadcast({"v": 1, "mark": "event", "subMark": "queue", "payload": {"waiting": []}})
                assert (await a.push("event", "queue"))["payload"] == {"waiting": []}
                assert (await b.push("event", "queue"))["payload"] == {"waiting": []}


# --- local APIs


async def test_the_window_apis_act_on_the_model(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin) as raw:
        r = await raw.call("1", "setWindowSize", {"width": "300", "height": "400"})
        assert r["subMark"] == "success" and (r["payload"]["width"], r["payload"]["height"]) == (300, 400)
        assert r["state"] == "000000"  # every reply carries the agent's state
        assert (await raw.call("2", "minimize"))["payload"]["minimized"] is True
        assert (await raw.call("3", "restore"))["payload"]["minimized"] is False
        plugin.window.close()
        r = await raw.call("4", "startup", {"clientUrl": "pocprotocol://"})
        assert r["payload"]["visible"] is True
        assert (await raw.call("5", "getWindow"))["payload"] == {
            "width": 300,
            "height": 400,
            "minimized": False,
            "visible": True,
        }
        bad = await raw.call("6", "setWindowSize", {"width": "-3", "height": "x"})
        assert bad["error"]["code"] == "invalid_field" and bad["error"]["field"] == "params.width"
        bad = await raw.call("7", "startup", {"clientUrl": "file:///bin/sh"})
        assert bad["error"]["code"] == "invalid_field"
        assert plugin.window.state.width == 300


async def test_queries_and_apis_that_need_a_login(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin) as raw:
        r = await raw.call("1", "isMultipleVideo")
        assert r == {
            "v": 1,
            "id": "1",
            "mark": "isMultipleVideo",
            "subMark": "success",
            "data": False,
            "state": "000000",
        }
        assert (await raw.call("2", "isShareState"))["data"] is False
        for i, mark in enumerate(["sessionCount", "sessionState", "chatClose", "logout", "getState"]):
            r = await raw.call(f"f{i}", mark)
            assert r["subMark"] == "error" and r["error"]["code"] == "not_logged_in", r
        r = await raw.call("p", "pickUpSession", {"session_id": "s1"})
        assert r["error"]["code"] == "not_logged_in"
        for mark in ("takePhoto", "snapshot", "inviteShare"):
            r = await raw.call(mark, mark)
            assert r["subMark"] == "error" and r["error"]["code"] == "not_logged_in", r


# --- bad input: an error each, and the connection serves the next good request


BAD_INPUTS: list[tuple[str | bytes, str, str | None]] = [
    ("hello", "bad_json", None),
    ('{"v":1,"id":"b1","mark":', "bad_json", None),
    ("[]", "bad_request", None),
    ("null", "bad_request", None),
    ('{"v":1,"mark":"getWindow"}', "missing_field", None),
    ('{"v":1,"id":"b2","mark":"installUpdate"}', "unknown_mark", "b2"),
    ('{"v":1,"id":"b3","mark":"pickUpSession","params":{"session_id":123}}', "invalid_field", "b3"),
    (
        '{"v":1,"id":"b4","mark":"startLogin","params":{"minimize":"true","data":{"url":"x"}}}',
        "invalid_field",
        "b4",
    ),
    ('{"v":1,"id":"b5","mark":"pickUpSession","params":{}}', "missing_field", "b5"),
    ('{"v":1,"id":"b6","mark":"getWindow","params":{"x":1}}', "invalid_field", "b6"),
    ('{"v":2,"id":"b7","mark":"getWindow"}', "unsupported_version", "b7"),
    ('{"v":1,"id":"b8","mark":"getWindow","mark":"quit"}', "bad_json", None),
    ('{"v":1,"id":"b9","mark":"getWindow","params":{"a":NaN}}', "bad_json", None),
    ("[" * 100 + "]" * 100, "bad_json", None),
    ('{"v":1,"id":17,"mark":"getWindow"}', "invalid_field", None),
    (b"\x00\x01binary", "binary_frame", None),
    ("x" * (1024 * 1024), "too_large", None),
    ('{"v":1,"id":"b10","mark":"getWindow","pad":"' + "x" * MAX_MESSAGE_BYTES + '"}', "too_large", None),
]


async def test_every_bad_input_gets_an_error_and_the_next_request_works(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin) as raw:
        for i, (frame, code, rid) in enumerate(BAD_INPUTS):
            await raw.send(frame)
            reply = await raw.reply(rid)
            assert reply["subMark"] == "error", (frame[:40], reply)
            assert reply["error"]["code"] == code, (frame[:40], reply)
            assert isinstance(reply["error"]["msg"], str) and reply["error"]["msg"]
            assert reply["mark"] != "installUpdate"  # an unknown mark is not taken as the reply's mark
            good = await raw.call(f"good{i}", "getWindow")
            assert good["subMark"] == "success", frame[:40]
        assert raw.ws.protocol.close_rcvd is None


async def test_a_frame_over_the_socket_limit_closes_1009(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin) as raw:
        await raw.send("x" * (plugin.settings.max_frame + 1))
        assert await closed_with(raw) == 1009
    async with Raw.connect(plugin) as again:  # the plugin is fine
        assert (await again.call("1", "getWindow"))["subMark"] == "success"


async def test_a_request_id_in_flight_cannot_be_reused(lone: tuple[Plugin, str]) -> None:
    plugin, server_url = lone
    async with Raw.connect(plugin) as raw:
        login = {"data": {"url": f"{server_url}/doLogin?name=a&pwd=b&returnTo="}}
        await raw.send({"v": 1, "id": "L", "mark": "startLogin", "params": login})
        dup = await raw.call("L", "getWindow")
        assert dup["error"]["code"] == "duplicate_request"
        # the silent server never answers: the login times out with the spec's -1
        timed_out = await raw.reply("L")
        assert timed_out["error"]["code"] == -1 and timed_out["code"] == -1
        assert (await raw.call("L", "getWindow"))["subMark"] == "success"  # the id is free again


async def test_the_rate_limit_answers_and_keeps_the_connection(tmp_path: Any) -> None:
    async with silent_server() as url:
        async with Plugin(fast_settings(url, tmp_path / "p", rate_limit=2, rate_window=60)) as plugin:
            async with Raw.connect(plugin) as raw:  # pairing is not counted
                assert (await raw.call("1", "getWindow"))["subMark"] == "success"
                assert (await raw.call("2", "getWindow"))["subMark"] == "success"
                limited = await raw.call("3", "getWindow")
                assert limited["error"]["code"] == "rate_limited" and limited["mark"] == "getWindow"
                await raw.send("not json")
                assert (await raw.reply(None))["error"]["code"] == "rate_limited"
                assert raw.ws.protocol.close_rcvd is None


async def test_binary_frames_count_toward_the_rate_limit(tmp_path: Any) -> None:
    async with silent_server() as url:
        async with Plugin(fast_settings(url, tmp_path / "p", rate_limit=5, rate_window=60)) as plugin:
            async with Raw.connect(plugin) as raw:
                for _ in range(300):
                    await raw.send(b"\x00flood")
                limited = await raw.call("after", "getWindow")  # the flood used up the limit
                assert limited["error"]["code"] == "rate_limited"
                codes = [m["error"]["code"] for m in raw.pushes if "error" in m]
                # five frames within the limit, then one notice for the whole flood
                assert codes == ["binary_frame"] * 5 + ["rate_limited"], codes
                assert raw.ws.protocol.close_rcvd is None


async def test_too_many_connections_get_503(tmp_path: Any) -> None:
    async with silent_server() as url:
        async with Plugin(fast_settings(url, tmp_path / "p", max_connections=1)) as plugin:
            async with Raw.connect(plugin):
                status, body = await http_handshake(plugin.port, {"Host": f"127.0.0.1:{plugin.port}"})
                assert status == 503 and body["error"]["code"] == "rate_limited"


# --- quit


async def test_quit_answers_tells_the_sdks_and_stops_the_plugin(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    token_path = plugin.settings.token_path
    async with Raw.connect(plugin) as raw:
        reply = await raw.call("q", "quit")
        assert reply["subMark"] == "success"
        assert (await raw.push("client", "quit"))["payload"] == {"reason": "quit"}
        assert await closed_with(raw) == 1001
    await wait_for(plugin.wait_stopped())
    assert not token_path.exists()
    assert plugin.window.state.closed
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", plugin.port)


# --- the language of errors (issue 21): Chinese by default, English when the hello asks


@pytest.mark.parametrize("lang", [None, "zh", "en"])
async def test_errors_are_chinese_unless_the_hello_asks_for_english(
    lone: tuple[Plugin, str], lang: str | None
) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin, hello=False) as raw:
        params: dict[str, Any] = {"token": plugin.token._value}
        if lang is not None:
            params["lang"] = lang
        assert (await raw.call("h", "hello", params))["subMark"] == "success"
        err = (await raw.call("b", "setWindowSize", {"width": "wide"}))["error"]
        assert err["code"] == "invalid_field"
        if lang == "en":
            assert err["msg"].startswith("params.width") and "detail" not in err
        else:
            assert err["msg"] == CATALOGUE[ErrorCode.invalid_field].msg_zh
            assert err["detail"].startswith("params.width")  # the specific English detail is kept


async def test_a_bad_lang_in_the_hello_does_not_pair(lone: tuple[Plugin, str]) -> None:
    plugin, _ = lone
    async with Raw.connect(plugin, hello=False) as raw:
        await raw.send(
            {"v": 1, "id": "h", "mark": "hello", "params": {"token": plugin.token._value, "lang": "fr"}}
        )
        assert (await raw.reply(None))["error"]["code"] == "unauthenticated"
        assert await closed_with(raw) == 1008
