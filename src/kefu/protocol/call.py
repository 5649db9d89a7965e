"""The life of one call (meeting), pure: who is in it, who rings, who hangs up.

Theory of operation
-------------------
A :class:`Call` is created by one of the three flows that start a call
(SPEC §5.1): the visitor asked for video (``visitorInvite``), the agent called
a visitor out (``callVisitor``) or the visitor of its current session
(``callCurrentVisitor``). Once connected, the primary agent may bring in a
third member (``inviteThirdVisitor`` / ``inviteThirdAgent``); at most three
members are connected at once and one invitation is pending at a time.

Every method takes what happened and returns the *effects*: the state-machine
events each agent must go through (:class:`AgentEffect`, applied by the
server's one state setter, which turns them into 6-digit codes and v1204
callbacks), what each visitor must be told (:class:`VisitorEffect`), the
member records that changed (:class:`MemberEffect`), the ringing timer to
start or stop (:class:`TimerEffect`) and the end of the call
(:class:`EndEffect`). The object never reads the clock: the adapter starts
timers and feeds :meth:`Call.timeout` back in with the timer's generation, so
a late timer is ignored. A request that the call does not allow raises
:class:`~kefu.protocol.errors.ApiError` with ``invalid_state`` and changes
nothing.

Cases the spec leaves open (SPEC §6) are decided here and listed, with the
state codes they lead to, in ``docs/states.md``:

- a visitor leaving a three-party call with two visitors leaves the call to
  the other two (006005); the visitor leaving a call with two agents ends it
  for both agents (005xxx / 005009);
- the primary agent hanging up ends the call for everyone, withdrawing a
  pending invitation;
- the invited third agent leaving returns the call to two parties (006010 for
  the primary, 005010 with ``exitSuccess`` for itself);
- an agent whose plugin comes back without the call's media (a new plugin
  process after a crash or a ``kill -9``: the peer connections died with the
  old one) leaves the call at once with reason :data:`MEDIA_LOST`
  (:meth:`Call.media_lost`): the primary's call ends for everyone, an invited
  third agent's goes on without it. A call with no media is never left
  running.
"""

from __future__ import annotations

from .call_effects import (
    MEDIA_LOST,
    MEDIA_SERVER_LOST,
    MEDIA_UNREACHABLE,
    AgentEffect,
    CallNotice,
    CallPhase,
    CallRecord,
    Effect,
    EndEffect,
    MediaMode,
    Member,
    MemberEffect,
    MemberKind,
    MemberStatus,
    TimerEffect,
    TransferEffect,
    VisitorEffect,
)
from .errors import ApiError, ErrorCode
from .machine import TRANSFER_FLOWS, Event, Flow

