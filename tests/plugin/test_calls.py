"""The plugin's routing of a call's progress to the SDK's requests, and its
mirror of the calls (``kefu.protocol.mirror``), message by message. The whole
stack is in ``tests/e2e/test_call_*.py``; these pin the rules down."""

from __future__ import annotations

from typing import Any

from kefu.protocol.mirror import CallMirror, CallRequests, call_ended

Json = dict[str, Any]


class Sdk:
    """What one SDK connection is sent, and which requests ended."""

    def __init__(self) -> None:
        self.sent: list[Json] = []
        self.done: list[str] = []

    def open(self, requests: CallRequests, rid: str, mark: str, upstream: str | None = None) -> Any:
        return requests.open(self.sent.append, rid, mark, upstream, lambda: self.done.append(rid))

    def subs(self, rid: str) -> list[str]:
        return [m["subMark"] for m in self.sent if m["id"] == rid]


def push(mark: str, sub: str, request_id: str | None = None, **kw: Any) -> Json:
    return {"mark": mark, "subMark": sub, "requestId": request_id, "callId": "c1", **kw}


def reply(rid: str, mark: str, sub: str, state: str) -> Json:
    return {"v": 1, "id": rid, "mark": mark, "subMark": sub, "state": state}


def test_progress_goes_to_the_open_request_of_its_mark_but_not_twice() -> None:
    requests, sdk = CallRequests(), Sdk()
    call = sdk.open(requests, "r1", "callbackToVisitor", "p1")
    call.reply(reply("r1", "callbackToVisitor", "inviteSuccess", "003001"))
    # the reply's own change, pushed too: not told again
    requests.progress("003001", push("callbackToVisitor", "inviteSuccess", "p1"))
    requests.progress("006011", push("videoPickUp", "visitorJoin"))  # another API: not this request
    requests.progress("006011", push("callbackToVisitor", "acceptSuccess"))
    assert sdk.subs("r1") == ["inviteSuccess", "acceptSuccess"]
    assert sdk.sent[-1] == {
        "v": 1,
        "id": "r1",
        "mark": "callbackToVisitor",
        "subMark": "acceptSuccess",
        "state": "006011",
        "payload": push("callbackToVisitor", "acceptSuccess"),
    }
    requests.progress("005003", push("callbackToVisitor", "visitorDisconnect"))
    assert sdk.done == ["r1"]  # a final callback ends it
    requests.progress("005003", push("callbackToVisitor", "kefuCloseVideoSuccess"))
    assert sdk.subs("r1") == ["inviteSuccess", "acceptSuccess", "visitorDisconnect"]


def test_progress_before_the_reply_is_held_and_dropped_if_the_reply_is_an_error() -> None:
    requests, sdk = CallRequests(), Sdk()
    call = sdk.open(requests, "r1", "videoInviteAgent", "p1")
    requests.progress("008002", push("videoInviteAgent", "acceptSuccess"))
    assert sdk.sent == []
    call.reply(reply("r1", "videoInviteAgent", "inviteSuccess", "007002"))
    assert sdk.subs("r1") == ["inviteSuccess", "acceptSuccess"]
    other = sdk.open(requests, "r2", "videoInviteAgent", "p2")
    requests.progress("006010", push("videoInviteAgent", "exitSuccess"))  # r1's (ends it); r2 holds it
    other.reply({**reply("r2", "videoInviteAgent", "error", "008002"), "error": {"code": "invalid_state"}})
    assert sdk.subs("r2") == ["error"] and sdk.done == ["r1", "r2"]


def test_the_end_of_the_call_ends_every_open_request_once() -> None:
    requests, sdk = CallRequests(), Sdk()
    pick = sdk.open(requests, "r1", "videoPickUp", "p1")
    pick.reply(reply("r1", "videoPickUp", "success", "004001"))
    invite = sdk.open(requests, "r2", "videoInviteAgent", "p2")
    invite.reply(reply("r2", "videoInviteAgent", "inviteSuccess", "007002"))
    # the visitor hangs up a three-party call: videoPickUp's own final callback,
    # kefuCloseVideoSuccess for the other one (the meeting ended)
    ending = push("videoPickUp", "visitorDisconnect")
    requests.progress("005007", ending)
    requests.call_over("005007", ending)
    assert sdk.subs("r1") == ["success", "visitorDisconnect"]
    assert sdk.subs("r2") == ["inviteSuccess", "kefuCloseVideoSuccess"]
    assert sdk.done == ["r1", "r2"] and list(requests) == []


def test_a_call_ends_when_the_state_leaves_the_call_states() -> None:
    assert (
        call_ended("006011", "005004") and call_ended("003001", "002001") and call_ended("004002", "002000")
    )
    assert call_ended("008002", "000000")
    assert not call_ended("006011", "008001") and not call_ended("002000", "003001")
    assert not call_ended("005004", "002000") and not call_ended(None, "002000")


def members(*rows: tuple[str, str, str]) -> list[Json]:
    return [{"kind": k, "name": n, "role": "x", "status": s} for k, n, s in rows]


def test_the_mirror_follows_the_calls_and_answers_the_queries() -> None:
    mirror = CallMirror()
    mirror.me = "a2"
    view = mirror.update(
        {
            "callId": "c1",
            "primary": "a1",
            "phase": "connected",
            "what": "invited",
            "members": members(
                ("agent", "a1", "joined"), ("visitor", "v1", "joined"), ("agent", "a2", "invited")
            ),
        }
    )
    assert view is not None and mirror.current() is view and view.first_visitor == "v1"
    assert not mirror.is_multiple_video("004002")
    mirror.update(
        {
            "callId": "c1",
            "primary": "a1",
            "what": "update",
            "members": members(
                ("agent", "a1", "joined"), ("visitor", "v1", "joined"), ("agent", "a2", "joined")
            ),
        }
    )
    # the invited third agent stays in 006014: three joined members make it a three-party video
    assert mirror.is_multiple_video("006014")
    view.share = True
    assert mirror.is_share_state()
    mirror.update(
        {"callId": "c1", "primary": "a1", "what": "ended", "members": members(("agent", "a2", "left"))}
    )
    assert mirror.current() is None and not mirror.is_share_state() and not mirror.is_multiple_video("005010")
    assert mirror.update({"callId": "c2", "members": []}) is None  # malformed: dropped
    mirror.me = "a1"
    assert mirror.is_multiple_video("008001")  # the primary: exactly 008xxx
