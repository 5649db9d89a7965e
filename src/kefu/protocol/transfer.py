"""Call transfers (issue 20), pure: a :class:`~kefu.protocol.call.Call` handed to another agent.

Theory of operation
-------------------
The primary agent of a connected two-party call hands it to another agent:

- **blind** (:func:`start` with ``consult=False``): the target rings (``004003``,
  the usual invitation: ``multipleVideoPickUp`` / ``multipleVideoRefuse``) while
  the call goes on as it was (the transferring agent ``007003``). The target's
  pick-up makes it the call's primary agent (``006023``) and the transferring
  agent leaves into after-call work (``005011``); the visitor is told
  ``transferred``. A refusal, the ringing timeout or a failure leave the call
  with the transferring agent (``006015`` / ``006016`` / ``006017``, its
  ``state`` push says which), the target back to ready.
- **consult** (warm, ``consult=True``): the visitor is put on hold (told
  ``held``: it receives no media from the agents and its own is not forwarded
  to the target, docs/calls.md) and the target rings (``007004``). On the
  pick-up the two agents talk (``008003`` / ``006023``). :func:`complete` makes
  the target the primary agent (``006024``) and the transferring agent leaves
  (``005012``), the visitor told ``transferred``; :func:`cancel` (or the
  target hanging up) brings the transferring agent back to the visitor
  (``006022``), the visitor told ``resumed``, the target back to ready.

- **blind to a queue** (:func:`queue`, D31 as amended by D50): a team none of
  whose agents is ready. The transferring agent leaves at once into after-call
  work (``005015``); the visitor is told ``queued`` and waits with no agent (no
  media reaches it). The adapter finds the team's first ready agent and
  :func:`offer` rings it as a blind transfer's target (``004003``); its pick-up
  makes it the primary (``006023``, the visitor told ``transferred``); a
  refusal, the ringing timeout or a failure put the call back at its place in
  the queue (the agent is not offered it again). The visitor hanging up while
  it waits ends the call (:func:`abandon`: the transfer's outcome
  ``abandoned``).

One transfer is in progress at a time (``Call.transfer``), and none while a
third party is invited or in the call. Every transfer that ends leaves an
entry in ``Call.transfers`` (kind, from, to, note, outcome; the adapter stamps
the time) and a :class:`TransferEffect` (the integration event
``call.transferred``).

The call object's own methods call in here where a member is the transfer's
target (its answer, its timer, its hang-up) or a transfer is in progress when
the call ends; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .call import (
    AgentEffect,
    Call,
    CallNotice,
    CallPhase,
    Effect,
    Member,
    MemberKind,
    MemberStatus,
    TransferEffect,
    VisitorEffect,
)
from .errors import ApiError, ErrorCode
from .machine import TRANSFER_FLOWS, Event, Flow

__all__ = [
    "KINDS",
    "OUTCOMES",
    "abandon",
    "answer",
    "cancel",
    "complete",
    "ended",
    "held_audience",
    "hubs",
    "is_queued",
    "offer",
    "queue",
    "ring_ends",
    "start",
    "target_leaves",
]

#: The kinds of transfer: the ``mode`` of ``transferCall``.
KINDS = ("blind", "consult")
#: How a transfer ended (``outcome`` of its entry and of ``call.transferred``).
OUTCOMES = ("completed", "refused", "timeout", "failed", "cancelled", "targetLeft", "ended", "abandoned")

_TARGET_ROLE = {"blind": "transferTarget", "consult": "consultAgent"}


def _invalid(msg: str) -> ApiError:
    return ApiError(msg, code=ErrorCode.invalid_state)


def _flow(kind: str) -> Flow:
    return Flow.consultTransfer if kind == "consult" else Flow.blindTransfer


def is_target(call: Call, m: Member) -> bool:
    t = call.transfer
    return t is not None and m.name == t["to"] and m.flow in TRANSFER_FLOWS


def is_queued(call: Call) -> bool:
    """The call waits in a team's queue (or rings an agent of it): it has no agent now."""
    return call.transfer is not None and bool(call.transfer.get("queued"))


