"""The agent state machine, as one transition table (SPEC §5).

Theory of operation
-------------------
An agent is always in one state code (:class:`~kefu.protocol.codes.Code`).
Things happen to it as *events* within a *flow*: the six call flows of
SPEC §5.1 plus ``agent``, the moves the spec leaves out (log in, log out,
ready, not ready, wrap-up timeout; SPEC §5.3.6). The table
:data:`TRANSITIONS` maps ``(top-level state, flow, event)`` to the next code;
the next top-level state is that code's first three digits. A key missing
from the table is the error: :func:`process` raises
:class:`~kefu.protocol.errors.InvalidTransition` naming the state and the
event, and the state is unchanged (it is a frozen value).

Beside the code, :class:`AgentState` remembers what the table needs to
choose between rows that share a top-level state: the flow by which the agent
entered its call (``call_flow``), the third-party flow in progress
(``third_flow``) and whether a visitor's ringing request has been picked up.
A few rows are only allowed in such a context; :func:`process` checks it.

Each row also names the v1204 callback (``sub_mark``) that the code is
reported to, so that one message feeds both calling conventions (DESIGN §4).
The machine never reads the clock and does no I/O: timeouts arrive as events.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .codes import Code, TopState
from .errors import InvalidTransition

__all__ = [
    "API_OF_FLOW",
    "CALL_FLOWS",
    "INITIAL",
    "THIRD_FLOWS",
    "TRANSFER_FLOWS",
    "TRANSITIONS",
    "AgentState",
    "Event",
    "Flow",
    "Transition",
    "allowed",
    "process",
    "transitions_to",
]


class Flow(enum.StrEnum):
    """The flows named in the codes (SPEC §5.1), and ``agent`` (an addition)."""

    agent = "agent"
    visitorInvite = "visitorInvite"
    agentInvite = "agentInvite"
    callVisitor = "callVisitor"
    callCurrentVisitor = "callCurrentVisitor"
    inviteThirdVisitor = "inviteThirdVisitor"
    inviteThirdAgent = "inviteThirdAgent"
    blindTransfer = "blindTransfer"  # addition (issue 20): this agent hands its call to another
    consultTransfer = "consultTransfer"  # addition (issue 20): this agent consults, then hands over
    transferIn = "transferIn"  # addition (issue 20): a call transferred to this agent


class Event(enum.StrEnum):
    """What can happen to an agent within a flow."""

    login = "login"  # logged in, not ready
    loginReady = "loginReady"  # logged in, server configured to make agents ready
    logout = "logout"
    setReady = "setReady"
    setNotReady = "setNotReady"
    wrapUpTimeout = "wrapUpTimeout"
    ring = "ring"  # a request or an invitation rings for this agent
    pickUp = "pickUp"  # this agent answers it
    joined = "joined"  # the visitor joined the meeting the agent created
    invite = "invite"  # this agent's invitation was sent
    accept = "accept"  # the invitee accepted
    refuse = "refuse"  # the invitee (or, in agentInvite, this agent) refused
    busy = "busy"  # the invitee is busy
    timeout = "timeout"  # nobody answered within the ringing timeout
    error = "error"  # the invitation or the call failed
    cancel = "cancel"  # the other side withdrew before an answer
    visitorHangup = "visitorHangup"
    agentHangup = "agentHangup"  # the primary agent hung up
    leave = "leave"  # the invited third agent left (or the consulted agent, issue 20)
    transfer = "transfer"  # this agent asked to transfer its call (issue 20)
    complete = "complete"  # the consult transfer completed (issue 20)
    queue = "queue"  # this agent's call was put in a team's queue (issue 20, D50)


#: Flows by which an agent enters a call.
CALL_FLOWS = frozenset(
    {Flow.visitorInvite, Flow.agentInvite, Flow.callVisitor, Flow.callCurrentVisitor, Flow.transferIn}
)
#: Flows that bring a third member into a two-party call.
THIRD_FLOWS = frozenset({Flow.inviteThirdVisitor, Flow.inviteThirdAgent})
#: Flows by which the agent of a two-party call hands it to another agent (issue 20).
TRANSFER_FLOWS = frozenset({Flow.blindTransfer, Flow.consultTransfer})

#: The SDK API (``mark``) whose callbacks report each flow (SPEC §4.3).
API_OF_FLOW: dict[Flow, str] = {
    Flow.agent: "setAgentState",
    Flow.visitorInvite: "videoPickUp",
    Flow.agentInvite: "multipleVideoPickUp",
    Flow.callVisitor: "callbackToVisitor",
    Flow.callCurrentVisitor: "videoInviteCurrentVisitor",
    Flow.inviteThirdVisitor: "videoInviteVisitor",
    Flow.inviteThirdAgent: "videoInviteAgent",
    Flow.blindTransfer: "transferCall",
    Flow.consultTransfer: "transferCall",
    Flow.transferIn: "multipleVideoPickUp",
}


@dataclass(frozen=True, slots=True)
class AgentState:
    """One agent's state: the code, and the call context the table needs."""

    code: Code = Code.notLogin
    call_flow: Flow | None = None
    third_flow: Flow | None = None
    picked_up: bool = False

    @property
    def top(self) -> TopState:
        return self.code.top