__all__ = [
    "MEDIA_LOST",
    "MEDIA_SERVER_LOST",
    "MEDIA_UNREACHABLE",
    "AgentEffect",
    "Call",
    "CallNotice",
    "CallPhase",
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


_FINAL_BEFORE_JOIN = {MemberStatus.refused, MemberStatus.busy, MemberStatus.timeout}


def _invalid(msg: str) -> ApiError:
    return ApiError(msg, code=ErrorCode.invalid_state)


class Call(CallRecord):
    """One call. Create it with :meth:`visitor_request` or :meth:`call_out`."""

    # --- construction

    @classmethod
    def visitor_request(cls, call_id: str, agent: str, visitor: str) -> tuple[Call, list[Effect]]:
        """The visitor asked for video in its session with ``agent``: it rings (004001)."""
        call = cls(call_id, Flow.visitorInvite, agent, visitor)
        fx: list[Effect] = [
            AgentEffect(agent, Flow.visitorInvite, Event.ring),
            *call._member_fx(),
            VisitorEffect(visitor, CallNotice.ringing, {"agentName": agent}),
            call._start_timer(),
        ]
        return call, fx

    @classmethod
    def call_out(
        cls, call_id: str, agent: str, visitor: str, *, current: bool = False
    ) -> tuple[Call, list[Effect]]:
        """The agent calls a visitor (``callbackToVisitor`` or ``videoInviteCurrentVisitor``)."""
        flow = Flow.callCurrentVisitor if current else Flow.callVisitor
        call = cls(call_id, flow, agent, visitor)
        fx: list[Effect] = [
            AgentEffect(agent, flow, Event.invite),
            *call._member_fx(),
            VisitorEffect(visitor, CallNotice.invited, {"agentName": agent, "role": "visitor"}),
            call._start_timer(),
        ]
        return call, fx

    # --- what happens

    def pick_up(self, agent: str) -> list[Effect]:
        """``videoPickUp``: the primary agent answers the visitor's request."""
        if agent != self.primary or self.phase is not CallPhase.ringing:
            raise _invalid("no video request is ringing for this agent")
        self.phase = CallPhase.joining
        return [
            AgentEffect(agent, Flow.visitorInvite, Event.pickUp),
            VisitorEffect(self.visitor, CallNotice.accepted, {"agentName": agent}),
            self._start_timer(),
        ]

    def visitor_join(self, visitor: str) -> list[Effect]:
        """The visitor joined the meeting the agent created (006013)."""
        if self.phase is not CallPhase.joining or visitor != self.visitor:
            raise _invalid("there is no meeting waiting for this visitor")
        self.phase = CallPhase.connected
        fx: list[Effect] = [AgentEffect(self.primary, Flow.visitorInvite, Event.joined)]
        fx += self._set(MemberKind.visitor, visitor, MemberStatus.joined)
        fx.append(self._stop_timer())
        return fx

    def visitor_answer(self, visitor: str, answer: str) -> list[Effect]:
        """An invited visitor answers: ``accept``, ``refuse`` or ``busy``."""
        if answer not in ("accept", "refuse", "busy"):
            raise ApiError(f"unknown answer {answer!r}", code=ErrorCode.invalid_field)
        m = self.members.get((MemberKind.visitor, visitor))
        if m is None or m.status is not MemberStatus.invited or self.phase is CallPhase.ended:
            raise _invalid("there is no invitation ringing for this visitor")
        if self.phase is CallPhase.calling:
            return self._first_answer(m, answer)
        if self.pending is m:
            return self._third_answer(m, answer)
        raise _invalid("this visitor's invitation is not answered this way")

    def agent_answer(self, agent: str, answer: str) -> list[Effect]:
        """The invited third agent answers: ``accept`` (``multipleVideoPickUp``) or ``refuse``."""
        if answer not in ("accept", "refuse"):
            raise ApiError(f"unknown answer {answer!r}", code=ErrorCode.invalid_field)
        m = self.pending
        if m is None or m.kind is not MemberKind.agent or m.name != agent:
            raise _invalid("no invitation is ringing for this agent")
        if m.flow in TRANSFER_FLOWS:
            from . import transfer  # it builds on this module: imported when used

            return transfer.answer(self, m, answer == "accept")
        return self._third_answer(m, answer)

    def invite_third(self, kind: MemberKind, name: str) -> list[Effect]:
        """``videoInviteVisitor`` / ``videoInviteAgent`` from a two-party call."""
        if self.phase is not CallPhase.connected:
            raise _invalid("a third party is invited from a connected two-party call")
        if self.pending is not None or self.transfer is not None:
            raise _invalid("an invitation or a transfer is already in progress")
        if self.three_party:
            raise _invalid("the call has three members already")
        if self.involves(kind, name):
            raise _invalid(f"{name} is already in this call")
        flow = Flow.inviteThirdVisitor if kind is MemberKind.visitor else Flow.inviteThirdAgent
        role = "thirdVisitor" if kind is MemberKind.visitor else "thirdAgent"
        m = self._add(kind, name, role, MemberStatus.invited, flow)
        self.pending = m
        fx: list[Effect] = [AgentEffect(self.primary, flow, Event.invite)]
        fx += self._member_fx(m)
        if kind is MemberKind.visitor:
            fx.append(VisitorEffect(name, CallNotice.invited, {"agentName": self.primary, "role": role}))
        else:
            fx.append(AgentEffect(name, Flow.agentInvite, Event.ring))
        fx.append(self._start_timer())
        return fx

    def media_unreachable(self, kind: MemberKind, name: str) -> list[Effect]:
        """The media with member ``name`` could not connect (reliability F15): it
        leaves with the reason ``media_unreachable``, ended by ``system``. A
        two-party call ends for everyone; in a three-party call the member
        leaves and the others go on; a visitor that leaves so is told (``ended``); the
        primary agent's own media failing ends the call."""
        m = self.members.get((kind, name))
        if m is None or self.phase is not CallPhase.connected or m.status is not MemberStatus.joined:
            raise _invalid(f"{name} is not connected in this call")
        fx = self.hangup(kind, name, MEDIA_UNREACHABLE, by="system")
        if kind is MemberKind.visitor:  # it left (status set) before the end told the joined ones
            fx.append(VisitorEffect(name, CallNotice.ended, {"by": "system", "reason": MEDIA_UNREACHABLE}))
        return fx

    def hangup(
        self, kind: MemberKind, name: str, reason: str = "hangup", *, by: str | None = None
    ) -> list[Effect]:
        """A member hangs up (``videoDisconnect``, the visitor's hang-up, a lost connection).
        ``by``: who the record says ended the call (default: that member)."""
        m = self.members.get((kind, name))
        if m is None or self.phase is CallPhase.ended:
            raise _invalid("not in this call")
        if m.status is MemberStatus.invited:
            # hanging up on a ringing invitation is refusing it
            if kind is MemberKind.visitor:
                if self.phase in (CallPhase.ringing, CallPhase.joining):
                    return self._visitor_withdraws(reason)
                return self.visitor_answer(name, "refuse")
            return self.agent_answer(name, "refuse")
        if m.status is not MemberStatus.joined:
            raise _invalid("already left this call")
        if kind is MemberKind.visitor and self.transfer is not None and self.transfer.get("queued"):
            from . import transfer  # it builds on this module: imported when used

            return transfer.abandon(self, m, reason, by or name)  # it hung up waiting (D50)
        if kind is MemberKind.agent and name == self.primary:
            return self._primary_hangs_up(reason, by)
        if kind is MemberKind.agent:
            return self._third_agent_leaves(m, reason)
        return self._visitor_leaves(m, reason, by)

    def media_lost(self, agent: str) -> list[Effect]:
        """The plugin of ``agent`` logged in again without this call's media.

        The media of a connected call lives in the plugins (the primary's is
        the hub): a new plugin process has none, and the call would go on
        silent. The agent leaves with :data:`MEDIA_LOST`, as a hang-up: the
        primary ends the call for everyone (its 005xxx, every visitor told
        ``ended``), a third agent leaves it to the others. An agent not joined
        in a connected call had no media to lose: nothing happens."""
        m = self.members.get((MemberKind.agent, agent))
        if m is None or m.status is not MemberStatus.joined or self.phase is not CallPhase.connected:
            return []
        return self.hangup(MemberKind.agent, agent, MEDIA_LOST)

    def media_server_lost(self) -> list[Effect]:
        """The media server (Janus, SFU mode) carrying the call's media is gone: the call
        ends for everyone with :data:`MEDIA_SERVER_LOST`, ended by ``system``; a call not
        connected yet fails as an unanswered one. An ended call changes nothing."""
        if self.phase is CallPhase.ended:
            return []
        if self.phase is not CallPhase.connected:
            return self._unanswered(Event.error, MemberStatus.failed, MEDIA_SERVER_LOST)
        if self.transfer is not None and self.transfer.get("queued"):
            from . import transfer  # it builds on this module: imported when used

            return transfer.abandon(self, None, MEDIA_SERVER_LOST, "system")
        return self.hangup(MemberKind.agent, self.primary, MEDIA_SERVER_LOST, by="system")

    def timeout(self, gen: int) -> list[Effect]:
        """The ringing timer of generation ``gen`` fired. A stale timer changes nothing."""
        if gen != self.timer_gen or self.phase is CallPhase.ended:
            return []
        if self.phase is not CallPhase.connected:
            # SPEC §5.2 001001 / 002002 / 002007: not picked up, not joined, not answered
            return self._unanswered(Event.timeout, MemberStatus.timeout, "timeout")
        if self.pending is None:
            return []
        return self._pending_ends(Event.timeout, MemberStatus.timeout, "timeout")

    def fail(self, reason: str) -> list[Effect]:
        """The invitation in progress failed (e.g. the invitee's connection is gone)."""
        if self.phase is CallPhase.ended:
            raise _invalid("the call is over")
        if self.phase is not CallPhase.connected:
            return self._unanswered(Event.error, MemberStatus.failed, reason)
        if self.pending is None:
            raise _invalid("nothing is ringing in this call")
        return self._pending_ends(Event.error, MemberStatus.failed, reason)

    # --- the cases

    def _unanswered(self, event: Event, status: MemberStatus, reason: str) -> list[Effect]:
        flow = self.flow if self.phase is CallPhase.calling else Flow.visitorInvite
        fx: list[Effect] = [AgentEffect(self.primary, flow, event, reason)]
        fx += self._set(MemberKind.visitor, self.visitor, status, reason)
        fx.append(VisitorEffect(self.visitor, CallNotice.cancelled, {"reason": reason}))
        return [*fx, self._stop_timer(), *self._end("system", reason)]

    def _pending_ends(self, event: Event, status: MemberStatus, reason: str) -> list[Effect]:
        m = self.pending
        assert m is not None
        if m.flow in TRANSFER_FLOWS:
            from . import transfer  # it builds on this module: imported when used

            return transfer.ring_ends(self, m, event, status, reason)
        self.pending = None
        fx: list[Effect] = [AgentEffect(self.primary, m.flow, event, reason)]
        fx += self._set(m.kind, m.name, status, reason)
        if m.kind is MemberKind.agent:
            fx.append(AgentEffect(m.name, Flow.agentInvite, event, reason))
        else:
            fx.append(VisitorEffect(m.name, CallNotice.cancelled, {"reason": reason}))
        return [*fx, self._stop_timer()]

    def _first_answer(self, m: Member, answer: str) -> list[Effect]:
        if answer == "accept":
            self.phase = CallPhase.connected
            fx: list[Effect] = [AgentEffect(self.primary, self.flow, Event.accept)]
            fx += self._set(m.kind, m.name, MemberStatus.joined)
            return [*fx, self._stop_timer()]
        status = MemberStatus.refused if answer == "refuse" else MemberStatus.busy
        event = Event.refuse if answer == "refuse" else Event.busy
        fx = [AgentEffect(self.primary, self.flow, event)]
        fx += self._set(m.kind, m.name, status)
        return [*fx, self._stop_timer(), *self._end(m.name, answer)]

    def _third_answer(self, m: Member, answer: str) -> list[Effect]:
        self.pending = None
        fx: list[Effect] = [self._stop_timer()]
        if answer == "accept":
            fx.append(AgentEffect(self.primary, m.flow, Event.accept))
            if m.kind is MemberKind.agent:
                fx.append(AgentEffect(m.name, Flow.agentInvite, Event.pickUp))
            fx += self._set(m.kind, m.name, MemberStatus.joined)
            for other in self.joined(MemberKind.visitor):
                if other is not m:
                    fx.append(
                        VisitorEffect(
                            other.name, CallNotice.memberJoined, {"kind": m.kind.value, "name": m.name}
                        )
                    )
            return fx
        status = MemberStatus.refused if answer == "refuse" else MemberStatus.busy
        fx.append(AgentEffect(self.primary, m.flow, Event.refuse if answer == "refuse" else Event.busy))
        if m.kind is MemberKind.agent:
            fx.append(AgentEffect(m.name, Flow.agentInvite, Event.refuse))
        fx += self._set(m.kind, m.name, status)
        return fx

    def _visitor_withdraws(self, reason: str) -> list[Effect]:
        fx: list[Effect] = [AgentEffect(self.primary, Flow.visitorInvite, Event.cancel, reason)]
        fx += self._set(MemberKind.visitor, self.visitor, MemberStatus.cancelled, reason)
        return [*fx, self._stop_timer(), *self._end(self.visitor, reason)]

    def _withdraw_pending(self) -> list[Effect]:
        m = self.pending
        if m is None:
            return []
        self.pending = None
        fx = self._set(m.kind, m.name, MemberStatus.cancelled, "call ended")
        if m.kind is MemberKind.agent:
            fx.append(AgentEffect(m.name, _side_flow(m), Event.cancel))
        else:
            fx.append(VisitorEffect(m.name, CallNotice.cancelled, {"reason": "call ended"}))
        return fx

    def _primary_hangs_up(self, reason: str, by: str | None = None) -> list[Effect]:
        if self.phase in (CallPhase.ringing, CallPhase.joining):
            fx: list[Effect] = [AgentEffect(self.primary, Flow.visitorInvite, Event.agentHangup, reason)]
            fx += self._set(MemberKind.visitor, self.visitor, MemberStatus.cancelled, "declined")
            fx.append(VisitorEffect(self.visitor, CallNotice.cancelled, {"reason": "declined"}))
            return [*fx, self._stop_timer(), *self._end(self.primary, reason)]
        if self.phase is CallPhase.calling:
            fx = [AgentEffect(self.primary, self.flow, Event.agentHangup, reason)]
            fx += self._set(MemberKind.visitor, self.visitor, MemberStatus.cancelled, "agent hung up")
            fx.append(VisitorEffect(self.visitor, CallNotice.cancelled, {"reason": "agent hung up"}))
            return [*fx, self._stop_timer(), *self._end(self.primary, reason)]
        # connected: the meeting ends for everyone (SPEC §6 decision); a transfer in
        # progress is withdrawn first (issue 20), the call as it was before it
        if self.transfer is not None:
            from . import transfer  # it builds on this module: imported when used

            pre = transfer.cancel(self, self.primary, "call ended")
            return pre + self._primary_hangs_up(reason, by)
        if self.pending is not None:
            flow = self.pending.flow
        elif self.three_party:
            flow = next(m.flow for m in self.joined() if m.role.startswith("third"))
        else:
            flow = self._primary_flow()
        fx = [AgentEffect(self.primary, flow, Event.agentHangup, reason)]
        fx += self._withdraw_pending()
        for m in self.joined(MemberKind.agent):
            if m.name != self.primary:
                fx.append(AgentEffect(m.name, _side_flow(m), Event.agentHangup, reason))
        return [*fx, self._stop_timer(), *self._end(by or self.primary, reason)]

    def _third_agent_leaves(self, m: Member, reason: str) -> list[Effect]:
        if m.flow in TRANSFER_FLOWS:  # the consulted agent hangs up (issue 20)
            from . import transfer  # it builds on this module: imported when used

            return transfer.target_leaves(self, m, reason)
        fx: list[Effect] = [
            AgentEffect(self.primary, Flow.inviteThirdAgent, Event.leave),
            AgentEffect(m.name, Flow.agentInvite, Event.leave, reason),
        ]
        fx += self._set(m.kind, m.name, MemberStatus.left, reason)
        for v in self.joined(MemberKind.visitor):
            fx.append(VisitorEffect(v.name, CallNotice.memberLeft, {"kind": "agent", "name": m.name}))
        return fx

    def _visitor_leaves(self, m: Member, reason: str, by: str | None = None) -> list[Effect]:
        visitors = self.joined(MemberKind.visitor)
        if len(visitors) >= 2:
            # SPEC §6 decision: 006005; the call goes on with the other visitor
            fx: list[Effect] = [
                AgentEffect(self.primary, Flow.inviteThirdVisitor, Event.visitorHangup, reason)
            ]
            fx += self._set(m.kind, m.name, MemberStatus.left, reason)
            for v in self.joined(MemberKind.visitor):
                fx.append(VisitorEffect(v.name, CallNotice.memberLeft, {"kind": "visitor", "name": m.name}))
            return fx
        # the last visitor left: the call ends for every agent
        fx = [AgentEffect(self.primary, self._primary_flow(), Event.visitorHangup, reason)]
        fx += self._withdraw_pending()
        fx += self._set(m.kind, m.name, MemberStatus.left, reason)
        for a in self.joined(MemberKind.agent):
            if a.name != self.primary:
                fx.append(AgentEffect(a.name, _side_flow(a), Event.visitorHangup, reason))
        return [*fx, self._stop_timer(), *self._end(by or m.name, reason)]

    # --- helpers

    def _member_fx(self, only: Member | None = None) -> list[Effect]:
        members = [only] if only is not None else list(self.members.values())
        return [MemberEffect(m.kind, m.name, m.role, m.status) for m in members]

    def _set(
        self, kind: MemberKind, name: str, status: MemberStatus, reason: str | None = None
    ) -> list[Effect]:
        m = self.members[(kind, name)]
        m.status = status
        return [MemberEffect(kind, name, m.role, status, reason)]

    def _start_timer(self) -> TimerEffect:
        self.timer_gen += 1
        return TimerEffect(self.timer_gen, True)

    def _stop_timer(self) -> TimerEffect:
        return TimerEffect(self.timer_gen, False)

    def _primary_flow(self) -> Flow:
        """The flow by which the primary agent is in the call: the call's own, or
        ``transferIn`` for an agent the call was transferred to (issue 20)."""
        m = self.members[(MemberKind.agent, self.primary)]
        return Flow.transferIn if m.flow in TRANSFER_FLOWS else m.flow

    def _end(self, by: str, reason: str) -> list[Effect]:
        from . import transfer  # it builds on this module: imported when used

        self.phase = CallPhase.ended
        self.ended_by = by
        self.end_reason = reason
        fx: list[Effect] = transfer.ended(self)
        for m in self.members.values():
            if m.status is not MemberStatus.joined:
                continue
            if m.kind is MemberKind.visitor:
                fx.append(VisitorEffect(m.name, CallNotice.ended, {"by": by, "reason": reason}))
            m.status = MemberStatus.left
            fx.append(MemberEffect(m.kind, m.name, m.role, MemberStatus.left, reason))
        fx.append(EndEffect(by, reason))
        return fx


def _side_flow(m: Member) -> Flow:
    """The flow in which an agent member other than the primary goes through events: an
    invited third agent's ``agentInvite``, a transfer's target's ``transferIn``."""
    return Flow.transferIn if m.flow in TRANSFER_FLOWS else Flow.agentInvite
