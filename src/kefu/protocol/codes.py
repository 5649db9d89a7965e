"""The agent's 6-digit state codes (SPEC §5).

Theory of operation
-------------------
A state code is a 6-digit string. Its first three digits name the top-level
state (SPEC §5.1): ``006011`` is in ``006000``, "in a two-party call". The
spec lists 45 codes (SPEC §5.2); this project adds four, each marked as an
addition: the two ringing codes (SPEC §5.3.5) and the manual "not ready" /
"ready" codes that logging in and the agent's own choice lead to
(SPEC §5.3.6).

Codes are emitted as 6-digit strings only. The document's two 7-digit
spellings (``'0020010'``, ``'0050010'``) are accepted by :func:`parse_code`,
the one place where input is decoded (SPEC §5.3.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ADDITIONS",
    "CODE_INFO",
    "SPEC_CODES",
    "TOP_STATE_MEANING",
    "Code",
    "CodeInfo",
    "TopState",
    "parse_code",
    "top_state",
]


class TopState(enum.StrEnum):
    """The nine top-level states of SPEC §5.1 (``xxx000``)."""

    notLogin = "000000"
    busy = "001000"
    idle = "002000"
    callingOut = "003000"
    ringing = "004000"
    afterCall = "005000"
    twoParty = "006000"
    inviting = "007000"
    threeParty = "008000"


TOP_STATE_MEANING: dict[TopState, tuple[str, str]] = {
    TopState.notLogin: ("not logged in", "未签入"),
    TopState.busy: ("busy / not ready", "忙"),
    TopState.idle: ("idle / ready", "闲"),
    TopState.callingOut: ("calling out", "外呼中"),
    TopState.ringing: ("incoming, ringing", "来电中"),
    TopState.afterCall: ("after-call work", "话后处理"),
    TopState.twoParty: ("in a two-party call", "两方通话中"),
    TopState.inviting: ("inviting a third party", "邀请中"),
    TopState.threeParty: ("in a three-party call", "三方通话中"),
}


class Code(enum.StrEnum):
    """Every state code, named exactly as the spec's constant block names it."""

    # 000 not logged in
    notLogin = "000000"
    # 001 busy / not ready
    busy = "001000"  # addition (SPEC §5.3.6): not ready, by login or by hand
    visitorInvite_timeout = "001001"
    agentInvite_timeout = "001002"
    transferIn_timeout = "001003"  # addition (issue 20)
    # 002 idle / ready
    idle = "002000"  # addition (SPEC §5.3.6): ready, by hand or after wrap-up
    callVisitor_visitorRefuse = "002001"
    callVisitor_Timeout = "002002"
    callVisitor_busy = "002003"
    callVisitor_error = "002004"
    callVisitor_agentCloseVideo_notAnswer = "002005"
    callCurrentVisitor_visitorRefuse = "002006"
    callCurrentVisitor_timeout = "002007"
    callCurrentVisitor_busy = "002008"
    callCurrentVisitor_error = "002009"
    callCurrentVisitor_agentCloseVideo_notAnswer = "002010"
    visitorInvite_error = "002011"
    agentInvite_error = "002012"
    transferIn_error = "002013"  # addition (issue 20)
    # 003 calling out
    callVisitor_inviteSendSuccess = "003001"
    callCurrentVisitor_inviteSendSuccess = "003002"
    # 004 ringing: no sub-code in the document (SPEC §5.3.5)
    visitorInvite_ringing = "004001"  # addition
    agentInvite_ringing = "004002"  # addition
    transferIn_ringing = "004003"  # addition (issue 20)
    # 005 after-call work
    inviteThirdVisitor_masterAgentCloseVideo = "005001"
    inviteThirdAgent_masterAgentCloseVideo = "005002"
    callVisitor_visitorDisconnect = "005003"
    callVisitor_agentCloseVideo_answered = "005004"
    callCurrentVisitor_visitorDisconnect = "005005"
    callCurrentVisitor_agentCloseVideo_answered = "005006"
    visitorInvite_visitorDisconnect = "005007"
    visitorInvite_agentCloseVideo = "005008"
    agentInvite_visitorDisconnect = "005009"
    agentInvite_agentCloseVideo = "005010"
    blindTransfer_success = "005011"  # addition (issue 20)
    consultTransfer_success = "005012"  # addition (issue 20)
    transferIn_visitorDisconnect = "005013"  # addition (issue 20)
    transferIn_agentCloseVideo = "005014"  # addition (issue 20)
    blindTransfer_queued = "005015"  # addition (issue 20, D50)
    # 006 two-party call
    inviteThirdVisitor_visitorRefuse = "006001"
    inviteThirdVisitor_busy = "006002"  # SPEC §5.3.2: 006002 is busy
    inviteThirdVisitor_Timeout = "006003"  # SPEC §5.3.2: 006003 is timeout
    inviteThirdVisitor_error = "006004"
    inviteThirdVisitor_visitorDisconnect = "006005"
    inviteThirdAgent_visitorRefuse = "006006"  # SPEC §5.3.3: the third agent refused
    inviteThirdAgent_busy = "006007"
    inviteThirdAgent_Timeout = "006008"
    inviteThirdAgent_error = "006009"
    inviteThirdAgent_visitorDisconnect = "006010"  # SPEC §5.3.3: the third agent left
    callVisitor_VisitorAcceptSuccess = "006011"
    callCurrentVisitor_VisitorAcceptSuccess = "006012"
    visitorInvite_Success = "006013"
    agentInvite_Success = "006014"
    blindTransfer_refuse = "006015"  # addition (issue 20)
    blindTransfer_timeout = "006016"  # addition (issue 20)
    blindTransfer_error = "006017"  # addition (issue 20)
    blindTransfer_cancel = "006018"  # addition (issue 20)
    consultTransfer_refuse = "006019"  # addition (issue 20)
    consultTransfer_timeout = "006020"  # addition (issue 20)
    consultTransfer_error = "006021"  # addition (issue 20)
    consultTransfer_cancel = "006022"  # addition (issue 20)
    transferIn_success = "006023"  # addition (issue 20)
    transferIn_completed = "006024"  # addition (issue 20)
    # 007 inviting a third party
    inviteThirdVisitor_inviteSendSuccess = "007001"
    inviteThirdAgent_inviteSendSuccess = "007002"
    blindTransfer_inviteSendSuccess = "007003"  # addition (issue 20)
    consultTransfer_inviteSendSuccess = "007004"  # addition (issue 20)
    # 008 three-party call
    inviteThirdVisitor_success = "008001"
    inviteThirdAgent_success = "008002"
    consultTransfer_talking = "008003"  # addition (issue 20)

    @property
    def top(self) -> TopState:
        """The top-level state this code belongs to."""
        return top_state(self)

    @property
    def info(self) -> CodeInfo:
        return CODE_INFO[self]


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: Code
    meaning: str
    meaning_zh: str
    addition: bool = False

    @property
    def name(self) -> str:
        return self.code.name

    @property
    def state(self) -> TopState:
        return self.code.top