INITIAL = AgentState()


@dataclass(frozen=True, slots=True)
class Transition:
    state: TopState
    flow: Flow
    event: Event
    target: Code
    sub_mark: str | None  # the v1204 callback this code is reported to
    ref: str  # where the spec (or our decision) says so
    decision: str | None = None  # SPEC §6: how we decided a case the spec leaves open


N, B, I, C, R, A, T, V, M = (  # noqa: E741
    TopState.notLogin,
    TopState.busy,
    TopState.idle,
    TopState.callingOut,
    TopState.ringing,
    TopState.afterCall,
    TopState.twoParty,
    TopState.inviting,
    TopState.threeParty,
)
F, E, K = Flow, Event, Code

_ROWS: list[Transition] = []


def _row(
    states: Iterable[TopState],
    flow: Flow,
    event: Event,
    target: Code,
    sub_mark: str | None,
    ref: str,
    decision: str | None = None,
) -> None:
    for s in states:
        _ROWS.append(Transition(s, flow, event, target, sub_mark, ref, decision))


# --- agent: the moves the spec leaves out (SPEC §5.3.6, additions)
_row([N], F.agent, E.login, K.busy, "success", "addition: log in, not ready")
_row([N], F.agent, E.loginReady, K.idle, "success", "addition: log in, ready by configuration")
_row([B, I, A], F.agent, E.logout, K.notLogin, "success", "addition: log out")
_row([B, I, A], F.agent, E.setReady, K.idle, "success", "addition: ready; ends after-call work")
_row([B, I, A], F.agent, E.setNotReady, K.busy, "success", "addition: not ready; ends after-call work")
_row([A], F.agent, E.wrapUpTimeout, K.idle, "success", "addition: wrap-up timeout ends after-call work")

# --- visitorInvite: the visitor asked for video; videoPickUp (SPEC §4.3, §5.2)
_row(
    [B, I],
    F.visitorInvite,
    E.ring,
    K.visitorInvite_ringing,
    "ringing",
    "SPEC §5.3.5 (004001 addition)",
    "a video request rings for the session's own agent when busy or idle, not in a call or wrap-up",
)
_row([R], F.visitorInvite, E.pickUp, K.visitorInvite_ringing, "success", "SPEC §4.3 videoPickUp success")
_row([R], F.visitorInvite, E.joined, K.visitorInvite_Success, "visitorJoin", "SPEC §5.2 006013")
_row([R], F.visitorInvite, E.timeout, K.visitorInvite_timeout, "timeoutDisconnect", "SPEC §5.2 001001")
_row([R], F.visitorInvite, E.error, K.visitorInvite_error, "error", "SPEC §5.2 002011")
_row(
    [R],
    F.visitorInvite,
    E.cancel,
    K.visitorInvite_error,
    "error",
    "SPEC §5.2 002011",
    "the visitor withdrew the request before it connected: visitorInvite_error, reason cancelled",
)
_row(
    [R],
    F.visitorInvite,
    E.agentHangup,
    K.visitorInvite_error,
    "kefuCloseVideoSuccess",
    "SPEC §5.2 002011",
    "the agent declined or hung up before the visitor joined: visitorInvite_error, reason declined",
)
_row(
    [T, V, M],
    F.visitorInvite,
    E.visitorHangup,
    K.visitorInvite_visitorDisconnect,
    "visitorDisconnect",
    "SPEC §4.3 v1220, §5.2 005007",
)
_row(
    [T],
    F.visitorInvite,
    E.agentHangup,
    K.visitorInvite_agentCloseVideo,
    "kefuCloseVideoSuccess",
    "SPEC §5.2 005008",
)

