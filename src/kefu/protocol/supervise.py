"""A supervisor helping in a call (issue 20): monitor, whisper, barge, leave. Pure.

Theory of operation
-------------------
A supervisor is not a member of the call (:class:`~kefu.protocol.call.Call`'s
``members``): it never counts as a party (a three-party call stays one with a
supervisor in it), the state machine of its agent account does not move, and
no flow of SPEC §5 names it. The call keeps ``supervisors``: each supervisor's
**mode**:

- ``monitor``: it receives every member's audio and video; nobody receives its
  audio (its plugin sends none) or video (it never sends any);
- ``whisper``: the call's primary agent receives its audio, nobody else;
- ``barge``: every member receives its audio; the visitors are told as of a
  member joining (``memberJoined`` with ``role: "supervisor"``), and told
  ``memberLeft`` when it goes back to monitor or whisper, or leaves.

The visitors are never told of a supervisor in monitor or whisper (decision
D33). A supervisor changes mode in place (no re-join: its media connection
stays, only what it sends and who receives it changes) and leaves; the call's
end ends every supervisor's part. Each change is a :class:`SupervisorEffect`
that the adapter records (who, mode, when), pushes to the call's agents and
the supervisor, and turns into an integration event.

:func:`audience` says who receives a supervisor's audio in its mode; both
media paths follow it (the primary agent's hub, the SFU's subscriptions).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .call import Call, CallNotice, CallPhase, Effect, MemberKind, VisitorEffect
from .errors import ApiError, ErrorCode

__all__ = [
    "SUPERVISOR_ROLE",
    "SupervisorEffect",
    "SupervisorMode",
    "audience",
    "audience_of",
    "end_supervision",
    "leave",
    "media_members",
    "supervise",
]

#: The role a barging supervisor has in the visitors' ``memberJoined``.
SUPERVISOR_ROLE = "supervisor"


class SupervisorMode(enum.StrEnum):
    monitor = "monitor"
    whisper = "whisper"
    barge = "barge"


@dataclass(frozen=True, slots=True)
class SupervisorEffect:
    """Supervisor ``name`` is now in ``mode`` (``None``: it left) after ``old`` (``None``: it joined)."""

    name: str
    mode: SupervisorMode | None
    old: SupervisorMode | None
    reason: str | None = None


def _mode(call: Call, name: str) -> SupervisorMode | None:
    mode = call.supervisors.get(name)
    return SupervisorMode(mode) if mode is not None else None


def supervise(call: Call, name: str, mode: SupervisorMode) -> list[Effect | SupervisorEffect]:
    """``name`` starts helping in ``mode``, or switches to it."""
    if call.phase is CallPhase.ended:
        raise ApiError("the call is over", code=ErrorCode.no_such_call)
    if call.phase is not CallPhase.connected:
        raise ApiError("the call is not connected yet", code=ErrorCode.invalid_state)
    if call.involves(MemberKind.agent, name):
        raise ApiError("you are a member of this call", code=ErrorCode.invalid_state)
    old = _mode(call, name)
    if old is mode:
        raise ApiError(f"already in {mode.value} in this call", code=ErrorCode.invalid_state)
    call.supervisors[name] = mode.value
    fx: list[Effect | SupervisorEffect] = [SupervisorEffect(name, mode, old)]
    if mode is SupervisorMode.barge:
        fx += _tell_visitors(call, CallNotice.memberJoined, name)
    elif old is SupervisorMode.barge:
        fx += _tell_visitors(call, CallNotice.memberLeft, name)
    return fx


def leave(call: Call, name: str, reason: str = "left") -> list[Effect | SupervisorEffect]:
    """``name`` stops helping in the call (``leaveMonitor``, or its connection is gone)."""
    old = _mode(call, name)
    if old is None:
        raise ApiError("you are not helping in this call", code=ErrorCode.not_in_call)
    del call.supervisors[name]
    fx: list[Effect | SupervisorEffect] = [SupervisorEffect(name, None, old, reason)]
    if old is SupervisorMode.barge and not call.ended:
        fx += _tell_visitors(call, CallNotice.memberLeft, name)
    return fx


def end_supervision(call: Call) -> list[Effect | SupervisorEffect]:
    """The call ended: every supervisor's part ends with it (the visitors heard ``ended``)."""
    if not call.ended:
        return []
    fx: list[Effect | SupervisorEffect] = []
    for name in list(call.supervisors):
        fx += leave(call, name, call.end_reason or "call ended")
    return fx


def audience(call: Call, name: str) -> frozenset[str]:
    """Who receives supervisor ``name``'s audio in the call."""
    heard = audience_of(
        call.supervisors.get(name), call.primary, [m.name for m in call.joined()], call.supervisors
    )
    return heard - {name}


def audience_of(
    mode: str | None, primary: str, joined: Iterable[str], supervisors: Iterable[str]
) -> frozenset[str]:
    """Who receives a supervisor's audio in ``mode``: nobody (monitor), the primary agent
    (whisper), every joined member and every supervisor (barge; each drops itself)."""
    if mode == SupervisorMode.whisper.value:
        return frozenset({primary})
    if mode == SupervisorMode.barge.value:
        return frozenset(joined) | frozenset(supervisors)
    return frozenset()


def media_members(call: Call) -> list[tuple[str, str]]:
    """The members of the call's media: the joined members, then the supervisors (as agents)."""
    joined = [(m.kind.value, m.name) for m in call.joined()]
    return joined + [(MemberKind.agent.value, s) for s in call.supervisors]


def _tell_visitors(call: Call, what: CallNotice, name: str) -> list[Effect | SupervisorEffect]:
    detail: dict[str, str | None] = {"kind": MemberKind.agent.value, "name": name, "role": SUPERVISOR_ROLE}
    return [VisitorEffect(v.name, what, detail) for v in call.joined(MemberKind.visitor)]
