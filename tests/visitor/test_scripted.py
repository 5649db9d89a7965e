"""The visitor's behaviour in calls, against a scripted server side of the
visitor socket (tests/visitor/peer.py): every policy, busy, join, hang-up,
share and photo answers without media, and pushes the real server would
never send (the visitor must not break on them)."""

from __future__ import annotations

import asyncio

import pytest

from kefu.protocol import ApiError, ErrorCode
from kefu.visitor import (
    CallAction,
    CallUpdate,
    Disconnected,
    Invitation,
    PhotoAnswer,
    Problem,
    RequestFailed,
    ShareAnswer,
    Visitor,
)

from .peer import ScriptedServer, error


async def visitor(peer: ScriptedServer, **kw: object) -> Visitor:
    v = Visitor(peer.url, "v1", timeout=5.0, **kw)  # type: ignore[arg-type]
    await v.connect()
    return v


def action(call_id: str, what: str) -> object:
    return lambda e: isinstance(e, CallAction) and (e.call_id, e.action) == (call_id, what)


async def test_accept_policy_accepts_and_a_second_invitation_gets_busy(scripted: ScriptedServer) -> None:
    v = await visitor(scripted, on_invite="accept")
    try:
        await scripted.call("c1", "invited", agentName="a1", role="visitor")
        req = await scripted.next_request("answerCall")
        assert req["params"] == {"callId": "c1", "answer": "accept"}
        done = await v.wait_for(CallAction, lambda e: e.call_id == "c1")
        assert done == CallAction("c1", "accepted", auto=True)
        assert v.call is not None and (v.call.call_id, v.call.phase, v.call.agent_name) == (
            "c1",
            "connected",
            "a1",
        )
        assert await v.next_invitation() == Invitation("c1", "a1", "visitor")

        # docs/calls.md: a visitor already in a call answers a new invitation with busy
        await scripted.call("c2", "invited", agentName="a2", role="visitor")
        req = await scripted.next_request("answerCall")
        assert req["params"] == {"callId": "c2", "answer": "busy"}
        assert await v.wait_for(CallAction, lambda e: e.call_id == "c2") == CallAction(
            "c2", "busy", auto=True
        )
        assert v.call.call_id == "c1" and v.pending_invitations == ()
        assert (await v.next_invitation()).call_id == "c2"  # it is shown, answered

        await scripted.call("c1", "ended", by="a1", reason="agent hung up")
        await v.wait_for(CallUpdate, lambda e: e.what == "ended")
        await v.settled()  # the worker has acted on every push received
        assert v.call is None
    finally:
        await v.aclose()
    assert "answerCall" not in scripted.marks()


async def test_refuse_and_ignore_policies(scripted: ScriptedServer) -> None:
    v = await visitor(scripted, on_invite="refuse")
    try:
        await scripted.call("c1", "invited", agentName="a1")
        assert (await scripted.next_request("answerCall"))["params"]["answer"] == "refuse"
        assert await v.wait_for(CallAction) == CallAction("c1", "refused", auto=True)
        assert v.call is None and v.pending_invitations == ()

        v.on_invite = "ignore"
        await scripted.call("c2", "invited", agentName="a1")
        assert await v.wait_for(CallAction, lambda e: e.call_id == "c2") == CallAction(
            "c2", "ignored", auto=True
        )
        assert [i.call_id for i in v.pending_invitations] == ["c2"]
        assert scripted.marks() == []  # no answer: it rings until the server gives up
        await scripted.call("c2", "cancelled", reason="timeout")
        await v.wait_for(CallUpdate, lambda e: e.what == "cancelled")
        await v.settled()
        assert v.pending_invitations == () and v.call is None
    finally:
        await v.aclose()