# --- callVisitor and callCurrentVisitor: the agent calls a visitor (SPEC §4.3, §5.2)
for _flow, _codes in (
    (
        F.callVisitor,
        (
            K.callVisitor_inviteSendSuccess,
            K.callVisitor_VisitorAcceptSuccess,
            K.callVisitor_visitorRefuse,
            K.callVisitor_Timeout,
            K.callVisitor_busy,
            K.callVisitor_error,
            K.callVisitor_agentCloseVideo_notAnswer,
            K.callVisitor_visitorDisconnect,
            K.callVisitor_agentCloseVideo_answered,
        ),
    ),
    (
        F.callCurrentVisitor,
        (
            K.callCurrentVisitor_inviteSendSuccess,
            K.callCurrentVisitor_VisitorAcceptSuccess,
            K.callCurrentVisitor_visitorRefuse,
            K.callCurrentVisitor_timeout,
            K.callCurrentVisitor_busy,
            K.callCurrentVisitor_error,
            K.callCurrentVisitor_agentCloseVideo_notAnswer,
            K.callCurrentVisitor_visitorDisconnect,
            K.callCurrentVisitor_agentCloseVideo_answered,
        ),
    ),
):
    sent, accepted, refused, timed_out, busy, error, hung_early, v_hung, a_hung = _codes
    _row([B, I, A], _flow, E.invite, sent, "inviteSuccess", f"SPEC §5.2 {sent}")
    _row(
        [B, I, A],
        _flow,
        E.busy,
        busy,
        "videoBusyMark",
        f"SPEC §5.2 {busy}",
        "a visitor known to be in a call is reported busy without ringing",
    )
    _row(
        [B, I, A],
        _flow,
        E.error,
        error,
        "error",
        f"SPEC §4.3 SDK_08 / SDK_11, §5.2 {error}",
        "an invitation that cannot be sent (SDK_08, SDK_11) is this flow's error",
    )
    _row([C], _flow, E.accept, accepted, "acceptSuccess", f"SPEC §5.2 {accepted}")
    _row([C], _flow, E.refuse, refused, "visitorRefuse", f"SPEC §5.2 {refused}")
    _row([C], _flow, E.timeout, timed_out, "timeoutDisconnect", f"SPEC §5.2 {timed_out}")
    _row([C], _flow, E.busy, busy, "videoBusyMark", f"SPEC §5.2 {busy}")
    _row([C], _flow, E.error, error, "error", f"SPEC §5.2 {error}")
    _row([C], _flow, E.agentHangup, hung_early, "kefuCloseVideoSuccess", f"SPEC §5.2 {hung_early}")
    _row([T, V, M], _flow, E.visitorHangup, v_hung, "visitorDisconnect", f"SPEC §5.2 {v_hung}")
    _row([T], _flow, E.agentHangup, a_hung, "kefuCloseVideoSuccess", f"SPEC §5.2 {a_hung}")

# --- inviteThirdVisitor: videoInviteVisitor from a two-party call (SPEC §4.3, §5.2)
_row(
    [T],
    F.inviteThirdVisitor,
    E.invite,
    K.inviteThirdVisitor_inviteSendSuccess,
    "inviteSuccess",
    "SPEC §5.2 007001",
)
_row(
    [T],
    F.inviteThirdVisitor,
    E.busy,
    K.inviteThirdVisitor_busy,
    "videoBusyMark",
    "SPEC §5.3.2: 006002 is busy",
    "a visitor known to be in a call is reported busy without ringing",
)
_row(
    [T],
    F.inviteThirdVisitor,
    E.error,
    K.inviteThirdVisitor_error,
    "error",
    "SPEC §4.3 SDK_08 / SDK_11, §5.2 006004",
)
_row([V], F.inviteThirdVisitor, E.accept, K.inviteThirdVisitor_success, "acceptSuccess", "SPEC §5.2 008001")
_row(
    [V],
    F.inviteThirdVisitor,
    E.refuse,
    K.inviteThirdVisitor_visitorRefuse,
    "visitorRefuse",
    "SPEC §5.2 006001",
)
_row(
    [V],
    F.inviteThirdVisitor,
    E.busy,
    K.inviteThirdVisitor_busy,
    "videoBusyMark",
    "SPEC §5.3.2: 006002 is busy",
)
_row(
    [V],
    F.inviteThirdVisitor,
    E.timeout,
    K.inviteThirdVisitor_Timeout,
    "timeoutDisconnect",
    "SPEC §5.3.2: 006003 is timeout",
)
_row([V], F.inviteThirdVisitor, E.error, K.inviteThirdVisitor_error, "error", "SPEC §5.2 006004")
_row(
    [V, M],
    F.inviteThirdVisitor,
    E.agentHangup,
    K.inviteThirdVisitor_masterAgentCloseVideo,
    "kefuCloseVideoSuccess",
    "SPEC §5.2 005001",
    "the primary agent hanging up while inviting ends the call and withdraws the invitation",
)
_row(
    [M],
    F.inviteThirdVisitor,
    E.visitorHangup,
    K.inviteThirdVisitor_visitorDisconnect,
    "visitorDisconnect",
    "SPEC §5.2 006005",
    "either visitor leaving a three-party visitor call is 006005; the call goes on with the other",
)