def _may_transfer(call: Call, by: str) -> None:
    if by != call.primary:
        raise ApiError("only the call's primary agent transfers it", code=ErrorCode.forbidden)
    if call.phase is not CallPhase.connected:
        raise _invalid("a call is transferred once it is connected")
    if call.transfer is not None:
        raise ApiError("a transfer of this call is already in progress", code=ErrorCode.transfer_in_progress)
    if call.pending is not None or call.three_party:
        raise _invalid("a call is transferred from a two-party call (no third party invited or in it)")


def start(call: Call, by: str, target: str, *, consult: bool, note: str | None) -> list[Effect]:
    """``transferCall``: ``by`` (the primary) hands its two-party call to agent ``target``."""

    if target == by:
        raise ApiError("a call cannot be transferred to its own agent", code=ErrorCode.invalid_field)
    _may_transfer(call, by)
    old = call.member(MemberKind.agent, target)
    if old is not None and old.status in (MemberStatus.invited, MemberStatus.joined):
        raise _invalid(f"{target} is already in this call")
    kind = "consult" if consult else "blind"
    flow = _flow(kind)
    call.transfer = {"kind": kind, "from": by, "to": target, "note": note, "phase": "ringing"}
    m = call._add(MemberKind.agent, target, _TARGET_ROLE[kind], MemberStatus.invited, flow)
    call.pending = m
    fx: list[Effect] = [AgentEffect(by, flow, Event.transfer)]
    fx += call._member_fx(m)
    fx.append(AgentEffect(target, Flow.transferIn, Event.ring))
    if consult:
        fx += [
            VisitorEffect(v.name, CallNotice.held, {"agentName": by}) for v in call.joined(MemberKind.visitor)
        ]
    fx.append(call._start_timer())
    return fx


def queue(call: Call, by: str, team: str, note: str | None) -> list[Effect]:
    """``transferCall`` blind to ``team`` when none of its agents is ready (D50): ``by``
    leaves into after-call work, the call waits in the team's queue with its visitor."""

    _may_transfer(call, by)
    call.transfer = {
        "kind": "blind",
        "from": by,
        "to": None,
        "team": team,
        "note": note,
        "phase": "queued",
        "queued": True,
        "passed": [by],  # the agents it is not offered to (again)
    }
    fx: list[Effect] = [AgentEffect(by, Flow.blindTransfer, Event.queue)]
    fx += call._set(MemberKind.agent, by, MemberStatus.left, "transferred")
    fx += [
        VisitorEffect(v.name, CallNotice.queued, {"teamName": team, "from": by})
        for v in call.joined(MemberKind.visitor)
    ]
    return fx


def offer(call: Call, target: str) -> list[Effect]:
    """The call waiting in the queue rings ``target``, a ready agent of its team."""

    t = call.transfer
    if t is None or not t.get("queued") or t["phase"] != "queued" or call.phase is not CallPhase.connected:
        raise _invalid("the call is not waiting in a queue")
    if target in t["passed"]:
        raise _invalid(f"{target} was offered this call already")
    t["to"], t["phase"] = target, "ringing"
    m = call._add(MemberKind.agent, target, _TARGET_ROLE["blind"], MemberStatus.invited, Flow.blindTransfer)
    call.pending = m
    fx: list[Effect] = call._member_fx(m)
    fx.append(AgentEffect(target, Flow.transferIn, Event.ring))
    fx.append(call._start_timer())
    return fx


def _back_in_queue(call: Call, m: Member) -> list[Effect]:
    """The target the queued call rang did not take it: it waits again, at its place."""
    t = call.transfer
    assert t is not None
    t["passed"].append(m.name)
    t["to"], t["phase"] = None, "queued"
    return []


