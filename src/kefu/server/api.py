"""HTTP: login (``/doLogin`` as the spec's sample URL, ``POST /api/login``) and
the REST API under ``/api`` (OpenAPI at ``/docs``).

Every ``/api`` route but login needs a token: ``Authorization: Bearer …`` or
the ``kefu_token`` cookie that ``/doLogin`` sets. An agent sees its own data
(and the waiting queue); an admin sees everything. Errors have the spec's
form, ``{"error": {"code", "msg"}}``, with the catalogue's HTTP status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from kefu.protocol import CODE_INFO, ApiError, Code, ErrorCode

from .accounts import Agent, find_agent, list_agents
from .auth import Login
from .hub import agent_key
from .media import MAX_IMAGE_BYTES
from .schema import agents, visitors
from .services import Services
from .store import aware
from .views import fetch_messages, fetch_session, fetch_sessions, session_view

__all__ = ["COOKIE", "router"]

COOKIE = "kefu_token"
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
    name: Annotated[str, Field(min_length=1, max_length=64)]
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


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


# --- helpers


def services_of(request: Request) -> Services:
    sv: Services = request.app.state.services
    return sv


async def current_agent(
    request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Agent:
    token = cred.credentials if cred is not None else request.cookies.get(COOKIE)
    if not token:
        raise ApiError("send Authorization: Bearer <token> (from /api/login)", code=ErrorCode.unauthenticated)
    return await services_of(request).auth.check(token)


Me = Annotated[Agent, Depends(current_agent)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


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
    responses={**_ERRORS, 303: {"description": "logged in; redirect to returnTo"}, 429: {"model": ErrorOut}},
)
async def do_login(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=64)],
    pwd: Annotated[str, Query(min_length=1, max_length=256)],
    returnTo: str = "",  # the spec's parameter name
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


@router.post(
    "/api/login", tags=["login"], response_model=LoginOut, responses={**_ERRORS, 429: {"model": ErrorOut}}
)
async def api_login(request: Request, body: LoginIn) -> Response:
    """Log in with JSON ``{"name", "password"}``; the answer carries the token and its expiry."""
    login = await services_of(request).auth.login(body.name, body.password, _client(request))
    return _login_response(login, request, JSONResponse(login.to_json()))


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
async def agent_one(request: Request, name: str, agent: Me) -> Any:
    return await _visible_agent(services_of(request), agent, name)


@router.get(
    "/api/agents/{name}/states", tags=["agents"], response_model=list[StateChangeOut], responses=_ERRORS
)
async def agent_states(
    request: Request,
    name: str,
    agent: Me,
    since: datetime | None = None,
    until: datetime | None = None,
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
    return aware(value)


# --- sessions


@router.get("/api/sessions", tags=["sessions"], response_model=list[SessionOut], responses=_ERRORS)
async def sessions_list(
    request: Request,
    agent: Me,
    status: Literal["queued", "open", "closed"] | None = None,
    agentName: str | None = None,
    visitorName: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
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
async def session_one(request: Request, session_id: str, agent: Me) -> Any:
    return await _visible_session(services_of(request), agent, session_id)


@router.get(
    "/api/sessions/{session_id}/messages",
    tags=["sessions"],
    response_model=list[MessageOut],
    responses=_ERRORS,
)
async def session_messages(
    request: Request,
    session_id: str,
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


@router.get("/api/calls", tags=["calls"], responses=_ERRORS)
async def calls_list(
    request: Request,
    agent: Me,
    status: Literal["ringing", "joining", "calling", "connected", "ended"] | None = None,
    agentName: str | None = None,
    visitorName: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
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


@router.get("/api/calls/{call_id}", tags=["calls"], responses=_ERRORS)
async def call_one(request: Request, call_id: str, agent: Me) -> Any:
    """One call with its members."""
    sv = services_of(request)
    if not agent.admin and not await sv.calls.involves_agent(call_id, agent.id):
        raise ApiError(code=ErrorCode.no_such_call)  # another's call: not even its existence
    record = await sv.calls.get_call(call_id)
    if record is None:
        raise ApiError(code=ErrorCode.no_such_call)
    return record


@router.get("/api/states", tags=["reference"])
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


@router.post("/api/visitor/photo", tags=["media"], responses=_ERRORS)
async def visitor_photo(
    request: Request,
    callId: Annotated[str, Query(min_length=1, max_length=64)],
    requestId: Annotated[str, Query(min_length=1, max_length=64)],
) -> Any:
    """A visitor's photo for the agent's ``takePhoto`` (body: the JPEG; headers
    ``X-Visitor-Name`` and ``X-Visitor-Key``; a name that is not ASCII is sent
    percent-encoded with ``X-Visitor-Name-Encoding: percent``)."""
    name = request.headers.get("x-visitor-name", "")
    if request.headers.get("x-visitor-name-encoding", "").lower() == "percent":
        name = unquote(name)  # a header value is ASCII: names such as 访客一 come percent-encoded
    key = request.headers.get("x-visitor-key", "")
    data = await _body(request, MAX_IMAGE_BYTES)
    return await services_of(request).media.visitor_photo(name, key, callId, requestId, data)


@router.post("/api/media/snapshot", tags=["media"], responses=_ERRORS)
async def agent_snapshot(
    request: Request, agent: Me, callId: Annotated[str, Query(min_length=1, max_length=64)]
) -> Any:
    """A snapshot the agent's plugin took of the visitor's video (body: the JPEG)."""
    data = await _body(request, MAX_IMAGE_BYTES)
    return await services_of(request).media.agent_snapshot(agent, callId, data)


@router.put("/api/calls/{call_id}/recording", tags=["media"], responses=_ERRORS)
async def recording_chunk(
    request: Request,
    call_id: str,
    agent: Me,
    offset: Annotated[int, Query(ge=0)],
    final: bool = False,
) -> Any:
    """A chunk of the call's recording, written at ``offset``; ``final`` closes it (checksum)."""
    data = await _body(request, 64 * 1024 * 1024)
    return await services_of(request).media.recording_chunk(agent, call_id, offset, data, final)


@router.get("/api/calls/{call_id}/recording", tags=["media"], responses=_ERRORS)
async def recording(request: Request, call_id: str, agent: Me) -> Response:
    """The call's recording (WebM), for the call's agents and admins; every read is audited."""
    art, data = await services_of(request).media.recording_of(agent, call_id)
    return Response(data, media_type=art.content_type, headers={"X-Checksum-SHA256": art.sha256})


@router.get("/api/calls/{call_id}/media", tags=["media"], responses=_ERRORS)
async def call_media(request: Request, call_id: str, agent: Me) -> Any:
    """The photos, snapshots and recording of a call."""
    return await services_of(request).media.of_call(agent, call_id)


@router.get("/api/media/{artifact_id}", tags=["media"], responses=_ERRORS)
async def media_one(request: Request, artifact_id: str, agent: Me) -> Response:
    """One photo, snapshot or recording; every read is audited."""
    art, data = await services_of(request).media.read(agent, artifact_id)
    return Response(data, media_type=art.content_type, headers={"X-Checksum-SHA256": art.sha256})