# --- inviteThirdAgent: videoInviteAgent from a two-party call (SPEC §4.3, §5.2, §5.3.7)
_row(
    [T],
    F.inviteThirdAgent,
    E.invite,
    K.inviteThirdAgent_inviteSendSuccess,
    "inviteSuccess",
    "SPEC §5.2 007002",
)
_row(
    [T],
    F.inviteThirdAgent,
    E.busy,
    K.inviteThirdAgent_busy,
    "videoBusyMark",
    "SPEC §5.3.2: 006007 is busy",
    "an agent known to be unavailable is reported busy without ringing",
)
_row([T], F.inviteThirdAgent, E.error, K.inviteThirdAgent_error, "error", "SPEC §4.3 SDK_08, §5.2 006009")
_row([V], F.inviteThirdAgent, E.accept, K.inviteThirdAgent_success, "acceptSuccess", "SPEC §5.2 008002")
_row(
    [V],
    F.inviteThirdAgent,
    E.refuse,
    K.inviteThirdAgent_visitorRefuse,
    "visitorRefuse",
    "SPEC §5.3.3 006006",
    "v1204 callback named as callbackToVisitor's (the old API had none, SPEC §5.3.7)",
)
_row(
    [V],
    F.inviteThirdAgent,
    E.busy,
    K.inviteThirdAgent_busy,
    "videoBusyMark",
    "SPEC §5.3.2: 006007 is busy",
    "v1204 callback named as callbackToVisitor's (the old API had none, SPEC §5.3.7)",
)
_row(
    [V],
    F.inviteThirdAgent,
    E.timeout,
    K.inviteThirdAgent_Timeout,
    "timeoutDisconnect",
    "SPEC §5.3.2: 006008 is timeout",
    "v1204 callback named as callbackToVisitor's (the old API had none, SPEC §5.3.7)",
)
_row([V], F.inviteThirdAgent, E.error, K.inviteThirdAgent_error, "error", "SPEC §5.2 006009")
_row(
    [V, M],
    F.inviteThirdAgent,
    E.agentHangup,
    K.inviteThirdAgent_masterAgentCloseVideo,
    "kefuCloseVideoSuccess",
    "SPEC §5.2 005002",
    "the primary agent hanging up while inviting ends the call and withdraws the invitation",
)
_row(
    [M],
    F.inviteThirdAgent,
    E.leave,
    K.inviteThirdAgent_visitorDisconnect,
    "exitSuccess",
    "SPEC §5.3.3, §5.3.7: 006010, exitSuccess",
)

# --- agentInvite: this agent is invited as the third agent; multipleVideoPickUp
_row(
    [I],
    F.agentInvite,
    E.ring,
    K.agentInvite_ringing,
    "ringing",
    "SPEC §5.3.5 (004002 addition)",
    "only a ready (idle) agent rings; any other is reported busy to the inviter",
)
_row([R], F.agentInvite, E.pickUp, K.agentInvite_Success, "acceptSuccess", "SPEC §5.2 006014")
_row([R], F.agentInvite, E.timeout, K.agentInvite_timeout, "timeoutDisconnect", "SPEC §5.2 001002")
_row([R], F.agentInvite, E.error, K.agentInvite_error, "error", "SPEC §5.3.4: 002012")
_row(
    [R],
    F.agentInvite,
    E.refuse,
    K.idle,
    "refuseSuccess",
    "addition",
    "the invited agent refused: back to ready (it could only ring while ready)",
)
_row(
    [R],
    F.agentInvite,
    E.cancel,
    K.idle,
    "kefuCloseVideoSuccess",
    "addition",
    "the invitation was withdrawn (the call ended) before the pickUp: back to ready",
)
_row(
    [T],
    F.agentInvite,
    E.visitorHangup,
    K.agentInvite_visitorDisconnect,
    "kefuCloseVideoSuccess",
    "SPEC §4.3 v1220, §5.2 005009",
    "the visitor hanging up ends a call that has two agents and one visitor",
)
_row(
    [T],
    F.agentInvite,
    E.agentHangup,
    K.agentInvite_agentCloseVideo,
    "kefuCloseVideoSuccess",
    "SPEC §4.3 v1220, §5.2 005010",
    "the primary agent hung up: the meeting ends for the invited agent with 005010",
)
_row(
    [T],
    F.agentInvite,
    E.leave,
    K.agentInvite_agentCloseVideo,
    "exitSuccess",
    "SPEC §4.3 multipleVideoPickUp exitSuccess, §5.2 005010",
    "the invited agent left by itself: 005010 with exitSuccess",
)

