"""The session layer without a socket or a loop: frames and times in, verdicts out."""

from __future__ import annotations

import json

import pytest

from kefu.protocol import ErrorCode
from kefu.protocol.client_session import (
    Answer,
    ClientSession,
    Dropped,
    Push,
    Stray,
    error_for,
    reply_error,
)
from kefu.protocol.close import CLOSE_MEANINGS, CloseCode
from kefu.protocol.plugin_api import PLUGIN_API, is_final
from kefu.protocol.server_session import Limits, ServerSession
from kefu.protocol.wire import encode, reply_message, state_message

# --- the client session


def test_a_request_gets_an_id_and_its_answer() -> None:
    s: ClientSession[str] = ClientSession(prefix="p")
    rid, text = s.request("getState", {"x": 1}, "tag")
    assert rid == "p1" and json.loads(text) == {"v": 1, "id": "p1", "mark": "getState", "params": {"x": 1}}
    got = s.receive(encode(reply_message("getState", "success", rid="p1")))
    assert isinstance(got, Answer) and got.final and got.pending.tag == "tag"
    assert len(s) == 0
    assert isinstance(s.receive(encode(reply_message("getState", "success", rid="p1"))), Stray)


def test_interim_answers_keep_the_request_open_until_a_final_one() -> None:
    s: ClientSession[None] = ClientSession(final=is_final)
    rid, _ = s.request("callbackToVisitor", {"visitorName": "v"}, None)
    first = s.receive(encode(reply_message("callbackToVisitor", "inviteSuccess", rid=rid)))
    assert isinstance(first, Answer) and not first.final and len(s) == 1
    last = s.receive(encode(reply_message("callbackToVisitor", "visitorRefuse", rid=rid)))
    assert isinstance(last, Answer) and last.final and len(s) == 0


def test_pushes_are_deduplicated_and_gaps_counted() -> None:
    s: ClientSession[None] = ClientSession()
    seqs = [1, 2, 2, 1, 5, 6]
    got = [s.receive(encode(state_message("002000", seq=n))) for n in seqs]
    assert [type(g) for g in got] == [Push, Push, Dropped, Dropped, Push, Push]
    assert [g.gap for g in got if isinstance(g, Push)] == [False, False, True, False]
    assert (s.last_seq, s.duplicates, s.gaps) == (6, 2, 1)
    unordered: ClientSession[None] = ClientSession(ordered=False)
    assert isinstance(unordered.receive(encode(state_message("002000", seq=1))), Push)
    assert isinstance(unordered.receive(encode(state_message("002000", seq=1))), Push)


def test_deadlines_are_fed_in() -> None:
    s: ClientSession[str] = ClientSession()
    a, _ = s.request("ping", None, "a", deadline=10.0)
    s.request("ping", None, "b", deadline=20.0)
    assert s.next_deadline() == 10.0
    assert s.expire(9.9) == []
    late = s.expire(10.0)
    assert [p.tag for p in late] == ["a"] and s.next_deadline() == 20.0
    err = error_for(late[0], ErrorCode.timeout, "late")
    assert err["id"] == a and err["error"]["code"] == "timeout"
    assert [p.tag for p in s.fail_all()] == ["b"] and len(s) == 0


def test_an_answered_request_does_not_expire() -> None:
    s: ClientSession[None] = ClientSession(final=is_final)
    rid, _ = s.request("callbackToVisitor", None, None, deadline=1.0)
    s.receive(encode(reply_message("callbackToVisitor", "inviteSuccess", rid=rid)))
    assert s.expire(5.0) == [] and len(s) == 1


def test_garbage_is_dropped_not_raised() -> None:
    s: ClientSession[None] = ClientSession()
    assert isinstance(s.receive("not json"), Dropped)
    assert isinstance(s.receive("[1]"), Dropped)
    assert isinstance(s.receive(b"\xff"), Dropped)


def test_resume_moves_up_and_follows_the_server_back() -> None:
    s: ClientSession[None] = ClientSession(last_seq=5)
    assert not s.resume_from(9, follow_back=False) and s.last_seq == 9
    assert not s.resume_from(3, follow_back=False) and s.last_seq == 9
    assert s.resume_from(3, follow_back=True) and s.last_seq == 3
    assert not s.resume_from("7", follow_back=True) and s.last_seq == 3


def test_an_error_reply_is_read_once() -> None:
    assert reply_error(reply_message("x", "success")) is None
    e = reply_error({"subMark": "error", "state": "002004", "error": {"code": "SDK_11", "msg": "busy"}})
    assert e is not None and e.code is ErrorCode.SDK_11 and e.known and e.state == "002004"
    spec = reply_error({"subMark": "error", "error": {"type": "snapShotDisabled", "msg": "m"}})
    assert spec is not None and spec.code is ErrorCode.snapShotDisabled
    odd = reply_error({"subMark": "error", "error": {"code": "nope"}}, default=ErrorCode.unauthenticated)
    assert (
        odd is not None and odd.code is ErrorCode.unauthenticated and not odd.known and odd.raw_code == "nope"
    )
    assert odd.exception().code is ErrorCode.unauthenticated


def test_every_close_code_has_a_meaning() -> None:
    assert set(CLOSE_MEANINGS) == set(CloseCode)
    assert CloseCode.policy == 1008 and CloseCode.login_ended == 4003


# --- the server session


