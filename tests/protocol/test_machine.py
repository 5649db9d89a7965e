"""The agent state machine: every code reachable, random walks, the spec's flows."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.protocol import (
    INITIAL,
    TRANSITIONS,
    AgentState,
    Code,
    Event,
    Flow,
    InvalidTransition,
    allowed,
    process,
)

ALL_MOVES = [(f, e) for f in Flow for e in Event]


def _reachable() -> dict[AgentState, list[tuple[Flow, Event]]]:
    paths: dict[AgentState, list[tuple[Flow, Event]]] = {INITIAL: []}
    todo = deque([INITIAL])
    while todo:
        s = todo.popleft()
        for f, e in ALL_MOVES:
            if allowed(s, f, e) is None:
                continue
            nxt, _ = process(s, f, e)
            if nxt not in paths:
                paths[nxt] = [*paths[s], (f, e)]
                todo.append(nxt)
    return paths


REACHABLE = _reachable()


@pytest.mark.parametrize("code", list(Code), ids=[c.value for c in Code])
def test_every_code_is_reachable_from_not_logged_in(code: Code) -> None:
    states = [s for s in REACHABLE if s.code is code]
    assert states, f"{code.value} {code.name} cannot be reached"
    # replay the path to show it is a real sequence of events
    path = REACHABLE[states[0]]
    s = INITIAL
    for f, e in path:
        s, _ = process(s, f, e)
    assert s.code is code


def test_every_row_is_used_somewhere() -> None:
    used = set()
    for s in REACHABLE:
        for f, e in ALL_MOVES:
            t = allowed(s, f, e)
            if t is not None:
                used.add((t.state, t.flow, t.event))
    assert used == set(TRANSITIONS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALL_MOVES), max_size=60))
def test_random_walks_move_to_a_listed_code_or_raise_unchanged(moves: list[tuple[Flow, Event]]) -> None:
    s = INITIAL
    for f, e in moves:
        before = s
        try:
            s, t = process(s, f, e)
        except InvalidTransition as exc:
            assert s == before
            assert exc.state == before.code.value
            assert exc.flow == f.value and exc.event == e.value
            assert before.code.value in str(exc) and e.value in str(exc)
            assert exc.code.value == "invalid_state"
            continue
        assert s.code in Code
        assert s.code is t.target
        assert s.top is s.code.top


def run(*moves: tuple[Flow, Event]) -> list[str]:
    s = INITIAL
    codes = []
    for f, e in moves:
        s, _ = process(s, f, e)
        codes.append(s.code.value)
    return codes


A, VI, AI, CV, CCV, ITV, ITA = (
    Flow.agent,
    Flow.visitorInvite,
    Flow.agentInvite,
    Flow.callVisitor,
    Flow.callCurrentVisitor,
    Flow.inviteThirdVisitor,
    Flow.inviteThirdAgent,
)
E = Event


def test_login_ready_logout() -> None:
    assert run((A, E.login), (A, E.setReady), (A, E.setNotReady), (A, E.logout)) == [
        "001000",
        "002000",
        "001000",
        "000000",
    ]
    assert run((A, E.loginReady)) == ["002000"]


def test_visitor_invite_flow() -> None:
    assert run(
        (A, E.loginReady),
        (VI, E.ring),
        (VI, E.pickUp),
        (VI, E.joined),
        (ITA, E.invite),
        (ITA, E.accept),
        (ITA, E.leave),
        (VI, E.visitorHangup),
        (A, E.setReady),
    ) == ["002000", "004001", "004001", "006013", "007002", "008002", "006010", "005007", "002000"]


def test_pick_up_twice_or_join_before_pick_up_is_refused() -> None:
    s, _ = process(AgentState(Code.idle), VI, E.ring)
    with pytest.raises(InvalidTransition):
        process(s, VI, E.joined)
    s, _ = process(s, VI, E.pickUp)
    with pytest.raises(InvalidTransition, match="already picked up"):
        process(s, VI, E.pickUp)


def test_call_out_outcomes() -> None:
    base = ((A, E.loginReady), (CV, E.invite))
    assert run(*base, (CV, E.refuse))[-1] == "002001"
    assert run(*base, (CV, E.timeout))[-1] == "002002"
    assert run(*base, (CV, E.busy))[-1] == "002003"
    assert run(*base, (CV, E.error))[-1] == "002004"
    assert run(*base, (CV, E.agentHangup))[-1] == "002005"
    assert run(*base, (CV, E.accept), (CV, E.visitorHangup))[-1] == "005003"
    assert run(*base, (CV, E.accept), (CV, E.agentHangup))[-1] == "005004"


def test_events_of_another_flow_are_refused_in_a_call() -> None:
    s = INITIAL
    for f, e in ((A, E.loginReady), (CV, E.invite), (CV, E.accept)):
        s, _ = process(s, f, e)
    with pytest.raises(InvalidTransition, match="callVisitor call"):
        process(s, CCV, E.agentHangup)
    assert s.code is Code.callVisitor_VisitorAcceptSuccess


def test_third_visitor_three_party_and_primary_hangup() -> None:
    moves = ((A, E.loginReady), (CCV, E.invite), (CCV, E.accept), (ITV, E.invite), (ITV, E.accept))
    assert run(*moves) == ["002000", "003002", "006012", "007001", "008001"]
    assert run(*moves, (ITV, E.visitorHangup))[-1] == "006005"
    assert run(*moves, (ITV, E.agentHangup))[-1] == "005001"
    s = INITIAL
    for f, e in moves:
        s, _ = process(s, f, e)
    # in a three-party visitor call the visitor leaving is the third-visitor flow's event
    with pytest.raises(InvalidTransition):
        process(s, CCV, E.visitorHangup)


def test_invited_agent_view() -> None:
    base = ((A, E.loginReady), (AI, E.ring))
    assert run(*base)[-1] == "004002"
    assert run(*base, (AI, E.timeout))[-1] == "001002"
    assert run(*base, (AI, E.error))[-1] == "002012"  # SPEC §5.3.4
    assert run(*base, (AI, E.refuse))[-1] == "002000"
    assert run(*base, (AI, E.pickUp))[-1] == "006014"
    assert run(*base, (AI, E.pickUp), (AI, E.visitorHangup))[-1] == "005009"
    assert run(*base, (AI, E.pickUp), (AI, E.agentHangup))[-1] == "005010"
    assert run(*base, (AI, E.pickUp), (AI, E.leave))[-1] == "005010"


def test_invited_agent_cannot_invite() -> None:
    s = INITIAL
    for f, e in ((A, E.loginReady), (AI, E.ring), (AI, E.pickUp)):
        s, _ = process(s, f, e)
    with pytest.raises(InvalidTransition, match="primary agent"):
        process(s, ITV, E.invite)


def test_not_ready_agent_does_not_ring_as_third_agent() -> None:
    s, _ = process(INITIAL, A, E.login)
    assert allowed(s, AI, E.ring) is None


def test_after_call_work_ends_by_hand_or_timeout() -> None:
    s = INITIAL
    for f, e in ((A, E.loginReady), (CV, E.invite), (CV, E.accept), (CV, E.visitorHangup)):
        s, _ = process(s, f, e)
    assert s.code is Code.callVisitor_visitorDisconnect
    assert process(s, A, E.wrapUpTimeout)[0].code is Code.idle
    assert process(s, A, E.setNotReady)[0].code is Code.busy
    # a new call-out from wrap-up is allowed; a visitor's ringing is not
    assert allowed(s, CV, E.invite) is not None
    assert allowed(s, VI, E.ring) is None


def test_every_row_names_a_callback_and_a_source() -> None:
    for t in TRANSITIONS.values():
        assert t.sub_mark and t.ref