# --- call transfers (issue 20, additions; docs/calls.md "Transfers"). The transferring
# agent's side: blindTransfer and consultTransfer, from a two-party call; the target's side:
# transferIn, which rings like an invitation (multipleVideoPickUp / multipleVideoRefuse).
_T_ADD = "addition (issue 20)"
for _flow, _sent, _refused, _timed_out, _failed, _cancelled in (
    (
        F.blindTransfer,
        K.blindTransfer_inviteSendSuccess,
        K.blindTransfer_refuse,
        K.blindTransfer_timeout,
        K.blindTransfer_error,
        K.blindTransfer_cancel,
    ),
    (
        F.consultTransfer,
        K.consultTransfer_inviteSendSuccess,
        K.consultTransfer_refuse,
        K.consultTransfer_timeout,
        K.consultTransfer_error,
        K.consultTransfer_cancel,
    ),
):
    _row([T], _flow, E.transfer, _sent, "inviteSuccess", _T_ADD, "the target rings; the call stays meanwhile")
    _row(
        [V], _flow, E.refuse, _refused, "refuse", _T_ADD, "the target refused: the call stays with this agent"
    )
    _row([V], _flow, E.timeout, _timed_out, "timeoutDisconnect", _T_ADD, "not answered: the call stays")
    _row([V], _flow, E.error, _failed, "error", _T_ADD, "the target is gone: the call stays with this agent")
    _row(
        [V, M] if _flow is F.consultTransfer else [V],
        _flow,
        E.cancel,
        _cancelled,
        "cancelSuccess",
        _T_ADD,
        "this agent withdrew the transfer (or hangs up, which withdraws it first)",
    )
_row(
    [V],
    F.blindTransfer,
    E.accept,
    K.blindTransfer_success,
    "transferSuccess",
    _T_ADD,
    "blind: the target picked up and has the visitor; this agent leaves into after-call work",
)
_row(
    [T],
    F.blindTransfer,
    E.queue,
    K.blindTransfer_queued,
    "queued",
    _T_ADD,
    "blind to a team none of whose agents is ready: the call waits in its queue, this agent "
    "leaves into after-call work (D50)",
)
_row(
    [V],
    F.consultTransfer,
    E.accept,
    K.consultTransfer_talking,
    "acceptSuccess",
    _T_ADD,
    "consult: the target picked up; the two agents talk, the visitor is on hold",
)
_row(
    [M],
    F.consultTransfer,
    E.leave,
    K.consultTransfer_cancel,
    "targetLeft",
    _T_ADD,
    "consult: the target hung up before the completion; back with the visitor",
)
_row(
    [M],
    F.consultTransfer,
    E.complete,
    K.consultTransfer_success,
    "completeSuccess",
    _T_ADD,
    "consult: completed; the target has the visitor, this agent leaves into after-call work",
)
_row(
    [I],
    F.transferIn,
    E.ring,
    K.transferIn_ringing,
    "ringing",
    _T_ADD,
    "only a ready (idle) agent rings; the transfer of any other is refused (agent_busy)",
)
_row([R], F.transferIn, E.pickUp, K.transferIn_success, "acceptSuccess", _T_ADD)
_row([R], F.transferIn, E.timeout, K.transferIn_timeout, "timeoutDisconnect", _T_ADD)
_row([R], F.transferIn, E.error, K.transferIn_error, "error", _T_ADD)
_row(
    [R],
    F.transferIn,
    E.refuse,
    K.idle,
    "refuseSuccess",
    _T_ADD,
    "the target refused: back to ready (it could only ring while ready)",
)
_row(
    [R],
    F.transferIn,
    E.cancel,
    K.idle,
    "kefuCloseVideoSuccess",
    _T_ADD,
    "the transfer was withdrawn (or the call ended) before the pickUp: back to ready",
)
_row(
    [T],
    F.transferIn,
    E.complete,
    K.transferIn_completed,
    "completeSuccess",
    _T_ADD,
    "consult completed: this agent is the call's primary agent now",
)
_row(
    [T],
    F.transferIn,
    E.cancel,
    K.idle,
    "cancelSuccess",
    _T_ADD,
    "consult cancelled by the transferring agent (or its call ended): back to ready",
)
_row(
    [T],
    F.transferIn,
    E.leave,
    K.idle,
    "exitSuccess",
    _T_ADD,
    "the consulted agent hung up before the completion: back to ready",
)
_row(
    [T, V, M],
    F.transferIn,
    E.visitorHangup,
    K.transferIn_visitorDisconnect,
    "visitorDisconnect",
    _T_ADD,
    "the transferred call's visitor hung up",
)
_row(
    [T],
    F.transferIn,
    E.agentHangup,
    K.transferIn_agentCloseVideo,
    "kefuCloseVideoSuccess",
    _T_ADD,
    "this agent, now the primary, hung up the transferred call",
)