def abandon(call: Call, visitor: Member | None, reason: str, by: str) -> list[Effect]:
    """The call ends while it waits in the queue: its visitor hung up (``visitor``), or the
    system ended it (the media server lost); a ringing target is withdrawn."""

    fx: list[Effect] = []
    m = call.pending
    if m is not None:
        call.pending = None
        fx += call._set(m.kind, m.name, MemberStatus.cancelled, reason)
        fx.append(AgentEffect(m.name, Flow.transferIn, Event.cancel, reason))
        fx.append(call._stop_timer())
    if visitor is not None:
        fx += call._set(visitor.kind, visitor.name, MemberStatus.left, reason)
    fx += _over(call, "abandoned" if visitor is not None else "ended", tell_visitor=False)
    return fx + call._end(by, reason)


def answer(call: Call, m: Member, accept: bool) -> list[Effect]:
    """The target's ``multipleVideoPickUp`` (``accept``) or ``multipleVideoRefuse``."""

    t = call.transfer
    assert t is not None
    call.pending = None
    fx: list[Effect] = [call._stop_timer()]
    if t.get("queued"):  # a call from the queue: nobody else to tell
        if not accept:
            fx.append(AgentEffect(m.name, Flow.transferIn, Event.refuse))
            fx += call._set(m.kind, m.name, MemberStatus.refused)
            return fx + _back_in_queue(call, m)
        fx.append(AgentEffect(m.name, Flow.transferIn, Event.pickUp))
        fx += call._set(m.kind, m.name, MemberStatus.joined)
        return fx + _hand_over(call, m.name, "completed")
    by, flow = t["from"], _flow(t["kind"])
    if not accept:
        fx.append(AgentEffect(by, flow, Event.refuse))
        fx.append(AgentEffect(m.name, Flow.transferIn, Event.refuse))
        fx += call._set(m.kind, m.name, MemberStatus.refused)
        return fx + _over(call, "refused")
    fx.append(AgentEffect(m.name, Flow.transferIn, Event.pickUp))
    fx += call._set(m.kind, m.name, MemberStatus.joined)
    if t["kind"] == "consult":
        t["phase"] = "consulting"
        fx.append(AgentEffect(by, flow, Event.accept))
        return fx
    fx.append(AgentEffect(by, flow, Event.accept))
    return fx + _hand_over(call, m.name, "completed")


def ring_ends(call: Call, m: Member, event: Event, status: MemberStatus, reason: str) -> list[Effect]:
    """The target's ringing timed out or failed: the call stays with the transferring agent."""

    t = call.transfer
    assert t is not None
    call.pending = None
    queued = bool(t.get("queued"))
    fx: list[Effect] = [] if queued else [AgentEffect(t["from"], _flow(t["kind"]), event, reason)]
    fx += call._set(m.kind, m.name, status, reason)
    fx.append(AgentEffect(m.name, Flow.transferIn, event, reason))
    fx.append(call._stop_timer())
    if queued:
        return fx + _back_in_queue(call, m)
    return fx + _over(call, "timeout" if event is Event.timeout else "failed")


def complete(call: Call, by: str) -> list[Effect]:
    """``completeTransfer``: the consulted target takes the visitor; ``by`` leaves."""

    t = call.transfer
    if t is None or t["from"] != by:
        raise ApiError("no transfer of this agent is in progress", code=ErrorCode.no_transfer)
    if t["kind"] != "consult" or t["phase"] != "consulting":
        raise _invalid("a consult transfer is completed once the target has picked up")
    fx: list[Effect] = [
        AgentEffect(by, Flow.consultTransfer, Event.complete),
        AgentEffect(t["to"], Flow.transferIn, Event.complete),
    ]
    return fx + _hand_over(call, t["to"], "completed")


def cancel(call: Call, by: str, reason: str = "cancelled") -> list[Effect]:
    """``cancelTransfer`` (or the transferring agent hangs up): the transfer is withdrawn,
    the call back as it was before it; a consulted target leaves."""

    t = call.transfer
    if t is None or t["from"] != by or t.get("queued"):  # a queued call is no longer its
        raise ApiError("no transfer of this agent is in progress", code=ErrorCode.no_transfer)
    target = call.members[(MemberKind.agent, t["to"])]
    fx: list[Effect] = [AgentEffect(by, _flow(t["kind"]), Event.cancel, reason)]
    if target.status is MemberStatus.invited:
        call.pending = None
        fx.append(call._stop_timer())
        fx += call._set(target.kind, target.name, MemberStatus.cancelled, reason)
    else:
        fx += call._set(target.kind, target.name, MemberStatus.left, reason)
    fx.append(AgentEffect(target.name, Flow.transferIn, Event.cancel, reason))
    return fx + _over(call, "cancelled")