def _hello(rid: str = "h") -> str:
    return json.dumps({"v": 1, "id": rid, "mark": "hello", "params": {"token": "t"}})


def _req(rid: str, mark: str = "getWindow") -> str:
    return json.dumps({"v": 1, "id": rid, "mark": mark})


def test_the_bucket_refills_with_the_time_fed_in() -> None:
    s = ServerSession(PLUGIN_API, Limits(rate=3, window=10.0), authenticated=True)
    verdicts = [s.receive(_req(str(i)), 0.0) for i in range(4)]
    assert [v.request is not None for v in verdicts] == [True, True, True, False]
    limited = verdicts[3].reply
    assert verdicts[3].limited and limited is not None and limited["id"] == "3"
    assert limited["error"]["code"] == "rate_limited" and limited["error"]["retryAfter"] == pytest.approx(
        3.333
    )
    assert s.receive(_req("a"), 3.4).request is not None  # one token back after window/rate
    assert s.receive(_req("b"), 3.4).request is None
    assert all(s.receive(_req(f"c{i}"), 100.0).request is not None for i in range(3))  # full, no more


def test_a_flood_closes_past_its_strikes_and_quiet_floods_answer_once() -> None:
    s = ServerSession(PLUGIN_API, Limits(rate=1, window=10.0, strikes=2), authenticated=True)
    assert s.receive(_req("1"), 0.0).request is not None
    assert [s.receive(_req(str(i)), 0.0).close for i in range(3)] == [None, None, CloseCode.policy]
    quiet = ServerSession(PLUGIN_API, Limits(rate=1, window=10.0, quiet_floods=True), authenticated=True)
    replies = [quiet.receive(b"\x00", 0.0).reply for _ in range(4)]
    codes = [r["error"]["code"] if r else None for r in replies]
    assert codes == ["binary_frame", "rate_limited", None, None]


def test_oversize_texts_are_answered_then_closed() -> None:
    s = ServerSession(PLUGIN_API, Limits(rate=100, window=1.0, max_bytes=100, oversize_strikes=2))
    s.authenticated = True
    big = _req("x" * 200)
    first = s.receive(big, 0.0)
    assert first.reply is not None and first.reply["error"]["code"] == "too_large" and first.close is None
    assert s.receive(big, 0.0).close == CloseCode.too_big


def test_the_first_message_policy() -> None:
    answer = ServerSession(PLUGIN_API, Limits(rate=10, window=1.0), first_mark="hello")
    early = answer.receive(_req("1"), 0.0)
    assert (
        early.reply is not None and early.reply["error"]["code"] == "unauthenticated" and early.close is None
    )
    assert answer.receive(_hello(), 0.0).request is not None
    closes = ServerSession(
        PLUGIN_API, Limits(rate=1, window=1.0), first_mark="hello", first_closes=True, first_hint="pair"
    )
    refused = closes.receive(b"\x00", 0.0)
    assert refused.close == CloseCode.policy and refused.reply is not None
    assert refused.reply["error"] == {"code": "unauthenticated", "msg": "pair"}
    paired = ServerSession(PLUGIN_API, Limits(rate=1, window=1.0), first_mark="hello", first_closes=True)
    assert paired.receive(_hello(), 0.0).request is not None
    paired.authenticated = True
    assert paired.receive(_req("1"), 0.0).request is not None  # pairing took no token


def test_an_id_in_flight_is_refused_until_finished() -> None:
    s = ServerSession(PLUGIN_API, Limits(rate=10, window=1.0, inflight=True), authenticated=True)
    assert s.receive(_req("L"), 0.0).request is not None
    dup = s.receive(_req("L"), 0.0).reply
    assert dup is not None and dup["error"]["code"] == "duplicate_request"
    s.finished("L")
    assert s.receive(_req("L"), 0.0).request is not None


def test_bad_requests_are_answered_under_their_id() -> None:
    s = ServerSession(PLUGIN_API, Limits(rate=10, window=1.0), authenticated=True)
    v = s.receive('{"v":1,"id":"q","mark":"nope"}', 0.0)
    assert v.reply is not None and v.reply["id"] == "q" and v.reply["error"]["code"] == "unknown_mark"


def test_a_call_push_is_typed_and_encodes_as_the_wire_has_it() -> None:
    from kefu.protocol.call import CallNotice, CallPhase, MemberStatus
    from kefu.protocol.messages import CallPush, ErrorReply, to_json

    push = CallPush(
        "c1",
        CallNotice.invited,
        "hub",
        phase=CallPhase.calling,
        members=({"kind": "visitor", "name": "v", "status": MemberStatus.invited},),
        detail={"agentName": "a1"},
        seq=4,
    )
    assert to_json(push) == {
        "v": 1,
        "seq": 4,
        "mark": "event",
        "subMark": "call",
        "payload": {
            "callId": "c1",
            "what": "invited",
            "media": "hub",
            "phase": "calling",
            "members": [{"kind": "visitor", "name": "v", "status": "invited"}],
            "agentName": "a1",
        },
    }
    err = to_json(ErrorReply("x", ErrorCode.rate_limited, "slow", rid="r", retry_after=1.5))
    assert err["error"] == {"code": "rate_limited", "msg": "slow", "retryAfter": 1.5} and err["id"] == "r"
    assert (
        CallNotice.of("ended") is CallNotice.ended
        and CallNotice.of("nope") is None
        and CallNotice.of(3) is None
    )