del F, E, K

TRANSITIONS: dict[tuple[TopState, Flow, Event], Transition] = {}
for _t in _ROWS:
    _key = (_t.state, _t.flow, _t.event)
    assert _key not in TRANSITIONS, f"duplicate row {_key}"
    TRANSITIONS[_key] = _t

#: The top-level states of an agent in a call (calling out and ringing included).
IN_CALL: frozenset[TopState] = frozenset({C, R, T, V, M})
#: The top-level states out of any call.
OUT_OF_CALL: frozenset[TopState] = frozenset({N, B, I, A})


def _context_error(state: AgentState, flow: Flow, event: Event) -> str | None:
    """Why this row may not be used in this state's call context, or None."""
    top = state.top
    if top not in IN_CALL:
        return None
    if flow in THIRD_FLOWS or flow in TRANSFER_FLOWS:
        if top is T:
            if state.call_flow is Flow.agentInvite:
                return "only the primary agent invites a third party"
            return None
        if flow is not state.third_flow:
            return f"the third-party flow in progress is {state.third_flow}"
        return None
    if flow is not state.call_flow:
        return f"the agent's call is a {state.call_flow} call"
    if top is M and event is Event.visitorHangup and state.third_flow is Flow.inviteThirdVisitor:
        return "in a three-party visitor call a visitor leaving is inviteThirdVisitor.visitorHangup"
    if top is R and flow is Flow.visitorInvite:
        if event is Event.pickUp and state.picked_up:
            return "already picked up; waiting for the visitor to join"
        if event is Event.joined and not state.picked_up:
            return "the agent has not picked up yet"
    return None


def allowed(state: AgentState, flow: Flow, event: Event) -> Transition | None:
    """The row that ``event`` in ``flow`` would take from ``state``, or None."""
    t = TRANSITIONS.get((state.top, flow, event))
    if t is None or _context_error(state, flow, event) is not None:
        return None
    return t


def process(state: AgentState, flow: Flow, event: Event) -> tuple[AgentState, Transition]:
    """Apply one event; return the new state and the row taken.

    Raises :class:`InvalidTransition` (state unchanged) when the table has no
    row for ``(state.top, flow, event)`` or the row does not fit the call.
    """
    t = TRANSITIONS.get((state.top, flow, event))
    if t is None:
        raise InvalidTransition(state.code.value, flow.value, event.value)
    reason = _context_error(state, flow, event)
    if reason is not None:
        raise InvalidTransition(state.code.value, flow.value, event.value, reason)
    new_top = t.target.top
    if new_top in OUT_OF_CALL:
        return AgentState(t.target), t
    if flow in THIRD_FLOWS or flow in TRANSFER_FLOWS:
        third = flow if new_top in (V, M) else None
        return replace(state, code=t.target, third_flow=third), t
    picked = state.picked_up or event is Event.pickUp
    return AgentState(t.target, flow, None, picked), t


def transitions_to(code: Code) -> list[Transition]:
    """Every row that leads to ``code``."""
    return [t for t in TRANSITIONS.values() if t.target is code]
