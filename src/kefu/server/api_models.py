"""The REST API's models (the OpenAPI schema; handlers return plain dicts in this shape)
and the error answers each route declares (docs/errors.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERRORS",
    "FILE",
    "LOGIN_ERRORS",
    "PRINTABLE",
    "WRITES",
    "AgentOut",
    "ArtifactOut",
    "CallOut",
    "CallTransferOut",
    "ErrorOut",
    "LoginIn",
    "LoginOut",
    "MessageOut",
    "RecordingPartOut",
    "SessionOut",
    "StateChangeOut",
    "StateOut",
    "SupervisionOut",
    "error_answers",
]

#: no control characters (PostgreSQL refuses NUL in text)
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ErrorBody(_Out):
    code: str
    msg: str


class ErrorOut(_Out):
    error: ErrorBody


class AgentProfile(_Out):
    name: str
    admin: bool
    maxSessions: int


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class LoginOut(_Out):
    token: str
    expiresAt: datetime
    agent: AgentProfile


class AgentOut(_Out):
    name: str
    admin: bool
    maxSessions: int
    disabled: bool
    state: str = Field(description="the 6-digit state code (SPEC §5)")
    stateSince: datetime
    openSessions: int
    connected: bool = Field(description="the agent's plugin is connected to this server")


class MessageOut(_Out):
    sessionId: str
    messageId: str
    from_: Literal["visitor", "agent", "system"] = Field(alias="from")
    text: str
    at: datetime


class SessionOut(_Out):
    sessionId: str
    visitorName: str
    visitorId: str
    agentName: str | None
    status: Literal["queued", "open", "closed"]
    since: datetime
    assignedAt: datetime | None
    closedAt: datetime | None
    closedBy: str | None
    closeReason: str | None
    lastMessage: MessageOut | None


class StateChangeOut(_Out):
    old: str
    new: str
    flow: str
    event: str
    reason: str | None
    callId: str | None
    at: datetime
    by: str | None = Field(default=None, description="the supervisor who made the change, if one did")


class CallMemberOut(_Out):
    kind: Literal["agent", "visitor"]
    name: str | None
    role: str
    status: str | None
    invitedAt: datetime | None
    joinedAt: datetime | None
    leftAt: datetime | None
    outcome: str | None
    reason: str | None


class CallTransferOut(_Out):
    kind: Literal["blind", "consult"]
    from_: str = Field(alias="from", description="the agent who transferred the call")
    to: str | None = Field(
        description="the agent it was transferred to; null: it waited in a team's queue and no agent took it"
    )
    team: str | None = Field(None, description="the team whose queue it went through (D50)")
    note: str | None
    outcome: str = Field(
        description="completed, refused, timeout, failed, cancelled, targetLeft, ended or abandoned "
        "(the visitor hung up while it waited in the queue, D50) (issue 20)"
    )
    at: datetime = Field(description="when the transfer ended")


class SupervisionOut(_Out):
    supervisor: str
    mode: Literal["monitor", "whisper", "barge"] | None = Field(description="null: the supervisor left")
    old: str | None = Field(description="the mode before; null when the supervisor joined")
    reason: str | None
    at: datetime


class RecordingPartOut(_Out):
    part: int = Field(description="1, 2, …: the hubs in order (hub mode: a transfer starts a new part, D51)")
    artifactId: str
    agentName: str | None = Field(description="the agent whose plugin recorded this part")
    sha256: str = Field(description="empty while the part is not final")
    size: int
    complete: bool


class CallOut(_Out):
    callId: str
    flow: str
    sessionId: str | None
    status: str
    createdAt: datetime
    answeredAt: datetime | None
    endedAt: datetime | None
    endedBy: str | None
    endReason: str | None
    recording: dict[str, Any] | None = Field(
        default=None,
        description="SFU mode: the server's recording of the call: status (recording, ready, failed), "
        "startedAt, and artifactId or reason",
    )
    recordingParts: list[RecordingPartOut] = Field(
        default_factory=list,
        description="the call's recording files in order, each with its SHA-256 (hub mode: one per "
        "hub, a transfer starts the next; GET /api/calls/{id}/recording?part=N)",
    )
    members: list[CallMemberOut]
    transfers: list[CallTransferOut] = Field(default=[], description="the call's transfers, in order")
    supervision: list[SupervisionOut] = Field(
        default_factory=list, description="issue 20: each supervisor's join, change of mode and leave"
    )


class StateOut(_Out):
    code: str
    name: str
    state: str
    meaning: str
    meaning_zh: str
    addition: bool = Field(description="a code this system adds to the spec's")


class ArtifactOut(_Out):
    artifactId: str
    kind: Literal["photo", "snapshot", "recording", "share"]
    callId: str | None
    contentType: str
    size: int
    sha256: str = Field(description="empty while a recording is not final")
    createdAt: datetime
    meta: dict[str, Any] | None


def error_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, each ``{"error": {"code", "msg"}}`` (docs/errors.md)."""
    return {status: {"model": ErrorOut} for status in sorted(statuses)}


# every route with a token: bad input, no or a bad token, not yours, not found, a bug
ERRORS = error_answers(400, 401, 403, 404, 500)
# a route that writes (the audit trail of a read included): also a full disk
WRITES = error_answers(400, 401, 403, 404, 500, 507)
LOGIN_ERRORS = error_answers(400, 401, 403, 429, 500, 507)
FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}, "video/webm": {}}, "description": "the file"}
}
