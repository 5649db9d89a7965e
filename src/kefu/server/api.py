"""HTTP: login (``/doLogin`` as the spec's sample URL, ``POST /api/login``) and
the REST API under ``/api`` (OpenAPI at ``/docs``).

Every ``/api`` route but login needs a token: ``Authorization: Bearer …`` or
the ``kefu_token`` cookie that ``/doLogin`` sets. An agent sees its own data
(and the waiting queue); an admin sees everything. Errors have the spec's
form, ``{"error": {"code", "msg"}}``, with the catalogue's HTTP status.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from kefu.protocol import CODE_INFO, ApiError, Code, ErrorCode

from .accounts import Agent, find_agent, list_agents
from .auth import Login
from .hub import agent_key
from .schema import agents, visitors
from .services import Services
from .store import aware
from .vault import MediaKeyError
from .views import fetch_messages, fetch_session, fetch_sessions, session_view

__all__ = ["COOKIE", "router"]

COOKIE = "kefu_token"
#: no control characters (PostgreSQL refuses NUL in text)
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
log = logging.getLogger("kefu.server.api")
router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="the token from /api/login or /doLogin")


# --- models (the OpenAPI schema; handlers return plain dicts in this shape)


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
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=_PRINTABLE)]
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


class SupervisionOut(_Out):
    supervisor: str
    mode: Literal["monitor", "whisper", "barge"] | None = Field(description="null: the supervisor left")
    old: str | None = Field(description="the mode before; null when the supervisor joined")
    reason: str | None
    at: datetime


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
    members: list[CallMemberOut]
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


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, each ``{"error": {"code", "msg"}}`` (docs/errors.md)."""
    return {status: {"model": ErrorOut} for status in sorted(statuses)}


# every route with a token: bad input, no or a bad token, not yours, not found, a bug
_ERRORS = _errors(400, 401, 403, 404, 500)
# a route that writes (the audit trail of a read included): also a full disk
_WRITES = _errors(400, 401, 403, 404, 500, 507)
_LOGIN = _errors(400, 401, 403, 429, 500, 507)
_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}, "video/webm": {}}, "description": "the file"}
}


# --- helpers


def services_of(request: Request) -> Services:
    sv: Services = request.app.state.services
    return sv


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _token(request: Request, cred: HTTPAuthorizationCredentials | None) -> str:
    token = cred.credentials if cred is not None else request.cookies.get(COOKIE)
    if not token:
        raise ApiError("send Authorization: Bearer <token> (from /api/login)", code=ErrorCode.unauthenticated)
    return token


async def current_agent(request: Request, cred: Credentials) -> Agent:
    return await services_of(request).auth.check(_token(request, cred))


Me = Annotated[Agent, Depends(current_agent)]
# Every parameter is bounded (issue 15): an offset past int64 was an OverflowError, a 500.
MAX_OFFSET = 1_000_000_000
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
NameQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=_PRINTABLE)]
NameP = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]
IdP = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]
IdQ = Annotated[str, Query(min_length=1, max_length=64, pattern=_PRINTABLE)]
Time = Annotated[datetime | None, Query(description="ISO 8601; without a zone, UTC")]


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _login_response(login: Login, request: Request, response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.set_cookie(
        COOKIE,
        login.token,
        max_age=max(1, int((login.expires_at - services_of(request).settings.now()).total_seconds())),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


# --- login


@router.get(
    "/doLogin",
    tags=["login"],
    response_model=LoginOut,
    responses={**_LOGIN, 303: {"description": "logged in; redirect to returnTo"}},
)
async def do_login(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=64, pattern=_PRINTABLE)],
    pwd: Annotated[str, Query(min_length=1, max_length=256)],
    returnTo: Annotated[str, Query(max_length=2048)] = "",  # the spec's parameter name
) -> Response:
    """The spec's SSO login URL (SPEC §4.1 ``startLogin``): ``/doLogin?name=&pwd=&returnTo=``.

    With an empty ``returnTo`` (or ``Accept: application/json``) the answer is
    the login JSON; with an allowed ``returnTo`` a 303 redirect there, with
    the token in an HttpOnly, SameSite=Strict cookie. Its query string is
    never logged."""
    sv = services_of(request)
    if returnTo and not sv.auth.return_to_allowed(returnTo):
        raise ApiError(code=ErrorCode.redirect_refused)
    login = await sv.auth.login(name, pwd, _client(request))
    wants_json = "application/json" in request.headers.get("accept", "")
    if returnTo and not wants_json:
        return _login_response(login, request, RedirectResponse(returnTo, status_code=303))
    return _login_response(login, request, JSONResponse(login.to_json()))


