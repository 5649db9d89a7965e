"""Login (SPEC §4.1 ``startLogin``) end to end: success with ``kefuReady``, a
wrong password with the server's message, and a timeout with ``code: -1``,
from a synchronous script and from asyncio code.

The timeout is real: the server is told to slow its answer to a failed login
(``login_delay``) beyond the plugin's login timeout.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest

from kefu.protocol import Code, ErrorCode
from kefu.sdk import Client, IMClient, RequestError
from tests.plugin.harness import LIMIT, Stack, ThreadedStack

#: the server answers a failed login after 3 s; the plugin waits 0.3 s
SLOW_FAILURES = {"login_delay_after": 0, "login_delay": 3.0, "graceful_shutdown": 0.1}


class Script:
    """An ``IMClient`` as a script uses it, recording its callbacks."""

    def __init__(self, ts: ThreadedStack) -> None:
        self.got: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client = IMClient(
            ts.stack.options(
                ssoReady=lambda data: self.got.put(("ssoReady", data)),
                kefuReady=lambda data: self.got.put(("kefuReady", data)),
            )
        )

    def next(self) -> tuple[str, Any]:
        return self.got.get(timeout=LIMIT)

    def login(self, url: str) -> tuple[str, Any]:
        """``startLogin`` as the spec's sample calls it: which callback ran, with what."""
        self.client.startLogin(
            {
                "minimize": True,
                "data": {"url": url},
                "success": lambda data: self.got.put(("success", data)),
                "error": lambda err: self.got.put(("error", err)),
            }
        )
        while True:
            name, data = self.next()
            if name in ("success", "error"):
                return name, data


def test_login_from_a_script(tmp_path: Path) -> None:
    with ThreadedStack(tmp_path) as ts:
        script = Script(ts)
        try:
            assert script.next()[0] == "ssoReady"
            name, err = script.login(ts.stack.login_url("a1", "wrong-password"))
            assert name == "error"
            assert err["error"] == {"code": "bad_credentials", "msg": "用户名或密码错误"}
            assert script.next()[0] == "ssoReady"  # ready for another try
            name, data = script.login(ts.stack.login_url("a1"))
            assert name == "success" and data["payload"]["agent"]["name"] == "a1"
            ready_name, ready = script.next()
            assert ready_name == "kefuReady" and ready["payload"]["state"] == "001000"
            assert script.client.ready is True and ts.stack.p.window.state.minimized
        finally:
            script.client.close()


def test_login_timeout_from_a_script(tmp_path: Path) -> None:
    with ThreadedStack(tmp_path, server=SLOW_FAILURES, login_timeout=0.3) as ts:
        script = Script(ts)
        try:
            assert script.next()[0] == "ssoReady"
            # a wrong password is slowed down past the login timeout: the spec's -1
            name, err = script.login(ts.stack.login_url("a1", "wrong-password"))
            assert name == "error"
            assert err["code"] == -1  # SPEC §4.1: if (err && err.code == -1) — the login timed out
            assert err["error"] == {"code": -1, "msg": "登录超时"}
            assert script.next()[0] == "ssoReady"
            assert script.client.ready is False
        finally:
            script.client.close()


async def test_login_from_asyncio(tmp_path: Path) -> None:
    async with Stack(tmp_path) as stack:
        async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as client:
            ready = client.events("client")
            assert (await anext(ready)).name == "ssoReady"
            with pytest.raises(RequestError) as wrong:
                await client.start_login(stack.login_url("a1", "wrong-password"))
            assert wrong.value.code is ErrorCode.bad_credentials
            assert wrong.value.msg == "用户名或密码错误"  # the catalogue's, in Chinese by default
            assert (await anext(ready)).name == "ssoReady"
            got = await client.start_login(stack.login_url("a1"))
            assert got["agent"]["name"] == "a1" and got["state"] == "001000"
            event = await anext(ready)
            assert event.name == "kefuReady" and event.payload == got
            assert client.state is Code.busy and client.agent == got["agent"]


async def test_login_timeout_from_asyncio(tmp_path: Path) -> None:
    async with Stack(tmp_path, server=SLOW_FAILURES, login_timeout=0.2) as stack:
        async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as client:
            with pytest.raises(RequestError) as info:
                await client.start_login(stack.login_url("a1", "wrong-password"))
            assert info.value.code is ErrorCode.login_timeout and info.value.code.value == -1
            assert stack.p.link is None and stack.p.agent is None
