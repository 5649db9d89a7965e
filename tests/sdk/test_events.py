"""The SDK's typed values and its emitter."""

from __future__ import annotations

import logging

import pytest

import kefu.sdk
from kefu.protocol import ApiError, Code, ErrorCode
from kefu.sdk.events import EventEmitter, PluginEvent, Reply, RequestError, api_error


def test_the_emitter_calls_by_name_and_survives_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    em = EventEmitter()
    seen: list[object] = []

    @em.on("x")
    def bad(_: object) -> None:
        raise RuntimeError("user bug")

    em.on("x", seen.append)
    with caplog.at_level(logging.ERROR, logger="kefu.sdk"):
        assert em.emit("x", 1) == 2
    assert seen == [1]
    assert "the x callback raised" in caplog.text
    em.off("x", bad)
    em.off("x", bad)  # twice is fine
    assert em.emit("x", 2) == 1 and seen == [1, 2]
    assert em.emit("nobody") == 0


def test_a_state_push_reads_as_a_state_change() -> None:
    msg = {
        "v": 1,
        "mark": "state",
        "state": "002000",
        "payload": {"old": "001000", "flow": "agent", "event": "setReady", "reason": None, "callId": None},
    }
    event = PluginEvent.from_message(msg)
    assert (event.kind, event.name) == ("state", "state")
    change = event.state_change()
    assert change is not None
    assert change.code is Code.idle and change.old is Code.busy
    assert (change.flow, change.event) == ("agent", "setReady")
    # the document's 7-digit spellings are read as their 6-digit codes
    assert (
        PluginEvent.from_message({"mark": "state", "state": "0050010"}).state_change().code.value == "005010"
    )  # type: ignore[union-attr]
    assert PluginEvent.from_message({"mark": "state", "state": "123456"}).state_change() is None
    assert PluginEvent.from_message({"mark": "client", "subMark": "ssoReady"}).state_change() is None


def test_replies_and_their_errors() -> None:
    ok = Reply.from_message({"v": 1, "id": "1", "mark": "isShareState", "subMark": "success", "data": False})
    assert (ok.mark, ok.sub_mark, ok.data, ok.is_error) == ("isShareState", "success", False, False)
    err = api_error(
        {
            "mark": "startLogin",
            "subMark": "error",
            "state": "000000",
            "error": {"code": -1, "msg": "login timed out"},
        }
    )
    assert isinstance(err, ApiError) and err.code is ErrorCode.login_timeout and err.msg == "login timed out"
    assert err.state == "000000"
    photo = api_error({"error": {"type": "snapShotDisabled", "msg": "snapShotDisabled"}})
    assert photo.code is ErrorCode.snapShotDisabled
    odd = api_error({"error": {"code": "from_the_future", "msg": "new"}})
    assert odd.code is ErrorCode.internal and "from_the_future" in odd.msg
    field = api_error({"error": {"code": "missing_field", "msg": "m", "field": "params.session_id"}})
    assert isinstance(field, RequestError) and field.field == "params.session_id"
    assert api_error({"subMark": "error"}).code is ErrorCode.internal


def test_the_public_surface_is_exported() -> None:
    for name in kefu.sdk.__all__:
        assert getattr(kefu.sdk, name) is not None
    assert {"IMClient", "Client", "EventEmitter", "StateChange", "PluginEvent"} <= set(kefu.sdk.__all__)