@router.post("/api/login", tags=["login"], response_model=LoginOut, responses=_LOGIN)
async def api_login(request: Request, body: LoginIn) -> Response:
    """Log in with JSON ``{"name", "password"}``; the answer carries the token and its expiry."""
    login = await services_of(request).auth.login(body.name, body.password, _client(request))
    return _login_response(login, request, JSONResponse(login.to_json()))


@router.post("/api/logout", tags=["login"], status_code=204, responses=_ERRORS)
async def api_logout(request: Request, cred: Credentials) -> Response:
    """Revoke the token presented (header or cookie): it is refused from now on with
    ``token_revoked``, and the sockets that logged in with it are closed (4003) within
    ``login_check_interval`` on every node, at once on this one. The cookie is cleared."""
    sv = services_of(request)
    grant = await sv.auth.grant(_token(request, cred))
    await sv.auth.revoke(grant.token_hash)
    sv.logins.end_token(grant.token_hash, ErrorCode.token_revoked)
    response = Response(status_code=204)
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- agents


async def _agent_rows(sv: Services, name: str | None = None) -> list[dict[str, Any]]:
    async with sv.store.read() as conn:
        rows = await list_agents(conn, name=name)
    for r in rows:
        r["connected"] = await sv.hub.bus.present(agent_key(r.pop("id")))
    return rows


@router.get("/api/me", tags=["agents"], response_model=AgentOut, responses=_ERRORS)
async def me(request: Request, agent: Me) -> Any:
    """The agent the token belongs to, with its current state."""
    return (await _agent_rows(services_of(request), agent.name))[0]


@router.get("/api/agents", tags=["agents"], response_model=list[AgentOut], responses=_ERRORS)
async def agents_list(request: Request, agent: Me) -> Any:
    """Agents with their current state (an agent sees itself; an admin sees all)."""
    return await _agent_rows(services_of(request), None if agent.admin else agent.name)


async def _visible_agent(sv: Services, me: Agent, name: str) -> dict[str, Any]:
    if not me.admin and name != me.name:
        raise ApiError("an agent sees only its own data", code=ErrorCode.forbidden)
    rows = await _agent_rows(sv, name)
    if not rows:
        raise ApiError(code=ErrorCode.no_such_agent)
    return rows[0]


@router.get("/api/agents/{name}", tags=["agents"], response_model=AgentOut, responses=_ERRORS)
async def agent_one(request: Request, name: NameP, agent: Me) -> Any:
    return await _visible_agent(services_of(request), agent, name)


