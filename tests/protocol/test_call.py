"""The pure call lifecycle, checked against the agent state machine."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.protocol import AgentState, ApiError, Code, TopState, process
from kefu.protocol.call import (
    MEDIA_LOST,
    MEDIA_SERVER_LOST,
    AgentEffect,
    Call,
    CallPhase,
    EndEffect,
    MemberKind,
    TimerEffect,
    VisitorEffect,
)

AG, VI = MemberKind.agent, MemberKind.visitor


class World:
    """Agents' state machines driven by a call's effects, as the server does."""

    def __init__(self, *agents: str) -> None:
        self.states = {a: AgentState(Code.idle) for a in agents}
        self.log: list[tuple[str, str, str | None]] = []  # (agent, code, sub_mark)
        self.visitor_log: list[tuple[str, str]] = []
        self.ended: EndEffect | None = None
        self.timer: int | None = None

    def apply(self, fx: list) -> None:
        for f in fx:
            if isinstance(f, AgentEffect):
                self.states[f.agent], t = process(self.states[f.agent], f.flow, f.event)
                self.log.append((f.agent, t.target.value, t.sub_mark))
            elif isinstance(f, VisitorEffect):
                self.visitor_log.append((f.visitor, f.what))
            elif isinstance(f, EndEffect):
                self.ended = f
            elif isinstance(f, TimerEffect):
                self.timer = f.gen if f.start else None

    def codes(self, agent: str) -> list[str]:
        return [c for a, c, _ in self.log if a == agent]


def visitor_invite(w: World) -> Call:
    call, fx = Call.visitor_request("c1", "a1", "v1")
    w.apply(fx)
    w.apply(call.pick_up("a1"))
    w.apply(call.visitor_join("v1"))
    return call


def test_visitor_invite_to_three_party_and_back() -> None:
    w = World("a1", "a2")
    call = visitor_invite(w)
    assert w.codes("a1") == ["004001", "004001", "006013"]
    w.apply(call.invite_third(AG, "a2"))
    assert w.codes("a2") == ["004002"]
    w.apply(call.agent_answer("a2", "accept"))
    assert w.codes("a1")[-1] == "008002" and w.codes("a2")[-1] == "006014"
    assert call.three_party
    w.apply(call.hangup(AG, "a2"))  # the third agent leaves
    assert w.codes("a1")[-1] == "006010"
    assert w.log[-1] == ("a2", "005010", "exitSuccess")
    w.apply(call.hangup(VI, "v1"))
    assert w.codes("a1")[-1] == "005007" and call.ended
    assert w.ended == EndEffect("v1", "hangup")


def test_visitor_request_not_picked_up_times_out() -> None:
    w = World("a1")
    call, fx = Call.visitor_request("c1", "a1", "v1")
    w.apply(fx)
    gen = w.timer
    assert gen is not None
    w.apply(call.timeout(gen))
    assert w.codes("a1") == ["004001", "001001"]
    assert ("v1", "cancelled") in w.visitor_log
    assert call.timeout(gen) == []  # once only


def test_a_stale_timer_is_ignored() -> None:
    w = World("a1")
    call, fx = Call.visitor_request("c1", "a1", "v1")
    w.apply(fx)
    old = w.timer
    w.apply(call.pick_up("a1"))
    assert old is not None and call.timeout(old) == []
    assert call.phase is CallPhase.joining


@pytest.mark.parametrize(
    ("current", "answer", "code"),
    [
        (False, "refuse", "002001"),
        (False, "busy", "002003"),
        (True, "refuse", "002006"),
        (True, "busy", "002008"),
    ],
)
def test_call_out_refused_or_busy(current: bool, answer: str, code: str) -> None:
    w = World("a1")
    call, fx = Call.call_out("c1", "a1", "v1", current=current)
    w.apply(fx)
    w.apply(call.visitor_answer("v1", answer))
    assert w.codes("a1")[-1] == code and call.ended


def test_primary_hangs_up_a_three_party_visitor_call() -> None:
    w = World("a1")
    call, fx = Call.call_out("c1", "a1", "v1")
    w.apply(fx)
    w.apply(call.visitor_answer("v1", "accept"))
    w.apply(call.invite_third(VI, "v2"))
    w.apply(call.visitor_answer("v2", "accept"))
    assert w.codes("a1") == ["003001", "006011", "007001", "008001"]
    w.apply(call.hangup(AG, "a1"))
    assert w.codes("a1")[-1] == "005001"
    assert {("v1", "ended"), ("v2", "ended")} <= set(w.visitor_log)


def test_the_first_visitor_leaving_a_three_party_call_leaves_two() -> None:
    w = World("a1")
    call, fx = Call.call_out("c1", "a1", "v1")
    w.apply(fx)
    w.apply(call.visitor_answer("v1", "accept"))
    w.apply(call.invite_third(VI, "v2"))
    w.apply(call.visitor_answer("v2", "accept"))
    w.apply(call.hangup(VI, "v1"))
    assert w.codes("a1")[-1] == "006005" and not call.ended
    w.apply(call.hangup(AG, "a1"))
    assert w.codes("a1")[-1] == "005004"


def test_visitor_leaving_a_call_with_two_agents_ends_it_for_both() -> None:
    w = World("a1", "a2")
    call = visitor_invite(w)
    w.apply(call.invite_third(AG, "a2"))
    w.apply(call.agent_answer("a2", "accept"))
    w.apply(call.hangup(VI, "v1"))
    assert w.codes("a1")[-1] == "005007" and w.codes("a2")[-1] == "005009"


def test_primary_hangup_while_inviting_withdraws_the_invitation() -> None:
    w = World("a1", "a2")
    call = visitor_invite(w)
    w.apply(call.invite_third(AG, "a2"))
    w.apply(call.hangup(AG, "a1"))
    assert w.codes("a1")[-1] == "005002"
    assert w.codes("a2") == ["004002", "002000"]


def test_a_primary_whose_media_is_lost_ends_the_call_for_everyone() -> None:
    w = World("a1")
    call, fx = Call.call_out("c1", "a1", "v1")
    w.apply(fx)
    w.apply(call.visitor_answer("v1", "accept"))
    assert w.codes("a1") == ["003001", "006011"]
    w.apply(call.media_lost("a1"))
    assert call.ended and w.log[-1] == ("a1", "005004", "kefuCloseVideoSuccess")
    assert w.ended == EndEffect("a1", MEDIA_LOST) == EndEffect("a1", "agent_media_lost")
    assert ("v1", "ended") in w.visitor_log
    assert (call.ended_by, call.end_reason) == ("a1", MEDIA_LOST)


def test_a_third_agent_whose_media_is_lost_leaves_the_call_to_the_others() -> None:
    w = World("a1", "a2")
    call = visitor_invite(w)
    w.apply(call.invite_third(AG, "a2"))
    w.apply(call.agent_answer("a2", "accept"))
    w.apply(call.media_lost("a2"))
    assert not call.ended and w.codes("a1")[-1] == "006010"
    assert w.log[-1] == ("a2", "005010", "exitSuccess")
    assert ("v1", "memberLeft") in w.visitor_log


def test_no_media_to_lose_before_the_call_connects() -> None:
    w = World("a1", "a2")
    call, fx = Call.call_out("c1", "a1", "v1")
    w.apply(fx)
    assert call.media_lost("a1") == [] and call.phase is CallPhase.calling
    call = visitor_invite(World("a1", "a2"))
    call.invite_third(AG, "a2")  # it rings: a2 has no media in the call yet
    assert call.media_lost("a2") == [] and call.media_lost("nobody") == []
    call.hangup(AG, "a1")
    assert call.media_lost("a1") == []  # ended


def test_a_lost_media_server_ends_a_three_party_call_for_everyone() -> None:
    w = World("a1", "a2")
    call = visitor_invite(w)
    w.apply(call.invite_third(AG, "a2"))
    w.apply(call.agent_answer("a2", "accept"))
    w.apply(call.media_server_lost())
    assert call.ended and (call.ended_by, call.end_reason) == ("system", "media_server_lost")
    assert w.ended == EndEffect("system", MEDIA_SERVER_LOST)
    assert w.states["a1"].code.value != "006011" and w.log[-1][0] == "a2"  # both agents leave
    assert ("v1", "ended") in w.visitor_log
    assert call.media_server_lost() == []  # once


def test_a_lost_media_server_fails_a_call_still_ringing() -> None:
    w = World("a1")
    call, fx = Call.call_out("c1", "a1", "v1")
    w.apply(fx)
    w.apply(call.media_server_lost())
    assert call.ended and call.end_reason == MEDIA_SERVER_LOST and ("v1", "cancelled") in w.visitor_log
    assert w.codes("a1")[-1] == "002004"  # the flow's error code (SPEC §5.2)


def test_requests_the_call_does_not_allow_change_nothing() -> None:
    w = World("a1")
    call, fx = Call.call_out("c1", "a1", "v1")
    w.apply(fx)
    with pytest.raises(ApiError) as info:
        call.invite_third(VI, "v2")
    assert info.value.code.value == "invalid_state"
    with pytest.raises(ApiError):
        call.pick_up("a1")
    assert call.phase is CallPhase.calling and call.pending is None


OPS = st.lists(
    st.tuples(
        st.sampled_from(["pick", "join", "answer", "agent_answer", "invite", "hangup", "timeout", "fail"]),
        st.sampled_from(["a1", "a2", "v1", "v2"]),
        st.sampled_from(["accept", "refuse", "busy"]),
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["visitor", "call", "current"]), OPS)
def test_random_calls_only_produce_transitions_the_machine_allows(start: str, ops: list) -> None:
    """Whatever happens, the effects never ask the state machine for a move it refuses,
    and at the end of a call every agent that was connected is in after-call work."""
    w = World("a1", "a2")
    if start == "visitor":
        call, fx = Call.visitor_request("c", "a1", "v1")
    else:
        call, fx = Call.call_out("c", "a1", "v1", current=start == "current")
    w.apply(fx)
    connected: set[str] = set()
    for op, who, answer in ops:
        kind = AG if who.startswith("a") else VI
        try:
            if op == "pick":
                fx = call.pick_up(who)
            elif op == "join":
                fx = call.visitor_join(who)
            elif op == "answer":
                fx = call.visitor_answer(who, answer)
            elif op == "agent_answer":
                fx = call.agent_answer(who, "refuse" if answer == "busy" else answer)
            elif op == "invite":
                if kind is AG and w.states[who].top is not TopState.idle:
                    continue  # the server answers busy without ringing
                fx = call.invite_third(kind, who)
            elif op == "hangup":
                fx = call.hangup(kind, who)
            elif op == "timeout":
                fx = call.timeout(call.timer_gen)
            else:
                fx = call.fail("test")
        except ApiError:
            continue
        w.apply(fx)  # raises InvalidTransition if the call asked for a refused move
        # a stored call comes back exactly (any node can carry it on)
        again = Call.from_dict(json.loads(json.dumps(call.to_dict())))
        assert again.to_dict() == call.to_dict()
        call = again
        for a, s in w.states.items():
            if s.top in (TopState.twoParty, TopState.threeParty):
                connected.add(a)
        if call.ended:
            break
    if call.ended:
        for a in connected:
            assert w.states[a].top is TopState.afterCall, (a, w.states[a])
        for a, s in w.states.items():
            assert s.top not in (TopState.ringing, TopState.callingOut, TopState.inviting), (a, s)
    if call.ended:
        with pytest.raises(ApiError):
            call.hangup(AG, "a1")
