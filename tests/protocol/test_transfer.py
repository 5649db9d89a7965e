"""Call transfers (issue 20), pure: every party's codes from the transition table."""

from __future__ import annotations

import json

import pytest

from kefu.protocol import ApiError, transfer
from kefu.protocol.call import Call, MemberKind, TransferEffect

from .test_call import World, visitor_invite

AG, VI = MemberKind.agent, MemberKind.visitor


def started(consult: bool, note: str | None = "n1") -> tuple[World, Call]:
    w = World("a1", "a2", "a3")
    call = visitor_invite(w)
    w.log.clear()
    w.visitor_log.clear()
    w.apply(transfer.start(call, "a1", "a2", consult=consult, note=note))
    return w, call


def test_blind_completed_on_the_pick_up() -> None:
    w, call = started(False)
    assert w.timer is not None  # the target rings for the ring timeout
    fx = call.agent_answer("a2", "accept")
    w.apply(fx)
    assert w.codes("a1") == ["007003", "005011"] and w.codes("a2") == ["004003", "006023"]
    assert call.primary == "a2" and call.transfer is None and w.timer is None
    assert w.visitor_log == [("v1", "transferred")]
    assert call.member(AG, "a1").status.value == "left"  # type: ignore[union-attr]
    (done,) = [f for f in fx if isinstance(f, TransferEffect)]
    assert (done.kind, done.from_agent, done.to_agent, done.note, done.outcome) == (
        "blind",
        "a1",
        "a2",
        "n1",
        "completed",
    )
    # a2 is the primary now: its hang-up ends the call with its own code
    w.apply(call.hangup(AG, "a2"))
    assert w.codes("a2")[-1] == "005014" and call.ended
    assert [e["outcome"] for e in call.transfers] == ["completed"]


@pytest.mark.parametrize(
    ("how", "a1_code", "a2_code", "outcome"),
    [
        ("refuse", "006015", "002000", "refused"),
        ("timeout", "006016", "001003", "timeout"),
        ("fail", "006017", "002013", "failed"),
        ("cancel", "006018", "002000", "cancelled"),
        ("hangup", "006015", "002000", "refused"),  # the target hangs up on the ringing: a refusal
    ],
)
def test_blind_that_does_not_happen_leaves_the_call(
    how: str, a1_code: str, a2_code: str, outcome: str
) -> None:
    w, call = started(False)
    fx = {
        "refuse": lambda: call.agent_answer("a2", "refuse"),
        "timeout": lambda: call.timeout(call.timer_gen),
        "fail": lambda: call.fail("agent_disconnected"),
        "cancel": lambda: transfer.cancel(call, "a1"),
        "hangup": lambda: call.hangup(AG, "a2"),
    }[how]()
    w.apply(fx)
    assert w.codes("a1") == ["007003", a1_code] and w.codes("a2") == ["004003", a2_code]
    assert call.primary == "a1" and call.transfer is None and w.visitor_log == [] and not call.ended
    assert call.transfers[-1]["outcome"] == outcome
    # the call goes on as before: another transfer may start
    w.apply(transfer.start(call, "a1", "a3", consult=False, note=None))
    assert w.codes("a1")[-1] == "007003"


def test_a_consults_hold_in_the_media_audience() -> None:
    """D32 in the SFU mode's subscriptions during a consult: no feed reaches the visitor, the
    visitor's reaches everyone but the consulted agent; a supervisor's audience is kept."""
    from kefu.protocol.supervise import media_members

    w, call = started(True)
    whisper = {("agent", "boss"): frozenset({"a1"})}
    assert transfer.held_audience(call, media_members(call), {}) == {
        ("agent", "a1"): frozenset(),
        ("visitor", "v1"): frozenset({"a1"}),
    }
    w.apply(call.agent_answer("a2", "accept"))
    members = [*media_members(call), ("agent", "boss")]
    assert transfer.held_audience(call, members, whisper) == {
        ("agent", "a1"): frozenset({"a2", "boss"}),
        ("visitor", "v1"): frozenset({"a1", "boss"}),
        ("agent", "a2"): frozenset({"a1", "boss"}),
        ("agent", "boss"): frozenset({"a1"}),
    }
    w.apply(transfer.cancel(call, "a1"))
    assert transfer.held_audience(call, members, whisper) == whisper  # the hold is over