@router.get(
    "/api/agents/{name}/states", tags=["agents"], response_model=list[StateChangeOut], responses=_ERRORS
)
async def agent_states(
    request: Request,
    name: NameP,
    agent: Me,
    since: Time = None,
    until: Time = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """The agent's state history, oldest first: every change with old and new code, flow,
    event, reason, call and time."""
    sv = services_of(request)
    await _visible_agent(sv, agent, name)
    async with sv.store.read() as conn:
        target = await find_agent(conn, name=name)
    assert target is not None
    return await sv.agents.history(
        target.id, since=_utc(since), until=_utc(until), limit=limit, offset=offset
    )


def _utc(value: datetime | None) -> datetime | None:
    """In UTC (the database's zone); a time that has no UTC equivalent is refused."""
    if value is None or value.tzinfo is None:
        return aware(value)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ApiError(f"{value.isoformat()} is out of range", code=ErrorCode.invalid_field) from None


# --- sessions


@router.get("/api/sessions", tags=["sessions"], response_model=list[SessionOut], responses=_ERRORS)
async def sessions_list(
    request: Request,
    agent: Me,
    status: Literal["queued", "open", "closed"] | None = None,
    agentName: NameQ = None,
    visitorName: NameQ = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Sessions, oldest first, filtered by status, agent, visitor and creation time.
    An agent sees its own sessions and the waiting ones."""
    sv = services_of(request)
    if agentName is not None and not agent.admin and agentName != agent.name:
        raise ApiError("an agent sees only its own sessions", code=ErrorCode.forbidden)
    async with sv.store.read() as conn:
        agent_id = visitor_id = None
        if agentName is not None:
            agent_id = (await conn.execute(select(agents.c.id).where(agents.c.name == agentName))).scalar()
            if agent_id is None:
                return []
        if visitorName is not None:
            visitor_id = (
                await conn.execute(select(visitors.c.id).where(visitors.c.name == visitorName))
            ).scalar()
            if visitor_id is None:
                return []
        return await fetch_sessions(
            conn,
            status=status,
            agent_id=agent_id,
            visitor_id=visitor_id,
            visible_to_agent=None if agent.admin else agent.id,
            since=_utc(since),
            until=_utc(until),
            limit=limit,
            offset=offset,
        )


async def _visible_session(sv: Services, me: Agent, session_id: str) -> dict[str, Any]:
    async with sv.store.read() as conn:
        row = await fetch_session(conn, session_id)
    if row is None or not (me.admin or row.agent_id == me.id or row.status == "queued"):
        raise ApiError(code=ErrorCode.no_such_session)  # another's session: not even its existence
    return session_view(row)


@router.get("/api/sessions/{session_id}", tags=["sessions"], response_model=SessionOut, responses=_ERRORS)
async def session_one(request: Request, session_id: IdP, agent: Me) -> Any:
    return await _visible_session(services_of(request), agent, session_id)


@router.get(
    "/api/sessions/{session_id}/messages",
    tags=["sessions"],
    response_model=list[MessageOut],
    responses=_ERRORS,
)
async def session_messages(
    request: Request,
    session_id: IdP,
    agent: Me,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Offset = 0,
) -> Any:
    """A session's messages in the order they were sent."""
    sv = services_of(request)
    await _visible_session(sv, agent, session_id)
    async with sv.store.read() as conn:
        return await fetch_messages(conn, session_id, limit=limit, offset=offset)


# --- calls (SPEC §4.3; docs/calls.md)


@router.get("/api/calls", tags=["calls"], response_model=list[CallOut], responses=_ERRORS)
async def calls_list(
    request: Request,
    agent: Me,
    status: Literal["ringing", "joining", "calling", "connected", "ended"] | None = None,
    agentName: NameQ = None,
    visitorName: NameQ = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Calls, newest first, with their members (invited, joined, left, outcome) and
    who ended them and why. An agent sees the calls it was in; an admin sees all."""
    sv = services_of(request)
    if agentName is not None and not agent.admin and agentName != agent.name:
        raise ApiError("an agent sees only its own calls", code=ErrorCode.forbidden)
    agent_id: int | None = None if agent.admin else agent.id
    if agentName is not None:
        async with sv.store.read() as conn:
            agent_id = (await conn.execute(select(agents.c.id).where(agents.c.name == agentName))).scalar()
        if agent_id is None:
            return []
    return await sv.calls.list_calls(
        agent_id=agent_id,
        visitor=visitorName,
        status=status,
        since=_utc(since),
        until=_utc(until),
        limit=limit,
        offset=offset,
    )


@router.get("/api/calls/{call_id}", tags=["calls"], response_model=CallOut, responses=_ERRORS)
async def call_one(request: Request, call_id: IdP, agent: Me) -> Any:
    """One call with its members."""
    sv = services_of(request)
    if not agent.admin and not await sv.calls.involves_agent(call_id, agent.id, supervisor=True):
        raise ApiError(code=ErrorCode.no_such_call)  # another's call: not even its existence
    record = await sv.calls.get_call(call_id)
    if record is None:
        raise ApiError(code=ErrorCode.no_such_call)
    return record


@router.get("/api/states", tags=["reference"], response_model=list[StateOut], responses=_errors(500))
async def states_table() -> Any:
    """Every agent state code with its name, top-level state and meaning (public)."""
    return [
        {
            "code": c.value,
            "name": c.name,
            "state": c.top.value,
            "meaning": CODE_INFO[c].meaning,
            "meaning_zh": CODE_INFO[c].meaning_zh,
            "addition": CODE_INFO[c].addition,
        }
        for c in Code
    ]


# --- media artifacts: photos, snapshots, recordings (SPEC §4.4; server/media.py)


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(f"at most {limit} bytes", code=ErrorCode.too_large)
    data = await request.body()
    if len(data) > limit:
        raise ApiError(f"at most {limit} bytes", code=ErrorCode.too_large)
    return data


@router.post(
    "/api/visitor/photo",
    tags=["media"],
    response_model=ArtifactOut,
    responses=_errors(400, 401, 403, 404, 413, 500, 507),
)
async def visitor_photo(request: Request, callId: IdQ, requestId: IdQ) -> Any:
    """A visitor's photo for the agent's ``takePhoto`` (body: the JPEG; headers
    ``X-Visitor-Name`` and ``X-Visitor-Key``; a name that is not ASCII is sent
    percent-encoded with ``X-Visitor-Name-Encoding: percent``). ``requestId`` is
    the agent's open request (``photoRequest``); each is answered once."""
    name = request.headers.get("x-visitor-name", "")
    if request.headers.get("x-visitor-name-encoding", "").lower() == "percent":
        name = unquote(name)  # a header value is ASCII: names such as 访客一 come percent-encoded
    key = request.headers.get("x-visitor-key", "")
    sv = services_of(request)
    upload = await sv.media.photo_allowed(name, key, callId, requestId)  # before the body is read
    data = await _body(request, sv.settings.max_image_bytes)
    return await sv.media.visitor_photo(upload, data, _client(request))


@router.post(
    "/api/media/snapshot",
    tags=["media"],
    response_model=ArtifactOut,
    responses=_errors(400, 401, 403, 404, 413, 500, 507),
)
async def agent_snapshot(request: Request, agent: Me, callId: IdQ) -> Any:
    """A snapshot the agent's plugin took of the visitor's video (body: the JPEG)."""
    sv = services_of(request)
    data = await _body(request, sv.settings.max_image_bytes)
    return await sv.media.agent_snapshot(agent, callId, data, _client(request))


async def _artifact_file(media: Any, art: Any, path: pathlib.Path) -> Response:
    """An artifact's file: as it is on disk, or decrypted while it is sent (evidence at rest)."""
    headers = {"X-Checksum-SHA256": art.sha256}
    segments = media.content(art, path)
    if segments is None:
        return FileResponse(path, media_type=art.content_type, headers=headers)
    try:
        first = await run_in_threadpool(next, segments, b"")
    except MediaKeyError as exc:
        log.error("%s %s cannot be decrypted: %s", art.kind, art.id, exc)
        raise ApiError("this artifact cannot be decrypted on this server", code=ErrorCode.internal) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for segment in iterate_in_threadpool(segments):
                yield segment
        finally:
            segments.close()  # the file, also when the reader went away mid-way

    headers["Content-Length"] = str(art.size)
    return StreamingResponse(body(), media_type=art.content_type, headers=headers)


@router.put(
    "/api/calls/{call_id}/recording",
    tags=["media"],
    response_model=ArtifactOut,
    responses=_errors(400, 401, 403, 404, 409, 413, 500, 507),
)
async def recording_chunk(
    request: Request,
    call_id: IdP,
    agent: Me,
    offset: Annotated[int, Query(ge=0, le=2**62)],
    final: bool = False,
) -> Any:
    """A chunk of the call's recording, written at ``offset``; ``final`` closes it (checksum).

    ``offset`` is at most the size stored so far (no holes; the error names the
    expected offset); after ``final`` the recording never changes (409
    ``recording_finished``); a recording is at most ``max_recording_bytes``."""
    sv = services_of(request)
    data = await _body(request, sv.settings.max_recording_chunk_bytes)
    return await sv.media.recording_chunk(agent, call_id, offset, data, final, _client(request))


@router.get(
    "/api/calls/{call_id}/recording",
    tags=["media"],
    response_class=FileResponse,
    responses={**_FILE, **_WRITES},
)
async def recording(request: Request, call_id: IdP, agent: Me) -> Response:
    """The call's recording (WebM), for the call's agents and admins; every read is audited."""
    sv = services_of(request)
    art, path = await sv.media.recording_of(agent, call_id, _client(request))
    return await _artifact_file(sv.media, art, path)


@router.get("/api/calls/{call_id}/media", tags=["media"], response_model=list[ArtifactOut], responses=_ERRORS)
async def call_media(request: Request, call_id: IdP, agent: Me) -> Any:
    """The photos, snapshots and recording of a call."""
    return await services_of(request).media.of_call(agent, call_id)


@router.get(
    "/api/media/{artifact_id}", tags=["media"], response_class=FileResponse, responses={**_FILE, **_WRITES}
)
async def media_one(request: Request, artifact_id: IdP, agent: Me) -> Response:
    """One photo, snapshot or recording; every read is audited."""
    sv = services_of(request)
    art, path = await sv.media.read(agent, artifact_id, _client(request))
    return await _artifact_file(sv.media, art, path)
