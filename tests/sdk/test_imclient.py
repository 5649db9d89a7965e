"""``IMClient``'s mechanics: options, its thread or the caller's loop, both
conventions, connection callbacks, errors, ``startup`` launching the plugin.

The APIs themselves, end to end, are in ``tests/e2e/test_im_*.py``.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kefu.sdk import IMClient, Pending
from tests.plugin.harness import LIMIT, ThreadedStack


@pytest.fixture
def ts(tmp_path: Path) -> Iterator[ThreadedStack]:
    with ThreadedStack(tmp_path) as stack:
        yield stack


class Inbox:
    """What the callbacks received, in order, with the thread each ran on."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[str, Any, str]] = queue.Queue()
        self.kept: list[tuple[str, Any, str]] = []

    def cb(self, name: str) -> Any:
        return lambda *args: self.q.put(
            (name, args[0] if len(args) == 1 else args, threading.current_thread().name)
        )

    def next(self, name: str | None = None) -> tuple[str, Any, str]:
        """The next call (of ``name``); calls of other names are kept for later."""
        for i, item in enumerate(self.kept):
            if name is None or item[0] == name:
                return self.kept.pop(i)
        while True:
            item = self.q.get(timeout=LIMIT)
            if name is None or item[0] == name:
                return item
            self.kept.append(item)

    def names(self) -> list[str]:
        """Every call not taken yet (without waiting)."""
        while not self.q.empty():
            self.kept.append(self.q.get_nowait())
        return [item[0] for item in self.kept]

    def options(self, ts: ThreadedStack, *names: str, **extra: Any) -> dict[str, Any]:
        return ts.stack.options(**{n: self.cb(n) for n in names}, **extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_spec_options_are_required() -> None:
    with pytest.raises(ValueError, match="baseWsUrl"):
        IMClient({"ssoTo": "http://x"})
    with pytest.raises(ValueError, match="baseWsUrl"):
        IMClient({"baseWsUrl": "http://127.0.0.1:1040", "ssoTo": "http://x"})
    with pytest.raises(ValueError, match="ssoTo"):
        IMClient({"baseWsUrl": "ws://127.0.0.1:1040"})


def test_success_then_ssoReady_on_the_clients_own_thread(ts: ThreadedStack) -> None:
    inbox = Inbox()
    client = IMClient(inbox.options(ts, "success", "error", "ssoReady"))
    try:
        assert client.wait_connected()
        name, data, thread = inbox.next()
        assert name == "success" and data["mark"] == "hello" and data["payload"]["version"] == 1
        assert thread == "kefu-imclient"
        name, data, _ = inbox.next()
        assert name == "ssoReady" and data["payload"]["server"] == ts.stack.server.url
        assert client.linkStatus is True and client.ready is False
        assert client.videoBarVisible is True and client.ssoTo.endswith("/agent")
    finally:
        client.close()
    assert not any(t.name == "kefu-imclient" and t.is_alive() for t in threading.enumerate())


def test_nothing_answering_is_an_error_and_every_call_fails_alike(tmp_path: Path) -> None:
    inbox = Inbox()
    opts = {"baseWsUrl": f"ws://127.0.0.1:{free_port()}", "ssoTo": "http://127.0.0.1:9", "token": "t"}
    client = IMClient({**opts, "error": inbox.cb("error"), "success": inbox.cb("success")})
    try:
        assert client.wait_connected() is False
        name, data, _ = inbox.next()
        assert name == "error" and data["error"]["code"] == "plugin_unreachable"
        assert client.linkStatus is False
        reply = client.sessionCount({"error": inbox.cb("call-error")}).result(LIMIT)
        assert reply["error"]["code"] == "plugin_unreachable"
        assert inbox.next("call-error")[1]["error"]["code"] == "plugin_unreachable"
    finally:
        client.close()


def test_a_wrong_token_and_a_second_controller_are_errors(ts: ThreadedStack) -> None:
    inbox = Inbox()
    wrong = IMClient({**inbox.options(ts, "error"), "token": "not-the-token"})
    try:
        assert wrong.wait_connected() is False
        assert inbox.next("error")[1]["error"]["code"] == "unauthenticated"
    finally:
        wrong.close()
    first = IMClient(inbox.options(ts, "ssoReady"))
    assert first.wait_connected()
    second = IMClient(inbox.options(ts, "error"))
    try:
        assert not second.wait_connected()
        busy = inbox.next("error")[1]
        assert busy["error"]["code"] == "controller_busy"
        assert first.getWindow().result(LIMIT)["subMark"] == "success"
    finally:
        second.close()
        first.close()


def test_the_token_comes_from_the_default_data_dir(
    ts: ThreadedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEFU_PLUGIN_DATA_DIR", str(ts.stack.p.settings.data_dir))
    opts = ts.stack.options()
    del opts["dataDir"]
    client = IMClient(opts)
    try:
        assert client.wait_connected()
    finally:
        client.close()


def test_both_conventions_on_one_call_and_a_failing_callback(ts: ThreadedStack) -> None:
    inbox = Inbox()
    client = IMClient(ts.stack.options())
    try:
        assert client.wait_connected()

        def boom(_data: Any) -> None:
            raise RuntimeError("integrator bug")

        pending = client.setWindowSize(
            {"width": "300", "height": "400", "success": boom}, inbox.cb("v190307")
        )
        assert isinstance(pending, Pending)
        msg = pending.result(LIMIT)
        assert msg["subMark"] == "success"
        _, (state, payload), thread = inbox.next("v190307")
        assert state == "000000" and payload["width"] == 300 and thread == "kefu-imclient"
        both = client.minimize({"success": inbox.cb("v1204")}, inbox.cb("cb"))
        both.result(LIMIT)
        assert inbox.next("v1204")[1]["payload"]["minimized"] is True
        assert inbox.next("cb")[1][1]["minimized"] is True
        # params may be None, or left out with the callback first (``logout(cb)``)
        client.restore(None, inbox.cb("none")).result(LIMIT)
        assert inbox.next("none")[1][1]["minimized"] is False
        client.getState(inbox.cb("state-only")).result(LIMIT)
        assert inbox.next("state-only")[1][1]["error"]["code"] == "not_logged_in"
        bad = client.pickUpSession({"sessionId": "s1", "error": inbox.cb("bad")}).result(LIMIT)
        assert bad["error"]["code"] == "missing_field" and bad["error"]["field"] == "params.session_id"
        assert inbox.next("bad")[1]["error"]["msg"]
    finally:
        client.close()


def test_the_plugin_going_away_is_an_error_but_quit_is_not(ts: ThreadedStack) -> None:
    inbox = Inbox()
    client = IMClient(inbox.options(ts, "error", "quit", "ssoReady"))
    try:
        assert client.wait_connected()
        inbox.next("ssoReady")
        client.quit({"success": inbox.cb("quit-ok")}).result(LIMIT)
        assert inbox.next("quit")[1]["payload"] == {"reason": "quit"}
        assert inbox.next("quit-ok")[1]["subMark"] == "success"
        ts.run(ts.stack.p.wait_stopped())
        assert client.getWindow().result(LIMIT)["error"]["code"] == "plugin_unreachable"
        assert client.linkStatus is False
        assert "error" not in inbox.names()
    finally:
        client.close()


def test_a_broken_connection_calls_error(ts: ThreadedStack) -> None:
    inbox = Inbox()
    client = IMClient(inbox.options(ts, "error"))
    try:
        assert client.wait_connected()
        ts.run(ts.stack.p.aclose())
        data = inbox.next("error")[1]
        assert data["error"]["code"] == "plugin_unreachable" and "closed" in data["error"]["detail"]
    finally:
        client.close()


async def test_made_in_asyncio_code_it_uses_the_callers_loop(tmp_path: Path) -> None:
    from tests.plugin.harness import Stack

    async with Stack(tmp_path) as stack:
        loop_thread = threading.current_thread().name
        got: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        client = IMClient(
            stack.options(
                success=lambda d: got.put_nowait(("success", threading.current_thread().name)),
                ssoReady=lambda d: got.put_nowait(("ssoReady", d)),
            )
        )
        try:
            assert await asyncio.wait_for(got.get(), LIMIT) == ("success", loop_thread)
            assert (await asyncio.wait_for(got.get(), LIMIT))[0] == "ssoReady"
            reply = await client.isShareState({"success": lambda d: got.put_nowait(("share", d["data"]))})
            assert reply["data"] is False
            assert await asyncio.wait_for(got.get(), LIMIT) == ("share", False)
        finally:
            await client.aclose()


def test_startup_launches_the_plugin_when_nothing_answers(tmp_path: Path) -> None:
    inbox = Inbox()
    port = free_port()
    client = IMClient(
        {
            "baseWsUrl": f"ws://127.0.0.1:{port}",
            "ssoTo": "http://127.0.0.1:9/mo/agent/webapp/chat",
            "dataDir": str(tmp_path / "plugin"),
            "startupTimeout": 60,
            "success": inbox.cb("success"),
            "error": inbox.cb("error"),
            "ssoReady": inbox.cb("ssoReady"),
        }
    )
    try:
        assert client.wait_connected() is False
        assert inbox.next("error")[1]["error"]["code"] == "plugin_unreachable"
        reply = client.startup({"clientUrl": "pocprotocol://", "success": inbox.cb("started")}).result(60)
        assert reply["subMark"] == "success" and reply["payload"]["visible"] is True
        assert inbox.next("success")[1]["mark"] == "hello"
        assert inbox.next("ssoReady")[1]["payload"]["server"] == "http://127.0.0.1:9"
        assert inbox.next("started")[1]["subMark"] == "success"
        proc = client.plugin_process
        assert proc is not None and proc.poll() is None
        client.quit().result(LIMIT)
        assert proc.wait(30) == 0
        assert (tmp_path / "plugin" / "plugin.log").exists()
    finally:
        if client.plugin_process is not None and client.plugin_process.poll() is None:
            client.plugin_process.kill()
            client.plugin_process.wait(30)
        client.close()


def test_close_from_a_callback_and_calls_after_close(ts: ThreadedStack) -> None:
    inbox = Inbox()
    holder: list[IMClient] = []

    def close_from_the_callback(data: Any) -> None:
        holder[0].close()  # on the client's own thread: must not deadlock
        inbox.cb("closed")(data)

    client = IMClient(ts.stack.options(ssoReady=close_from_the_callback))
    holder.append(client)
    assert inbox.next("closed")[1]["subMark"] == "ssoReady"
    client._thread.join(LIMIT)  # type: ignore[union-attr]
    assert not client._thread.is_alive()  # type: ignore[union-attr]
    reply = client.sessionCount({"error": inbox.cb("after")}).result(0)
    assert reply["error"]["code"] == "plugin_unreachable" and "closed" in reply["error"]["detail"]
    assert inbox.next("after")[2] == threading.current_thread().name
    client.close()  # twice is fine
