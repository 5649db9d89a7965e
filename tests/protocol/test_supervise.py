"""A supervisor in a call, pure (kefu.protocol.supervise): modes, who hears it, what the
visitors are told, the errors, the call's end."""

from __future__ import annotations

import pytest

from kefu.protocol import ApiError
from kefu.protocol.call import Call, MemberKind, VisitorEffect
from kefu.protocol.supervise import (
    SupervisorEffect,
    SupervisorMode,
    audience,
    end_supervision,
    leave,
    media_members,
    supervise,
)

M, W, B = SupervisorMode.monitor, SupervisorMode.whisper, SupervisorMode.barge


def connected() -> Call:
    call, _ = Call.call_out("c1", "a1", "v1")
    call.visitor_answer("v1", "accept")
    return call


def told(fx: list[object]) -> list[tuple[str, str, str | None]]:
    return [(f.visitor, f.what, f.detail.get("role")) for f in fx if isinstance(f, VisitorEffect)]


def test_modes_in_place_and_who_hears_the_supervisor() -> None:
    call = connected()
    fx = supervise(call, "boss", M)
    assert fx == [SupervisorEffect("boss", M, None)]
    assert audience(call, "boss") == frozenset()
    assert media_members(call) == [("agent", "a1"), ("visitor", "v1"), ("agent", "boss")]
    fx = supervise(call, "boss", W)
    assert fx == [SupervisorEffect("boss", W, M)] and audience(call, "boss") == {"a1"}
    # barge: everyone hears it; the visitor is told as of a member joining
    fx = supervise(call, "boss", B)
    assert told(fx) == [("v1", "memberJoined", "supervisor")]
    assert audience(call, "boss") == {"a1", "v1"}
    supervise(call, "boss2", M)
    assert audience(call, "boss") == {"a1", "v1", "boss2"}
    # out of barge: the visitor is told it left
    assert told(supervise(call, "boss", M)) == [("v1", "memberLeft", "supervisor")]
    fx = leave(call, "boss")
    assert fx == [SupervisorEffect("boss", None, M, "left")] and "boss" not in call.supervisors
    # the snapshot keeps the supervisors (any node carries the call on)
    again = Call.from_dict(call.to_dict())
    assert again.supervisors == {"boss2": "monitor"}
    assert Call.from_dict({**call.to_dict(), "supervisors": None}).supervisors == {}


def test_monitor_and_whisper_are_never_told_to_the_visitor() -> None:
    call = connected()
    for mode in (M, W, M):
        assert told(supervise(call, "boss", mode)) == []
    assert told(leave(call, "boss")) == []


@pytest.mark.parametrize(
    ("setup", "name", "code"),
    [
        ("ringing", "boss", "invalid_state"),
        ("ended", "boss", "no_such_call"),
        ("member", "a1", "invalid_state"),
        ("same", "boss", "invalid_state"),
    ],
)
def test_what_cannot_be_done(setup: str, name: str, code: str) -> None:
    if setup == "ringing":
        call, _ = Call.call_out("c1", "a1", "v1")
    else:
        call = connected()
    if setup == "ended":
        call.hangup(MemberKind.agent, "a1")
    if setup == "same":
        supervise(call, "boss", M)
    before = call.to_dict()
    with pytest.raises(ApiError) as err:
        supervise(call, name, M)
    assert err.value.code.value == code
    assert call.to_dict() == before  # nothing changed


def test_leave_when_not_helping_and_the_end_of_the_call() -> None:
    call = connected()
    with pytest.raises(ApiError) as err:
        leave(call, "boss")
    assert err.value.code.value == "not_in_call"
    supervise(call, "boss", B)
    assert end_supervision(call) == []  # the call goes on
    call.hangup(MemberKind.agent, "a1")
    fx = end_supervision(call)
    assert fx == [SupervisorEffect("boss", None, B, "hangup")]  # the visitor heard "ended" already
    assert call.supervisors == {}
