"""Strict decoding of the envelope: every bad input is a typed error with a code."""

from __future__ import annotations

import json

import pytest

from kefu.protocol import (
    MAX_MESSAGE_BYTES,
    ErrorCode,
    ProtocolError,
    decode_request,
    encode,
    error_message,
    loads_strict,
    protocol_error_message,
    reply_message,
    state_message,
)
from kefu.protocol.agent_api import AGENT_API
from kefu.protocol.plugin_api import PLUGIN_API, CallVisitorParams, SetWindowSizeParams
from kefu.protocol.visitor_api import VISITOR_API


def req(**kw: object) -> str:
    return json.dumps({"v": 1, "id": "r1", **kw})


def bad(data: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_request(data, PLUGIN_API)
    return info.value


def test_a_good_request() -> None:
    r = decode_request(req(mark="callbackToVisitor", params={"visitorName": "v1"}), PLUGIN_API)
    assert r.id == "r1" and r.mark == "callbackToVisitor"
    assert isinstance(r.params, CallVisitorParams)
    assert r.params.visitorName == "v1" and r.params.startVideo is True


def test_params_may_be_null_or_absent() -> None:
    # SPEC §5: videoInviteCurrentVisitor(null, cb)
    assert decode_request(req(mark="videoInviteCurrentVisitor", params=None), PLUGIN_API).mark
    assert decode_request(req(mark="multipleVideoPickUp"), PLUGIN_API).mark


def test_window_size_takes_the_spec_strings() -> None:
    r = decode_request(req(mark="setWindowSize", params={"width": "300", "height": 400}), PLUGIN_API)
    assert isinstance(r.params, SetWindowSizeParams)
    assert (r.params.width, r.params.height) == (300, 400)
    e = bad(req(mark="setWindowSize", params={"width": "-3", "height": "x"}))
    assert e.code is ErrorCode.invalid_field and e.field == "params.width"


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ("hello", ErrorCode.bad_json, None),
        ('{"v":1,', ErrorCode.bad_json, None),
        ("[]", ErrorCode.bad_request, None),
        ("1", ErrorCode.bad_request, None),
        ("null", ErrorCode.bad_request, None),
        ('{"v":1,"mark":"quit"}', ErrorCode.missing_field, "id"),
        ('{"v":1,"id":7,"mark":"quit"}', ErrorCode.invalid_field, "id"),
        ('{"id":"a","mark":"quit"}', ErrorCode.missing_field, "v"),
        ('{"v":2,"id":"a","mark":"quit"}', ErrorCode.unsupported_version, "v"),
        ('{"v":"1","id":"a","mark":"quit"}', ErrorCode.unsupported_version, "v"),
        ('{"v":true,"id":"a","mark":"quit"}', ErrorCode.unsupported_version, "v"),
        ('{"v":1,"id":"a"}', ErrorCode.missing_field, "mark"),
        ('{"v":1,"id":"a","mark":"installUpdate"}', ErrorCode.unknown_mark, "mark"),
        ('{"v":1,"id":"a","mark":"quit","extra":1}', ErrorCode.invalid_field, "extra"),
        ('{"v":1,"id":"a","mark":"quit","mark":"minimize"}', ErrorCode.bad_json, "mark"),
        ('{"v":1,"id":"a","mark":"quit","params":NaN}', ErrorCode.bad_json, None),
        ('{"v":1,"id":"a","mark":"quit","params":[]}', ErrorCode.invalid_field, "params"),
        ('{"v":1,"id":"a","mark":"pickUpSession","params":{}}', ErrorCode.missing_field, "params.session_id"),
        (
            '{"v":1,"id":"a","mark":"pickUpSession","params":{"session_id":5}}',
            ErrorCode.invalid_field,
            "params.session_id",
        ),
        (
            '{"v":1,"id":"a","mark":"pickUpSession","params":{"sessionId":"5"}}',
            ErrorCode.missing_field,
            "params.session_id",
        ),
        (
            '{"v":1,"id":"a","mark":"callbackToVisitor","params":{"visitorName":"v","startVideo":"true"}}',
            ErrorCode.invalid_field,
            "params.startVideo",
        ),
        ('{"v":1,"id":"a","mark":"quit","params":{"x":1e400}}', ErrorCode.bad_json, None),
        ('{"v":1,"id":"a","mark":"quit","params":{"x":' + "9" * 30 + "}}", ErrorCode.bad_json, None),
    ],
)
def test_bad_requests(data: str, code: ErrorCode, field: str | None) -> None:
    e = bad(data)
    assert e.code is code, e.msg
    assert e.field == field


def test_the_request_id_and_mark_come_back_when_readable() -> None:
    e = bad('{"v":1,"id":"r9","mark":"pickUpSession","params":{}}')
    msg = protocol_error_message(e)
    assert msg["id"] == "r9" and msg["mark"] == "pickUpSession" and msg["subMark"] == "error"
    assert msg["error"]["code"] == "missing_field" and msg["error"]["msg"]


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ProtocolError) as info:
        loads_strict(deep[: MAX_MESSAGE_BYTES - 10])
    assert info.value.code is ErrorCode.bad_json


def test_oversize_is_refused() -> None:
    e = bad(req(mark="quit", params={"x": "a" * MAX_MESSAGE_BYTES}))
    assert e.code is ErrorCode.too_large


def test_invalid_utf8_and_lone_surrogates() -> None:
    assert bad(b'{"v":1,"id":"a","mark":"\xc3\x28"}').code is ErrorCode.bad_json
    assert bad('{"v":1,"id":"a","mark":"quit","params":{"x":"\\ud800"}}').code is ErrorCode.bad_json


def test_unicode_text_survives_byte_exact() -> None:
    text = "你好 👋🏽 e\u0301 \u200d"
    r = decode_request(req(mark="sendMessage", params={"session_id": "s", "text": text}), PLUGIN_API)
    assert r.params.text == text  # type: ignore[attr-defined]
    assert json.loads(encode({"t": text}))["t"] == text


def test_messages_have_the_documented_shapes() -> None:
    assert reply_message("callbackToVisitor", "inviteSuccess", {"a": 1}, rid="r1", state="003001") == {
        "v": 1,
        "id": "r1",
        "mark": "callbackToVisitor",
        "subMark": "inviteSuccess",
        "state": "003001",
        "payload": {"a": 1},
    }
    assert state_message("006011", seq=4) == {"v": 1, "seq": 4, "mark": "state", "state": "006011"}
    # SPEC §4.4: the one wire sample of the document, exactly
    m = error_message("takePhoto", ErrorCode.snapShotDisabled)
    assert {k: m[k] for k in ("mark", "subMark", "error")} == {
        "mark": "takePhoto",
        "subMark": "error",
        "error": {"type": "snapShotDisabled", "msg": "snapShotDisabled"},
    }
    e = error_message("callbackToVisitor", ErrorCode.SDK_11, rid="r2", state="002004")
    assert e["error"] == {"code": "SDK_11", "msg": "the visitor is in a session now; cannot call out"}
    assert error_message("startLogin", ErrorCode.login_timeout)["error"]["code"] == -1


def test_agent_and_visitor_apis_decode() -> None:
    r = decode_request(req(mark="auth", params={"token": "t", "lastSeq": 3}), AGENT_API)
    assert r.params.lastSeq == 3  # type: ignore[attr-defined]
    r = decode_request(req(mark="hello", params={"name": "v1"}), VISITOR_API)
    assert r.mark == "hello"
    with pytest.raises(ProtocolError):
        decode_request(req(mark="auth", params={"token": "t", "lastSeq": "3"}), AGENT_API)
