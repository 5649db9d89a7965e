"""The words of a call (:mod:`kefu.protocol.call`): its phase, members, record and effects.

Pure data: the enums the wire and the database spell, a member's record, and
one frozen dataclass per kind of effect the adapter applies (docs/calls.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Self

from .errors import ErrorCode
from .machine import CALL_FLOWS, Event, Flow

__all__ = [
    "MEDIA_LOST",
    "MEDIA_SERVER_LOST",
    "MEDIA_UNREACHABLE",
    "AgentEffect",
    "CallNotice",
    "CallPhase",
    "CallRecord",
    "Effect",
    "EndEffect",
    "MediaMode",
    "Member",
    "MemberEffect",
    "MemberKind",
    "MemberStatus",
    "TimerEffect",
    "TransferEffect",
    "VisitorEffect",
]


#: The end reason of an agent whose plugin came back without the call's media.
MEDIA_LOST = "agent_media_lost"


class CallPhase(enum.StrEnum):
    ringing = "ringing"  # visitorInvite: the request rings for the agent
    joining = "joining"  # visitorInvite: picked up, waiting for the visitor to join
    calling = "calling"  # callVisitor / callCurrentVisitor: the visitor's invitation rings
    connected = "connected"
    ended = "ended"


class CallNotice(enum.StrEnum):
    """What a ``call`` push tells (``payload.what``, docs/calls.md)."""

    ringing = "ringing"  # the visitor's request rings for the agent
    invited = "invited"  # the visitor (or an agent) is invited
    accepted = "accepted"  # the agent picked up the visitor's request: join
    cancelled = "cancelled"  # the invitation or request was withdrawn
    memberJoined = "memberJoined"
    memberLeft = "memberLeft"
    ended = "ended"
    transferred = "transferred"  # issue 20: the call went to another agent
    held = "held"  # issue 20: the agent put the visitor on hold (a warm transfer's consultation)
    resumed = "resumed"  # issue 20: back from hold
    queued = "queued"  # issue 20 (D50): the call waits in a team's queue, with its place
    update = "update"  # the agent's view of the call changed

    @classmethod
    def of(cls, value: object) -> CallNotice | None:
        """Decode ``payload.what`` (None for a notice this side does not know)."""
        if not isinstance(value, str):
            return None
        try:
            return cls(value)
        except ValueError:
            return None


class MediaMode(enum.StrEnum):
    """How a call's media flows, the ``media`` field of the ``call`` pushes and replies."""

    #: a star around the primary agent's plugin: it holds a peer connection with
    #: every other member and relays (the plugin's :class:`~kefu.plugin.media.RelayCall`)
    hub = "hub"
    #: through the media server (Janus VideoRoom, D22): every member publishes there
    sfu = "sfu"


class MemberKind(enum.StrEnum):
    agent = "agent"
    visitor = "visitor"


class MemberStatus(enum.StrEnum):
    invited = "invited"  # ringing
    joined = "joined"
    left = "left"  # hung up or left after joining
    refused = "refused"
    busy = "busy"
    timeout = "timeout"
    cancelled = "cancelled"  # the invitation was withdrawn
    failed = "failed"


@dataclass
class Member:
    kind: MemberKind
    name: str
    role: str  # "primary", "visitor", "thirdVisitor", "thirdAgent"
    status: MemberStatus
    flow: Flow  # the flow this member's invitation belongs to


@dataclass(frozen=True, slots=True)
class AgentEffect:
    """Agent ``agent`` goes through ``event`` of ``flow`` (the server's state setter)."""

    agent: str
    flow: Flow
    event: Event
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class VisitorEffect:
    """Tell visitor ``visitor`` that ``what`` happened (a push on its socket)."""

    visitor: str
    what: CallNotice
    detail: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberEffect:
    """A member's record changed (the adapter stamps the time and stores it)."""

    kind: MemberKind
    name: str
    role: str
    status: MemberStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TimerEffect:
    """Start (``start=True``) or stop the call's ringing timer of generation ``gen``."""

    gen: int
    start: bool


@dataclass(frozen=True, slots=True)
class EndEffect:
    by: str  # who ended it: a member's name, or "system"
    reason: str


@dataclass(frozen=True, slots=True)
class TransferEffect:
    """A transfer of the call ended with ``outcome`` (issue 20, :mod:`kefu.protocol.transfer`);
    the adapter records it with the time."""

    kind: str  # blind, consult
    from_agent: str
    to_agent: str
    note: str | None
    outcome: str