async def test_manual_policy_leaves_the_answer_to_the_caller(scripted: ScriptedServer) -> None:
    v = await visitor(scripted)  # manual is the library's default
    try:
        await scripted.call("c1", "invited", agentName="a1")
        inv = await v.next_invitation()
        assert inv.call_id == "c1" and scripted.marks() == [] and v.call is None
        await v.accept(inv.call_id)
        assert (await scripted.next_request("answerCall"))["params"] == {"callId": "c1", "answer": "accept"}
        assert v.timeline[-1] == CallAction("c1", "accepted")
        with pytest.raises(ApiError) as info:
            await v.accept("c9")  # one call at a time
        assert info.value.code is ErrorCode.invalid_state

        await v.hangup()
        assert (await scripted.next_request("hangup"))["params"] == {"callId": "c1"}
        assert v.call is None and v.timeline[-1] == CallAction("c1", "hungUp")
        with pytest.raises(ApiError) as info:
            await v.hangup()
        assert info.value.code is ErrorCode.not_in_call

        await scripted.call("c2", "invited", agentName="a1")
        await v.refuse((await v.next_invitation()).call_id)
        assert (await scripted.next_request("answerCall"))["params"] == {"callId": "c2", "answer": "refuse"}
    finally:
        await v.aclose()


async def test_own_request_rings_then_the_visitor_joins_on_accepted(scripted: ScriptedServer) -> None:
    scripted.answers["requestVideo"] = lambda _: {"subMark": "success", "payload": {"callId": "c1"}}
    v = await visitor(scripted, on_invite="accept")
    try:
        assert await v.request_video() == "c1"
        assert v.call is not None and (v.call.origin, v.call.phase) == ("request", "ringing")
        with pytest.raises(ApiError):
            await v.request_video()  # already asked
        await scripted.call("c1", "ringing", agentName="a1")
        # our own request rings: an invitation meanwhile is answered busy
        await scripted.call("c2", "invited", agentName="a2")
        assert (await scripted.next_request("answerCall"))["params"] == {"callId": "c2", "answer": "busy"}
        await scripted.call("c1", "accepted", agentName="a1")
        assert (await scripted.next_request("joinCall"))["params"] == {"callId": "c1"}
        assert await v.wait_for(CallAction, lambda e: e.action == "joined") == CallAction(
            "c1", "joined", auto=True
        )
        assert v.call.phase == "connected" and v.call.agent_name == "a1"
        await scripted.call("c1", "memberJoined", kind="agent", name="a3")
        await scripted.call("c1", "memberLeft", kind="agent", name="a3")
        await scripted.call("c1", "memberJoined", kind="visitor", name="v2")
        await v.wait_for(CallUpdate, lambda e: e.name == "v2")
        await v.settled()
        assert v.call.others == {("visitor", "v2")}
    finally:
        await v.aclose()


async def test_a_join_that_fails_leaves_the_visitor_free(scripted: ScriptedServer) -> None:
    scripted.answers["joinCall"] = lambda _: error("invalid_state", "the call is over")
    v = await visitor(scripted, on_invite="accept")
    try:
        await scripted.call("c1", "accepted", agentName="a1")
        problem = await v.wait_for(Problem)
        assert (problem.what, problem.code, problem.msg) == ("call push", "invalid_state", "the call is over")
        assert v.call is None
        await scripted.call("c2", "invited", agentName="a1")  # so it can take the next call
        assert (await scripted.next_request("answerCall"))["params"]["answer"] == "accept"
    finally:
        await v.aclose()


async def test_a_hangup_the_server_refuses_still_ends_the_call_here(scripted: ScriptedServer) -> None:
    scripted.answers["hangup"] = lambda _: error("no_such_call", "no such call")
    v = await visitor(scripted, on_invite="accept")
    try:
        await scripted.call("c1", "invited", agentName="a1")
        await v.wait_for(CallAction)
        with pytest.raises(RequestFailed) as info:
            await v.hangup()
        assert info.value.code is ErrorCode.no_such_call and v.call is None
    finally:
        await v.aclose()