def target_leaves(call: Call, m: Member, reason: str) -> list[Effect]:
    """The consulted target hung up before the completion: back to the visitor."""

    t = call.transfer
    assert t is not None
    fx: list[Effect] = [
        AgentEffect(t["from"], Flow.consultTransfer, Event.leave),
        AgentEffect(m.name, Flow.transferIn, Event.leave, reason),
    ]
    fx += call._set(m.kind, m.name, MemberStatus.left, reason)
    return fx + _over(call, "targetLeft")


def ended(call: Call) -> list[Effect]:
    """The call ends with a transfer in progress: its entry says so."""
    if call.transfer is None:
        return []
    return _over(call, "ended", tell_visitor=False)


def hubs(call: Call) -> list[str]:
    """The agents whose plugin was the call's hub, in order (hub mode): the first primary,
    then each completed transfer's target. Recording part ``n`` is ``hubs(call)[n - 1]``'s
    (docs/calls.md, "Recording"; D51)."""

    # the first transfer (whatever its outcome) was asked by the first primary
    first = str(call.transfers[0]["from"]) if call.transfers else call.primary
    return [first] + [str(e["to"]) for e in call.transfers if e["outcome"] == "completed"]


def held_audience(
    call: Call, members: Sequence[tuple[str, str]], heard: Mapping[tuple[str, str], frozenset[str]]
) -> dict[tuple[str, str], frozenset[str]]:
    """Who receives each media member's feed (``(kind, name)`` → names; a feed not named
    reaches everyone): ``heard`` (the supervisors', D35), and while a consult holds the
    visitor (D32) no feed reaches a visitor and a visitor's reaches everyone but the
    consulted agent. The SFU mode's subscriptions follow it (the hub mode holds the
    visitor's connection and keeps the pair apart in the hub)."""

    t = call.transfer
    if t is None or t["kind"] != "consult":
        return dict(heard)
    visitor = MemberKind.visitor.value
    everyone = frozenset(name for _, name in members)
    held = frozenset(name for kind, name in members if kind == visitor)
    return {
        owner: heard.get(owner, everyone) - {owner[1]} - ({t["to"]} if owner[0] == visitor else held)
        for owner in members
    }


def _hand_over(call: Call, to: str, outcome: str) -> list[Effect]:
    """The target is the primary agent now; the transferring one leaves the call."""

    t = call.transfer
    assert t is not None
    by = t["from"]
    call.primary = to
    fx: list[Effect] = []
    if call.members[(MemberKind.agent, by)].status is not MemberStatus.left:  # it left when queued
        fx += call._set(MemberKind.agent, by, MemberStatus.left, "transferred")
    for v in call.joined(MemberKind.visitor):
        fx.append(
            VisitorEffect(v.name, CallNotice.transferred, {"agentName": to, "from": by, "kind": t["kind"]})
        )
    return fx + _over(call, outcome, tell_visitor=False)


def _over(call: Call, outcome: str, *, tell_visitor: bool = True) -> list[Effect]:

    t = call.transfer
    assert t is not None
    call.transfer = None
    entry = {"kind": t["kind"], "from": t["from"], "to": t["to"], "note": t["note"], "outcome": outcome}
    if t.get("queued"):
        entry["team"] = t["team"]  # through the team's queue (D50)
    call.transfers.append(entry)
    fx: list[Effect] = [TransferEffect(t["kind"], t["from"], t["to"], t["note"], outcome)]
    if tell_visitor and t["kind"] == "consult":
        fx += [
            VisitorEffect(v.name, CallNotice.resumed, {"agentName": t["from"]})
            for v in call.joined(MemberKind.visitor)
        ]
    return fx