def test_consult_completed() -> None:
    w, call = started(True)
    assert w.visitor_log == [("v1", "held")]
    w.apply(call.agent_answer("a2", "accept"))
    assert call.three_party and call.transfer is not None and call.transfer["phase"] == "consulting"
    w.apply(transfer.complete(call, "a1"))
    assert w.codes("a1") == ["007004", "008003", "005012"]
    assert w.codes("a2") == ["004003", "006023", "006024"]
    assert w.visitor_log == [("v1", "held"), ("v1", "transferred")]
    assert call.primary == "a2" and not call.three_party
    w.apply(call.hangup(VI, "v1"))
    assert w.codes("a2")[-1] == "005013" and call.ended


@pytest.mark.parametrize(
    ("how", "a1_codes", "a2_code", "outcome"),
    [
        ("cancel", ["006022"], "002000", "cancelled"),
        ("target hangs up", ["006022"], "002000", "targetLeft"),
        ("agent hangs up", ["006022", "005008"], "002000", "cancelled"),
    ],
)
def test_consult_that_does_not_complete(how: str, a1_codes: list[str], a2_code: str, outcome: str) -> None:
    w, call = started(True)
    w.apply(call.agent_answer("a2", "accept"))
    fx = {
        "cancel": lambda: transfer.cancel(call, "a1"),
        "target hangs up": lambda: call.hangup(AG, "a2"),
        "agent hangs up": lambda: call.hangup(AG, "a1"),
    }[how]()
    w.apply(fx)
    assert w.codes("a1") == ["007004", "008003", *a1_codes]
    assert w.codes("a2") == ["004003", "006023", a2_code]
    assert w.visitor_log[:2] == [("v1", "held"), ("v1", "resumed")]
    assert call.transfers[-1]["outcome"] == outcome and call.primary == "a1"


def test_the_visitor_hangs_up_during_a_transfer() -> None:
    w, call = started(False)
    w.apply(call.hangup(VI, "v1"))  # while the target rings
    assert w.codes("a1") == ["007003", "005007"] and w.codes("a2") == ["004003", "002000"]
    assert call.ended and call.transfers[-1]["outcome"] == "ended"
    w, call = started(True)
    w.apply(call.agent_answer("a2", "accept"))
    w.apply(call.hangup(VI, "v1"))  # on hold, while the agents talk
    assert w.codes("a1") == ["007004", "008003", "005007"]
    assert w.codes("a2") == ["004003", "006023", "005013"]
    assert call.ended and call.transfers[-1]["outcome"] == "ended"


def test_a_transfer_in_progress_survives_the_snapshot() -> None:
    w, call = started(True, note="长期客户")
    again = Call.from_dict(json.loads(json.dumps(call.to_dict())))
    w.apply(again.agent_answer("a2", "accept"))
    w.apply(transfer.complete(again, "a1"))
    assert again.primary == "a2" and again.transfers[0]["note"] == "长期客户"
    old = call.to_dict()
    del old["transfer"], old["transfers"]  # a snapshot from before issue 20
    assert Call.from_dict(old).transfer is None


def test_what_a_transfer_refuses() -> None:
    w = World("a1", "a2", "a3")
    call, fx = Call.visitor_request("c1", "a1", "v1")
    w.apply(fx)
    with pytest.raises(ApiError) as e:  # not connected yet
        transfer.start(call, "a1", "a2", consult=False, note=None)
    assert e.value.code.value == "invalid_state"
    w.apply(call.pick_up("a1"))
    w.apply(call.visitor_join("v1"))
    for by, to, code in (("a2", "a3", "forbidden"), ("a1", "a1", "invalid_field")):
        with pytest.raises(ApiError) as e:
            transfer.start(call, by, to, consult=False, note=None)
        assert e.value.code.value == code
    for op in (transfer.complete, transfer.cancel):
        with pytest.raises(ApiError) as e:
            op(call, "a1")
        assert e.value.code.value == "no_transfer"
    w.apply(transfer.start(call, "a1", "a2", consult=False, note=None))
    with pytest.raises(ApiError) as e:
        transfer.start(call, "a1", "a3", consult=True, note=None)
    assert e.value.code.value == "transfer_in_progress"
    with pytest.raises(ApiError) as e:  # a blind transfer is not completed by the agent
        transfer.complete(call, "a1")
    assert e.value.code.value == "invalid_state"
    with pytest.raises(ApiError):  # nor is a third party invited meanwhile
        call.invite_third(AG, "a3")
    assert not [f for f in w.log if f[0] == "a3"]