Effect = AgentEffect | VisitorEffect | MemberEffect | TimerEffect | EndEffect | TransferEffect


#: The end reason of a call whose media could not connect (error code ``media_unreachable``).
MEDIA_UNREACHABLE = ErrorCode.media_unreachable.value

#: The end reason of a call whose media server (SFU mode) died mid-call.
MEDIA_SERVER_LOST = ErrorCode.media_server_lost.value


class CallRecord:
    """What a call holds: its flow, phase, members, pending invitation and timer generation;
    stored as JSON (:meth:`to_dict`) so any server node can carry it on. :class:`~kefu.protocol.call.Call`
    adds what happens to it."""

    def __init__(self, call_id: str, flow: Flow, primary: str, visitor: str) -> None:
        if flow not in CALL_FLOWS or flow in (Flow.agentInvite, Flow.transferIn):
            raise ValueError(f"a call starts by visitorInvite, callVisitor or callCurrentVisitor, not {flow}")
        self.id = call_id
        self.flow: Flow = flow
        self.primary = primary
        self.phase = CallPhase.ringing if flow is Flow.visitorInvite else CallPhase.calling
        self.members: dict[tuple[MemberKind, str], Member] = {}
        self.pending: Member | None = None  # the third-party invitation in progress
        self.timer_gen = 0
        self.ended_by: str | None = None
        self.end_reason: str | None = None
        self.transfer: dict[str, Any] | None = None  # the transfer in progress (issue 20)
        self.transfers: list[dict[str, Any]] = []  # the transfers that ended, in order
        self.supervisors: dict[str, str] = {}  # supervisor → its mode (kefu.protocol.supervise)
        self._add(MemberKind.agent, primary, "primary", MemberStatus.joined, flow)
        self._add(MemberKind.visitor, visitor, "visitor", MemberStatus.invited, flow)

    # --- persistence: a call is stored as JSON so any server node can carry it on

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot; :meth:`from_dict` restores it exactly."""
        return {
            "id": self.id,
            "flow": self.flow.value,
            "primary": self.primary,
            "phase": self.phase.value,
            "timerGen": self.timer_gen,
            "endedBy": self.ended_by,
            "endReason": self.end_reason,
            "pending": [self.pending.kind.value, self.pending.name] if self.pending else None,
            "transfer": self.transfer,
            "transfers": self.transfers,
            "supervisors": dict(self.supervisors),
            "members": [
                {
                    "kind": m.kind.value,
                    "name": m.name,
                    "role": m.role,
                    "status": m.status.value,
                    "flow": m.flow.value,
                }
                for m in self.members.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        call = cls.__new__(cls)
        call.id = data["id"]
        call.flow = Flow(data["flow"])
        call.primary = data["primary"]
        call.phase = CallPhase(data["phase"])
        call.timer_gen = data["timerGen"]
        call.ended_by = data["endedBy"]
        call.end_reason = data["endReason"]
        call.transfer = data.get("transfer")  # absent from snapshots older than issue 20
        call.transfers = list(data.get("transfers", ()))
        call.supervisors = dict(data.get("supervisors") or {})
        call.members = {}
        for m in data["members"]:
            member = Member(
                MemberKind(m["kind"]), m["name"], m["role"], MemberStatus(m["status"]), Flow(m["flow"])
            )
            call.members[(member.kind, member.name)] = member
        pending = data["pending"]
        call.pending = call.members[(MemberKind(pending[0]), pending[1])] if pending else None
        return call

    # --- queries

    @property
    def ended(self) -> bool:
        return self.phase is CallPhase.ended

    @property
    def visitor(self) -> str:
        """The first visitor (the one the call was made with)."""
        return next(m.name for m in self.members.values() if m.role == "visitor")

    def joined(self, kind: MemberKind | None = None) -> list[Member]:
        return [
            m
            for m in self.members.values()
            if m.status is MemberStatus.joined and (kind is None or m.kind is kind)
        ]

    def member(self, kind: MemberKind, name: str) -> Member | None:
        return self.members.get((kind, name))

    @property
    def three_party(self) -> bool:
        return len(self.joined()) >= 3

    def involves(self, kind: MemberKind, name: str) -> bool:
        """Is this member in the call, or invited and ringing?"""
        m = self.members.get((kind, name))
        return m is not None and m.status in (MemberStatus.invited, MemberStatus.joined)

    def _add(self, kind: MemberKind, name: str, role: str, status: MemberStatus, flow: Flow) -> Member:
        m = Member(kind, name, role, status, flow)
        self.members[(kind, name)] = m
        return m
