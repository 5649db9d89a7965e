"""Every API of SPEC §4.1, §4.2 and §4.6, with its callbacks, from a plain
synchronous script, in both conventions: server + plugin + ``IMClient``.

The server and the plugin run on a loop in a thread of their own
(:class:`ThreadedStack`); the test is written as an integrator's script would
be, with ``IMClient`` running its own thread.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kefu.sdk import IMClient
from tests.plugin.harness import LIMIT, ThreadedStack


@pytest.fixture
def ts(tmp_path: Path) -> Iterator[ThreadedStack]:
    with ThreadedStack(tmp_path) as stack:
        yield stack


class Calls:
    """Records callbacks by name; ``take(name)`` waits for the next of that name."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._kept: list[tuple[str, Any]] = []

    def cb(self, name: str) -> Any:
        return lambda *args: self._q.put((name, args[0] if len(args) == 1 else args))

    def take(self, name: str) -> Any:
        for i, (n, value) in enumerate(self._kept):
            if n == name:
                del self._kept[i]
                return value
        while True:
            n, value = self._q.get(timeout=LIMIT)
            if n == name:
                return value
            self._kept.append((n, value))


def v1204(client: IMClient, api: str, params: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``client.api({...params, success, error})``: which callback ran, with what."""
    got: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    options = dict(params or {})
    options["success"] = lambda data: got.put(("success", data))
    options["error"] = lambda data: got.put(("error", data))
    getattr(client, api)(options)
    return got.get(timeout=LIMIT)


def v190307(client: IMClient, api: str, params: dict[str, Any] | None = None) -> tuple[str, Any]:
    """``client.api(params, function(state, payload))``: the callback's arguments."""
    got: queue.Queue[tuple[str, Any]] = queue.Queue()
    getattr(client, api)(params, lambda state, payload: got.put((state, payload)))
    return got.get(timeout=LIMIT)


def connect(ts: ThreadedStack, calls: Calls) -> IMClient:
    names = ("success", "error", "ssoReady", "kefuReady", "kefuWSClose", "quit")
    client = IMClient(ts.stack.options(**{n: calls.cb(n) for n in names}))
    client.initInnerCallBack(
        {
            "chatCloseCB": calls.cb("chatCloseCB"),
            "queue": calls.cb("queue"),
            "stateChange": calls.cb("stateChange"),
        }
    )
    assert calls.take("success")["mark"] == "hello"
    assert calls.take("ssoReady")["payload"]["server"] == ts.stack.server.url
    return client


def test_every_api_v1204_callbacks_from_a_script(ts: ThreadedStack) -> None:
    calls = Calls()
    client = connect(ts, calls)
    try:
        # SPEC §4.1 startLogin
        sub, data = v1204(client, "startLogin", {"minimize": True, "data": {"url": ts.stack.login_url("a1")}})
        assert sub == "success" and data["payload"]["agent"]["name"] == "a1"
        assert calls.take("kefuReady")["payload"]["state"] == "001000" and client.ready is True
        assert ts.stack.p.window.state.minimized
        # SPEC §4.1 the window
        sub, data = v1204(client, "setWindowSize", {"width": "300", "height": "400"})
        assert sub == "success" and (data["payload"]["width"], data["payload"]["height"]) == (300, 400)
        assert v1204(client, "restore")[1]["payload"]["minimized"] is False
        assert v1204(client, "minimize")[1]["payload"]["minimized"] is True
        sub, data = v1204(client, "startup", {"clientUrl": "pocprotocol://"})
        assert sub == "success" and data["payload"] == {
            "width": 300,
            "height": 400,
            "minimized": False,
            "visible": True,
        }
        # SPEC §4.6 with nothing open
        assert v1204(client, "sessionCount")[1]["payload"]["sessionCount"] == 0
        assert v1204(client, "sessionState")[1]["payload"]["sessions"] == []
        assert v1204(client, "isMultipleVideo")[1]["data"] is False
        assert v1204(client, "isShareState")[1]["data"] is False
        # SPEC §4.2: a visitor waits; the agent (not ready) picks the session up
        sid = ts.run(ts.stack.visitor_says("v1", "hello"))
        # the waiting list is pushed whenever it changes (an earlier, empty one may come first)
        while sid not in [w["sessionId"] for w in calls.take("queue")["payload"]["waiting"]]:
            pass
        sub, data = v1204(client, "pickUpSession", {"session_id": sid})
        assert (
            sub == "success"
            and data["payload"]["sessionId"] == sid
            and data["payload"]["visitorName"] == "v1"
        )
        assert v1204(client, "sessionCount")[1]["payload"]["sessionCount"] == 1
        sessions = v1204(client, "sessionState")[1]["payload"]["sessions"]
        assert [s["sessionId"] for s in sessions] == [sid] and sessions[0]["lastMessage"]["text"] == "hello"
        sub, data = v1204(client, "pickUpSession", {"session_id": "no-such-session"})
        assert sub == "error" and data["error"]["code"] == "no_such_session" and data["error"]["msg"]
        sub, data = v1204(client, "chatClose")
        assert sub == "success" and data["payload"]["sessionId"] == sid
        assert calls.take("chatCloseCB")["payload"] == {
            "sessionId": sid,
            "by": "agent",
            "reason": "chatClose",
        }
        assert v1204(client, "sessionCount")[1]["payload"]["sessionCount"] == 0
        # additions: ready / not ready, logout
        sub, data = v1204(client, "setAgentState", {"state": "idle"})
        assert sub == "success" and data["state"] == "002000"
        state, push = calls.take("stateChange")  # the state push, in initInnerCallBack
        assert state == "002000" and push["old"] == "001000" and push["event"] == "setReady"
        sub, data = v1204(client, "setAgentState", {"state": "busy", "reason": "lunch"})
        assert data["state"] == "001000"
        sub, data = v1204(client, "logout")
        assert sub == "success" and data["state"] == "000000"
        calls.take("ssoReady")
        assert client.ready is False
        # SPEC §4.1 quit
        assert v1204(client, "quit")[0] == "success"
        assert calls.take("quit")["payload"]["reason"] == "quit"
        ts.run(ts.stack.p.wait_stopped())
    finally:
        client.close()


def test_every_api_v190307_callbacks_from_a_script(ts: ThreadedStack) -> None:
    calls = Calls()
    client = connect(ts, calls)
    try:
        state, payload = v190307(
            client, "startLogin", {"minimize": False, "data": {"url": ts.stack.login_url()}}
        )
        assert state == "001000" and payload["agent"]["name"] == "a1"
        calls.take("kefuReady")
        state, payload = v190307(client, "setWindowSize", {"width": 640, "height": "480"})
        assert state == "001000" and (payload["width"], payload["height"]) == (640, 480)
        assert v190307(client, "minimize", None)[1]["minimized"] is True
        assert v190307(client, "restore", None)[1]["minimized"] is False
        assert v190307(client, "startup", {"clientUrl": "pocprotocol://"})[1]["visible"] is True
        assert v190307(client, "sessionCount", None) == ("001000", {"sessionCount": 0})
        assert v190307(client, "sessionState", None) == ("001000", {"sessions": []})
        assert v190307(client, "isMultipleVideo", None) == ("001000", {"data": False})
        assert v190307(client, "isShareState", None) == ("001000", {"data": False})
        sid = ts.run(ts.stack.visitor_says("v1", "hi"))
        state, payload = v190307(client, "pickUpSession", {"session_id": sid})
        assert state == "001000" and payload["sessionId"] == sid
        assert v190307(client, "sessionCount", None) == ("001000", {"sessionCount": 1})
        state, payload = v190307(client, "pickUpSession", {"session_id": "nope"})
        assert payload["error"]["code"] == "no_such_session"
        state, payload = v190307(client, "chatClose", None)
        assert payload == {"sessionId": sid, "by": "agent", "reason": "chatClose"}
        assert calls.take("chatCloseCB")["payload"]["sessionId"] == sid
        assert v190307(client, "setAgentState", {"state": "idle"})[0] == "002000"
        assert v190307(client, "setAgentState", {"state": "busy"})[0] == "001000"
        assert v190307(client, "setAgentState", {"state": "idle", "reason": "back"})[0] == "002000"
        # ``logout(callback)``: the callback first, no params
        got: queue.Queue[tuple[str, Any]] = queue.Queue()
        client.logout(lambda state, payload: got.put((state, payload)))
        assert got.get(timeout=LIMIT)[0] == "000000"
        calls.take("ssoReady")
        assert v190307(client, "quit", None)[1] == {"reason": "quit"}
        calls.take("quit")
    finally:
        client.close()


def test_call_apis_reach_the_call_orchestration_in_both_conventions(ts: ThreadedStack) -> None:
    """SPEC §4.3: a call API's reply and its later progress reach the v1204
    callbacks by name and the v190307 callback with each state code; the
    photo and share APIs (§4.4, §4.5) wait for the media layer."""
    calls = Calls()
    client = connect(ts, calls)
    try:
        client.startLogin(
            {"data": {"url": ts.stack.login_url()}, "success": calls.cb("v1204")}, calls.cb("v190307")
        ).result(LIMIT)
        assert calls.take("v1204")["subMark"] == "success"
        assert calls.take("v190307")[0] == "001000"
        client.setAgentState({"state": "idle"}).result(LIMIT)
        visitor = ts.run(ts.stack.visitor("v1"))

        def call_out(tag: str) -> str:
            names = ("inviteSuccess", "acceptSuccess", "visitorRefuse", "kefuCloseVideoSuccess", "error")
            options: dict[str, Any] = {"visitorName": "v1", "startVideo": True}
            options.update({n: calls.cb(f"{tag}.{n}") for n in names})
            client.callbackToVisitor(options, calls.cb(f"{tag}.state")).result(LIMIT)
            assert calls.take(f"{tag}.inviteSuccess")["state"] == "003001"
            assert calls.take(f"{tag}.state")[0] == "003001"
            invited = ts.run(visitor.event("call"))
            call_id: str = invited["payload"]["callId"]
            return call_id

        # the visitor refuses: visitorRefuse / 002001
        call_id = call_out("one")
        ts.run(visitor.request("answerCall", {"callId": call_id, "answer": "refuse"}))
        assert calls.take("one.visitorRefuse")["payload"]["callId"] == call_id
        state, payload = calls.take("one.state")
        assert state == "002001" and payload["subMark"] == "visitorRefuse"
        # the visitor accepts, the agent hangs up: acceptSuccess / 006011, kefuCloseVideoSuccess / 005004
        call_id = call_out("two")
        ts.run(visitor.request("answerCall", {"callId": call_id, "answer": "accept"}))
        assert calls.take("two.acceptSuccess")["state"] == "006011"
        assert calls.take("two.state")[0] == "006011"
        hangup = client.videoDisconnect(None, calls.cb("hangup")).result(LIMIT)
        assert hangup["subMark"] == "success" and calls.take("hangup")[0] == "005004"
        assert calls.take("two.kefuCloseVideoSuccess")["state"] == "005004"
        assert calls.take("two.state")[0] == "005004"
        # the spec's own error sample (SPEC §4.3): SDK_08 in both conventions
        sub, data = v1204(client, "callbackToVisitor", {"visitorName": "nobody", "startVideo": True})
        assert sub == "error" and data["error"]["code"] == "SDK_08" and data["state"] == "002004"
        state, payload = v190307(client, "callbackToVisitor", {"visitorName": "nobody", "startVideo": True})
        assert (
            state == "002004"
            and payload["error"]["msg"] == "查询id出错,请检查访客信息是否正确"  # the seed's words
        )
        # SPEC §4.4–4.5 need a call: the agent is in none now
        for api in ("takePhoto", "snapshot", "inviteShare"):
            client_api = getattr(client, api)
            client_api({"error": calls.cb("error-" + api)}, calls.cb("state-" + api)).result(LIMIT)
            data = calls.take("error-" + api)
            assert data["error"]["code"] == "not_in_call" and data["error"]["msg"], api
            state, payload = calls.take("state-" + api)
            assert payload["error"]["code"] == "not_in_call" and state == data["state"]
    finally:
        client.close()