def queued() -> tuple[World, Call]:
    w = World("a1", "a2", "a3")
    call = visitor_invite(w)
    w.log.clear()
    w.apply(transfer.queue(call, "a1", "loans", "card blocked"))
    return w, call


def test_a_blind_transfer_to_a_queue_waits_then_rings_the_first_ready_agent() -> None:
    """D50: the transferring agent leaves at once (005015), the visitor waits (``queued``);
    an agent that refuses or lets it ring out is passed over, the next one takes it."""
    w, call = queued()
    assert w.codes("a1") == ["005015"] and transfer.is_queued(call)
    assert w.visitor_log[-1] == ("v1", "queued") and w.timer is None
    assert call.member(AG, "a1").status.value == "left"  # type: ignore[union-attr]
    with pytest.raises(ApiError) as e:
        call.hangup(AG, "a1")  # not its call any more
    assert e.value.code.value == "invalid_state"
    with pytest.raises(ApiError) as e:
        transfer.cancel(call, "a1")
    assert e.value.code.value == "no_transfer"
    # a2 rings and refuses: the call waits again, a2 is not offered it again
    w.apply(transfer.offer(call, "a2"))
    assert w.timer is not None and call.pending is not None
    with pytest.raises(ApiError):
        transfer.offer(call, "a3")  # one at a time
    w.apply(call.agent_answer("a2", "refuse"))
    assert w.codes("a2") == ["004003", "002000"] and transfer.is_queued(call) and call.pending is None
    with pytest.raises(ApiError):
        transfer.offer(call, "a2")
    # a3 lets it ring out: passed over too, the call waits
    w.apply(transfer.offer(call, "a3"))
    w.apply(call.timeout(call.timer_gen))
    assert w.codes("a3") == ["004003", "001003"] and transfer.is_queued(call)
    assert w.codes("a1") == ["005015"]  # nothing more reaches the agent who left
    w.states["a4"] = w.states["a2"]
    w.apply(transfer.offer(call, "a4"))
    w.apply(call.agent_answer("a4", "accept"))
    assert w.codes("a4") == ["004003", "006023"] and call.primary == "a4" and call.transfer is None
    assert w.visitor_log[-1] == ("v1", "transferred")
    assert call.transfers[-1] == {
        "kind": "blind",
        "from": "a1",
        "to": "a4",
        "note": "card blocked",
        "outcome": "completed",
        "team": "loans",
    }
    w.apply(call.hangup(VI, "v1"))
    assert w.codes("a4")[-1] == "005013" and call.ended


@pytest.mark.parametrize("ringing", [False, True])
def test_the_visitor_hangs_up_while_its_call_waits_in_the_queue(ringing: bool) -> None:
    w, call = queued()
    if ringing:
        w.apply(transfer.offer(call, "a2"))
    w.apply(call.hangup(VI, "v1"))
    assert call.ended and call.ended_by == "v1" and call.end_reason == "hangup" and w.timer is None
    assert call.transfers[-1]["outcome"] == "abandoned"
    assert w.codes("a2") == (["004003", "002000"] if ringing else [])
    assert w.codes("a1") == ["005015"]


def test_the_media_server_lost_while_the_call_waits() -> None:
    w, call = queued()
    w.apply(call.media_server_lost())
    assert call.ended and call.ended_by == "system" and call.transfers[-1]["outcome"] == "ended"
    assert w.visitor_log[-1] == ("v1", "ended")


def test_a_queued_call_survives_the_snapshot() -> None:
    _, call = queued()
    again = Call.from_dict(json.loads(json.dumps(call.to_dict())))
    assert transfer.is_queued(again) and again.transfer == call.transfer


def test_the_hubs_of_a_call_in_order() -> None:
    """Recording parts (hub mode): the first primary, then every completed transfer's target."""
    w, call = started(False)
    assert transfer.hubs(call) == ["a1"]
    w.apply(call.agent_answer("a2", "refuse"))
    assert transfer.hubs(call) == ["a1"]  # a refused transfer made no hub
    w.apply(transfer.start(call, "a1", "a2", consult=False, note=None))
    w.apply(call.agent_answer("a2", "accept"))
    w.states["a1"] = w.states["a3"]  # a1 ready again after its after-call work
    w.apply(transfer.start(call, "a2", "a1", consult=False, note=None))
    w.apply(call.agent_answer("a1", "accept"))
    assert transfer.hubs(call) == ["a1", "a2", "a1"]
