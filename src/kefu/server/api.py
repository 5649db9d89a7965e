"""HTTP: login (``/doLogin`` as the spec's sample URL, ``POST /api/login``) and
the REST API under ``/api`` (OpenAPI at ``/docs``).

Every ``/api`` route but login needs a token: ``Authorization: Bearer …`` or
the ``kefu_token`` cookie that ``/doLogin`` sets. An agent sees its own data
(and the waiting queue); an admin sees everything. Errors have the spec's
form, ``{"error": {"code", "msg"}}``, with the catalogue's HTTP status.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from kefu.protocol import CODE_INFO, ApiError, Code, ErrorCode

from . import api_media
from .accounts import Agent, find_agent, list_agents
from .api_deps import (
    COOKIE,
    Credentials,
    IdP,
    Limit,
    Me,
    NameP,
    NameQ,
    Offset,
    Time,
    client_address,
    login_response,
    request_token,
    services_of,
)
from .api_models import (
    ERRORS,
    LOGIN_ERRORS,
    PRINTABLE,
    AgentOut,
    CallOut,
    LoginIn,
    LoginOut,
    MessageOut,
    SessionOut,
    StateChangeOut,
    StateOut,
    error_answers,
)
from .hub import agent_key
from .schema import agents, visitors
from .services import Services
from .store import aware
from .views import fetch_messages, fetch_session, fetch_sessions, session_view

__all__ = ["COOKIE", "router"]

log = logging.getLogger("kefu.server.api")
router = APIRouter()


# --- login


@router.get(
    "/doLogin",
    tags=["login"],
    response_model=LoginOut,
    responses={**LOGIN_ERRORS, 303: {"description": "logged in; redirect to returnTo"}},
)
async def do_login(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=64, pattern=PRINTABLE)],
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
    login = await sv.auth.login(name, pwd, client_address(request))
    wants_json = "application/json" in request.headers.get("accept", "")
    if returnTo and not wants_json:
        return login_response(login, request, RedirectResponse(returnTo, status_code=303))
    return login_response(login, request, JSONResponse(login.to_json()))


@router.post("/api/login", tags=["login"], response_model=LoginOut, responses=LOGIN_ERRORS)
async def api_login(request: Request, body: LoginIn) -> Response:
    """Log in with JSON ``{"name", "password"}``; the answer carries the token and its expiry."""
    login = await services_of(request).auth.login(body.name, body.password, client_address(request))
    return login_response(login, request, JSONResponse(login.to_json()))


@router.post("/api/logout", tags=["login"], status_code=204, responses=ERRORS)
async def api_logout(request: Request, cred: Credentials) -> Response:
    """Revoke the token presented (header or cookie): it is refused from now on with
    ``token_revoked``, and the sockets that logged in with it are closed (4003) within
    ``login_check_interval`` on every node, at once on this one. The cookie is cleared."""
    sv = services_of(request)
    grant = await sv.auth.grant(request_token(request, cred))
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


@router.get("/api/me", tags=["agents"], response_model=AgentOut, responses=ERRORS)
async def me(request: Request, agent: Me) -> Any:
    """The agent the token belongs to, with its current state."""
    return (await _agent_rows(services_of(request), agent.name))[0]


@router.get("/api/agents", tags=["agents"], response_model=list[AgentOut], responses=ERRORS)
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


@router.get("/api/agents/{name}", tags=["agents"], response_model=AgentOut, responses=ERRORS)
async def agent_one(request: Request, name: NameP, agent: Me) -> Any:
    return await _visible_agent(services_of(request), agent, name)


@router.get(
    "/api/agents/{name}/states", tags=["agents"], response_model=list[StateChangeOut], responses=ERRORS
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


@router.get("/api/sessions", tags=["sessions"], response_model=list[SessionOut], responses=ERRORS)
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


@router.get("/api/sessions/{session_id}", tags=["sessions"], response_model=SessionOut, responses=ERRORS)
async def session_one(request: Request, session_id: IdP, agent: Me) -> Any:
    return await _visible_session(services_of(request), agent, session_id)


@router.get(
    "/api/sessions/{session_id}/messages",
    tags=["sessions"],
    response_model=list[MessageOut],
    responses=ERRORS,
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


@router.get("/api/calls", tags=["calls"], response_model=list[CallOut], responses=ERRORS)
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


@router.get("/api/calls/{call_id}", tags=["calls"], response_model=CallOut, responses=ERRORS)
async def call_one(request: Request, call_id: IdP, agent: Me) -> Any:
    """One call with its members."""
    sv = services_of(request)
    if not agent.admin and not await sv.calls.involves_agent(call_id, agent.id, supervisor=True):
        raise ApiError(code=ErrorCode.no_such_call)  # another's call: not even its existence
    record = await sv.calls.get_call(call_id)
    if record is None:
        raise ApiError(code=ErrorCode.no_such_call)
    return record


@router.get("/api/states", tags=["reference"], response_model=list[StateOut], responses=error_answers(500))
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


router.include_router(api_media.router)  # the media routes, after these (their OpenAPI order)
