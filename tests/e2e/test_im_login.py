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


def test_login_from_a_script(tmp_path: Path) -> None:
    with ThreadedStack(tmp_path, server=SLOW_FAILURES, login_timeout=0.3) as ts:
        got: queue.Queue[tuple[str, Any]] = queue.Queue()
        client = IMClient(
            ts.stack.options(
                ssoReady=lambda data: got.put(("ssoReady", data)),
                kefuReady=lambda data: got.put(("kefuReady", data)),
            )
        )

        def login(url: str) -> tuple[str, Any]:
            client.startLogin(
                {
                    "minimize": True,
                    "data": {"url": url},
                    "success": lambda data: got.put(("success", data)),
                    "error": lambda err: got.put(("error", err)),
                }
            )
            while True:
                name, data = got.get(timeout=LIMIT)
                if name in ("success", "error"):
                    return name, data

        try:
            assert got.get(timeout=LIMIT)[0] == "ssoReady"
            # a wrong password is slowed down past the login timeout: the spec's -1
            name, err = login(ts.stack.login_url("a1", "wrong-password"))
            assert name == "error"
            assert err["code"] == -1  # SPEC §4.1: if (err && err.code == -1) — the login timed out
            assert err["error"]["code"] == -1 and err["error"]["msg"] == "login timed out"
            assert got.get(timeout=LIMIT)[0] == "ssoReady"  # ready for another try
            name, data = login(ts.stack.login_url("a1"))
            assert name == "success" and data["payload"]["agent"]["name"] == "a1"
            ready_name, ready = got.get(timeout=LIMIT)
            assert ready_name == "kefuReady" and ready["payload"]["state"] == "001000"
            assert client.ready is True
        finally:
            client.close()


async def test_login_from_asyncio(tmp_path: Path) -> None:
    async with Stack(tmp_path) as stack:
        async with Client(stack.p.url, data_dir=stack.p.settings.data_dir) as client:
            ready = client.events("client")
            assert (await anext(ready)).name == "ssoReady"
            with pytest.raises(RequestError) as wrong:
                await client.start_login(stack.login_url("a1", "wrong-password"))
            assert wrong.value.code is ErrorCode.bad_credentials
            assert wrong.value.msg == "wrong name or password"  # the server's message
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