def _i(code: Code, en: str, zh: str, addition: bool = False) -> CodeInfo:
    return CodeInfo(code, en, zh, addition)


C = Code
CODE_INFO: dict[Code, CodeInfo] = {
    i.code: i
    for i in (
        _i(C.notLogin, "not logged in", "未签入"),
        _i(C.busy, "not ready (logged in, or set not ready by hand)", "忙(签入或手动置忙)", True),
        _i(C.visitorInvite_timeout, "visitor invite: timed out", "访客邀请-超时"),
        _i(C.agentInvite_timeout, "agent invite: timed out", "坐席邀请-超时"),
        _i(C.idle, "ready (set by hand, or wrap-up ended)", "闲(手动置闲或话后处理结束)", True),
        _i(C.callVisitor_visitorRefuse, "call out: visitor refused", "外呼访客-访客拒绝"),
        _i(C.callVisitor_Timeout, "call out: visitor did not answer in time", "外呼访客-访客超时"),
        _i(C.callVisitor_busy, "call out: visitor busy", "外呼访客-访客忙"),
        _i(C.callVisitor_error, "call out: error", "外呼访客-访客错误"),
        _i(
            C.callVisitor_agentCloseVideo_notAnswer,
            "call out: agent hung up before an answer",
            "外呼访客-坐席挂断(未接通)",
        ),
        _i(C.callCurrentVisitor_visitorRefuse, "current visitor: refused", "外呼当前访客-访客拒绝"),
        _i(
            C.callCurrentVisitor_timeout,
            "current visitor: no answer in time",
            "外呼当前访客-访客超时",
        ),
        _i(C.callCurrentVisitor_busy, "current visitor: busy", "外呼当前访客-访客忙"),
        _i(C.callCurrentVisitor_error, "current visitor: error", "外呼当前访客-访客错误"),
        _i(
            C.callCurrentVisitor_agentCloseVideo_notAnswer,
            "current visitor: agent hung up before an answer",
            "外呼当前访客-坐席挂断(未接通)",
        ),
        _i(C.visitorInvite_error, "visitor invite: error", "访客邀请-错误"),
        _i(C.agentInvite_error, "agent invite: error", "坐席邀请-错误"),
        _i(
            C.callVisitor_inviteSendSuccess,
            "call out: invitation sent",
            "外呼访客-邀请发送成功",
        ),
        _i(
            C.callCurrentVisitor_inviteSendSuccess,
            "current visitor: invitation sent",
            "外呼当前访客-邀请发送成功",
        ),
        _i(
            C.visitorInvite_ringing,
            "visitor invite: the visitor's video request is ringing for this agent",
            "访客邀请-来电振铃",
            True,
        ),
        _i(
            C.agentInvite_ringing,
            "agent invite: this agent is invited as the third agent, ringing",
            "坐席邀请-来电振铃",
            True,
        ),
        _i(
            C.inviteThirdVisitor_masterAgentCloseVideo,
            "third visitor: the primary agent hung up",
            "邀请三方访客-主坐席挂断",
        ),
        _i(
            C.inviteThirdAgent_masterAgentCloseVideo,
            "third agent: the primary agent hung up",
            "邀请三方坐席-主坐席挂断",
        ),
        _i(C.callVisitor_visitorDisconnect, "call out: visitor hung up", "外呼访客-访客挂断"),
        _i(
            C.callVisitor_agentCloseVideo_answered,
            "call out: agent hung up after the answer",
            "外呼访客-坐席挂断(接通后)",
        ),
        _i(
            C.callCurrentVisitor_visitorDisconnect,
            "current visitor: visitor hung up",
            "外呼当前访客-访客挂断",
        ),
        _i(
            C.callCurrentVisitor_agentCloseVideo_answered,
            "current visitor: agent hung up after the answer",
            "外呼当前访客-坐席挂断(接通后)",
        ),
        _i(C.visitorInvite_visitorDisconnect, "visitor invite: visitor hung up", "访客邀请-访客挂断"),
        _i(C.visitorInvite_agentCloseVideo, "visitor invite: agent hung up", "访客邀请-坐席挂断"),
        _i(C.agentInvite_visitorDisconnect, "agent invite: visitor hung up", "坐席邀请-访客挂断"),
        _i(C.agentInvite_agentCloseVideo, "agent invite: agent hung up", "坐席邀请-坐席挂断"),
        _i(C.inviteThirdVisitor_visitorRefuse, "third visitor: refused", "邀请三方访客-访客拒绝"),
        _i(C.inviteThirdVisitor_busy, "third visitor: busy", "邀请三方访客-访客忙"),
        _i(C.inviteThirdVisitor_Timeout, "third visitor: no answer in time", "邀请三方访客-访客超时"),
        _i(C.inviteThirdVisitor_error, "third visitor: error", "邀请三方访客-访客错误"),
        _i(C.inviteThirdVisitor_visitorDisconnect, "third visitor: hung up", "邀请三方访客-访客挂断"),
        _i(
            C.inviteThirdAgent_visitorRefuse,
            "third agent: refused (the document's name, commented out there)",
            "邀请三方坐席-坐席拒绝",
        ),
        _i(C.inviteThirdAgent_busy, "third agent: busy", "邀请三方坐席-坐席忙"),
        _i(C.inviteThirdAgent_Timeout, "third agent: no answer in time", "邀请三方坐席-坐席超时"),
        _i(C.inviteThirdAgent_error, "third agent: error", "邀请三方坐席-坐席错误"),
        _i(
            C.inviteThirdAgent_visitorDisconnect,
            "third agent: hung up (the document's name, though an agent hangs up)",
            "邀请三方坐席-坐席挂断",
        ),
        _i(
            C.callVisitor_VisitorAcceptSuccess,
            "call out: visitor accepted",
            "外呼访客-访客接受视频成功",
        ),
        _i(
            C.callCurrentVisitor_VisitorAcceptSuccess,
            "current visitor: accepted",
            "外呼当前访客-访客接受视频成功",
        ),
        _i(C.visitorInvite_Success, "visitor invite: connected", "访客邀请-成功"),
        _i(C.agentInvite_Success, "agent invite: connected", "坐席邀请-成功"),
        _i(
            C.inviteThirdVisitor_inviteSendSuccess,
            "third visitor: invitation sent",
            "邀请三方访客-邀请发送成功",
        ),
        _i(
            C.inviteThirdAgent_inviteSendSuccess,
            "third agent: invitation sent",
            "邀请三方坐席-邀请发送成功",
        ),
        _i(
            C.inviteThirdVisitor_success,
            "third visitor: accepted, three-party call",
            "邀请三方访客-访客接受视频成功",
        ),
        _i(
            C.inviteThirdAgent_success,
            "third agent: accepted, three-party call",
            "邀请三方坐席-坐席接受视频成功",
        ),
        # --- call transfers (issue 20), all additions
        _i(
            C.transferIn_timeout,
            "transfer in: the transferred call rang, not answered in time",
            "转接来电-超时",
            True,
        ),
        _i(C.transferIn_error, "transfer in: the transfer failed or was withdrawn", "转接来电-错误", True),
        _i(
            C.transferIn_ringing,
            "transfer in: a call transferred to this agent is ringing",
            "转接来电-振铃",
            True,
        ),
        _i(
            C.blindTransfer_success,
            "blind transfer: the target took the call; this agent left it",
            "盲转-目标坐席接听,本坐席离开",
            True,
        ),
        _i(
            C.blindTransfer_queued,
            "blind transfer to a queue: the call waits in the team's queue; this agent left it",
            "盲转-转入队列,本坐席离开",
            True,
        ),
        _i(
            C.consultTransfer_success,
            "consult transfer: completed; the target has the visitor, this agent left",
            "咨询转接-完成,本坐席离开",
            True,
        ),
        _i(
            C.transferIn_visitorDisconnect,
            "transfer in: the visitor of the transferred call hung up",
            "转接来电-访客挂断",
            True,
        ),
        _i(
            C.transferIn_agentCloseVideo,
            "transfer in: this agent hung up the transferred call",
            "转接来电-坐席挂断",
            True,
        ),
        _i(
            C.blindTransfer_refuse,
            "blind transfer: the target refused; the call stays",
            "盲转-目标坐席拒绝",
            True,
        ),
        _i(
            C.blindTransfer_timeout,
            "blind transfer: the target did not answer in time; the call stays",
            "盲转-目标坐席超时",
            True,
        ),
        _i(
            C.blindTransfer_error,
            "blind transfer: failed (the target is gone); the call stays",
            "盲转-错误",
            True,
        ),
        _i(C.blindTransfer_cancel, "blind transfer: withdrawn by this agent", "盲转-取消", True),
        _i(
            C.consultTransfer_refuse,
            "consult transfer: the target refused; back with the visitor",
            "咨询转接-目标坐席拒绝",
            True,
        ),
        _i(
            C.consultTransfer_timeout,
            "consult transfer: the target did not answer in time; back with the visitor",
            "咨询转接-目标坐席超时",
            True,
        ),
        _i(
            C.consultTransfer_error,
            "consult transfer: failed (the target is gone); back with the visitor",
            "咨询转接-错误",
            True,
        ),
        _i(
            C.consultTransfer_cancel,
            "consult transfer: cancelled, or the target left; back with the visitor",
            "咨询转接-取消",
            True,
        ),
        _i(
            C.transferIn_success,
            "transfer in: connected (blind: with the visitor; consult: with the transferring agent)",
            "转接来电-接通",
            True,
        ),
        _i(
            C.transferIn_completed,
            "transfer in: the consult transfer completed; this agent now has the visitor",
            "转接来电-转接完成",
            True,
        ),
        _i(
            C.blindTransfer_inviteSendSuccess,
            "blind transfer: the target rings; the visitor stays with this agent",
            "盲转-邀请发送成功",
            True,
        ),
        _i(
            C.consultTransfer_inviteSendSuccess,
            "consult transfer: the target rings; the visitor is on hold",
            "咨询转接-邀请发送成功",
            True,
        ),
        _i(
            C.consultTransfer_talking,
            "consult transfer: talking to the target; the visitor is on hold",
            "咨询转接-与目标坐席通话中",
            True,
        ),
    )
}
del C