async def test_share_and_photo_answers_without_media(scripted: ScriptedServer) -> None:
    v = await visitor(scripted, on_invite="accept", allow_share=False, allow_photo=False)
    try:
        await scripted.call("c1", "invited", agentName="a1")
        await v.wait_for(CallAction)
        await scripted.push("shareRequest", {"callId": "c1", "agentName": "a1"})
        assert (await scripted.next_request("shareAnswer"))["params"] == {"callId": "c1", "answer": "refuse"}
        await scripted.push("photoRequest", {"callId": "c1", "requestId": "p1", "agentName": "a1"})
        # the spec's snapShotDisabled: the visitor says "disabled", the server and plugin say the rest
        assert (await scripted.next_request("photoAnswer"))["params"] == {
            "callId": "c1",
            "requestId": "p1",
            "answer": "disabled",
        }
        assert await v.wait_for(PhotoAnswer) == PhotoAnswer("c1", "p1", "disabled")

        v.allow_share = v.allow_photo = True  # allowed, but no offer came yet: nothing to share or shoot
        await scripted.push("shareRequest", {"callId": "c1"})
        assert (await scripted.next_request("shareAnswer"))["params"] == {
            "callId": "c1",
            "answer": "error",
            "reason": "no media connection yet",
        }
        await scripted.push("photoRequest", {"callId": "c1", "requestId": "p2"})
        assert (await scripted.next_request("photoAnswer"))["params"]["answer"] == "error"
        await scripted.push("photoRequest", {"callId": "c9", "requestId": "p3"})  # another call
        assert (await scripted.next_request("photoAnswer"))["params"] == {
            "callId": "c9",
            "requestId": "p3",
            "answer": "error",
            "reason": "not in this call",
        }
        assert await v.wait_for(ShareAnswer, lambda e: e.answer == "error") == ShareAnswer(
            "c1", "error", "no media connection yet"
        )
        with pytest.raises(ApiError) as info:
            v.pause_video(1.0)
        assert info.value.code is ErrorCode.not_in_call
        with pytest.raises(ApiError):
            await v.stop_share()
    finally:
        await v.aclose()


async def test_pushes_the_server_would_not_send_are_problems_not_crashes(scripted: ScriptedServer) -> None:
    v = await visitor(scripted, on_invite="accept")
    try:
        await scripted.push("call", {"what": "invited"})  # no callId
        await scripted.push("photoRequest", {"callId": "c1"})  # no requestId
        await scripted.push("signal", {"callId": "c7", "from": {"kind": "agent", "name": "a1"}, "data": {}})
        await scripted.push("call", "not an object")
        await scripted.call("c1", "invited", agentName="a1")
        await v.wait_for(CallAction)
        # signalling from someone who is not the call's agent, and a bad offer from the agent
        await scripted.push("signal", {"callId": "c1", "from": {"kind": "visitor", "name": "v2"}, "data": {}})
        await scripted.push("signal", {"callId": "c1", "from": {"kind": "agent", "name": "a9"}, "data": {}})
        await scripted.push(
            "signal",
            {"callId": "c1", "from": {"kind": "agent", "name": "a1"}, "data": {"type": "offer", "sdp": "x"}},
        )
        await scripted.call("c1", "ended", by="a1", reason="done")
        await v.wait_for(CallUpdate, lambda e: e.what == "ended")
        await v.settled()
        problems = [(p.what, p.code) for p in v.timeline if isinstance(p, Problem)]
        assert problems == [
            ("call push", "bad_request"),
            ("photoRequest push", "bad_request"),
            ("signal push", "no_such_call"),
            ("call push", "bad_request"),
            ("signal push", "forbidden"),
            ("signal push", "forbidden"),
            ("signal push", "bad_request"),
        ]
        assert v.call is None and scripted.marks() == ["answerCall"]  # the accept; nothing for the rest
    finally:
        await v.aclose()


async def test_events_iterate_from_the_start_and_end_when_closed(scripted: ScriptedServer) -> None:
    v = await visitor(scripted)
    await scripted.push("queue", {"position": 3})
    await scripted.push("sessionAssigned", {"sessionId": "s1", "agentName": "a1"})
    await scripted.push("message", {"from": "agent", "text": "hello"})
    await scripted.call("c1", "invited", agentName="a1")
    await v.next_invitation()
    seen: list[str] = []

    async def read() -> None:
        async for ev in v.events():
            seen.append(ev.describe())

    reader = asyncio.create_task(read())
    await v.aclose()
    await asyncio.wait_for(reader, 5)
    assert seen == [
        "waiting in the queue: position 3",
        "agent a1 took the session s1",
        "agent: hello",
        "call c1: agent a1 invites you to a video call",
        "disconnected (1000)",
    ]
    with pytest.raises(RuntimeError):
        await v.next_invitation()


async def test_the_server_closing_the_socket_is_an_event(scripted: ScriptedServer) -> None:
    v = await visitor(scripted)
    try:
        assert scripted.ws is not None
        await scripted.ws.close(1011, "going away")
        gone = await v.wait_for(Disconnected)
        assert (gone.code, gone.reason) == (1011, "going away")
    finally:
        await v.aclose()