#: The codes that this project adds to the spec's list (SPEC §5.3.5, §5.3.6).
ADDITIONS: frozenset[Code] = frozenset(c for c, i in CODE_INFO.items() if i.addition)
#: The 45 codes of SPEC §5.2, in the spec's order.
SPEC_CODES: tuple[Code, ...] = tuple(c for c in Code if c not in ADDITIONS)

# SPEC §5.3.1: the document's 7-digit spellings, accepted on input only.
_ALIASES: dict[str, Code] = {
    "0020010": Code.callCurrentVisitor_agentCloseVideo_notAnswer,
    "0050010": Code.agentInvite_agentCloseVideo,
    "0060010": Code.inviteThirdAgent_visitorDisconnect,
}


def top_state(code: str) -> TopState:
    """The top-level state (``xxx000``) of a 6-digit code."""
    return TopState(code[:3] + "000")


def parse_code(value: object) -> Code:
    """Decode a state code from input; accepts the spec's 7-digit spellings.

    Raises :class:`ValueError` naming the value when it is no known code.
    Integers are refused: ``006001`` as a JavaScript number is octal (SPEC §5.3.1).
    """
    if not isinstance(value, str):
        raise ValueError(f"a state code is a 6-digit string, not {type(value).__name__}")
    if value in _ALIASES:
        return _ALIASES[value]
    try:
        return Code(value)
    except ValueError:
        raise ValueError(f"unknown state code {value!r}") from None
