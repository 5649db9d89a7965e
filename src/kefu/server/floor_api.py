"""HTTP of the floor (issue 20): the supervisors' live view, the day's figures,
not-ready reasons, teams, wrap-up codes, a supervisor's actions on an agent.

The floor and the figures are for supervisors (their teams' agents) and admins
(everyone); anyone else gets ``forbidden`` (403, the spec's error form). The
live forms are Server-Sent Events (``text/event-stream``): the browser's
``EventSource`` sends the login cookie, an integrator ``Authorization:
Bearer``; each event's ``data`` is the whole view (a frame replaces the one
before, as the queue pushes do), and a comment line every
``KEEPALIVE`` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kefu.protocol import ApiError, ErrorCode, InvalidTransition
from kefu.protocol.machine import Event, Flow

from .accounts import Agent, find_agent
from .api_deps import Me, services_of
from .api_models import ERRORS as _ERRORS
from .reasons import add_reason, list_reasons, record_wrap_up, remove_reason
from .services import Services
from .store import aware
from .teams import Viewer, add_team, assign, list_teams, viewer_of

__all__ = ["KEEPALIVE", "router"]

router = APIRouter()
KEEPALIVE = 15.0  # seconds between keep-alive comments on an idle stream


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=32)]
    label: Annotated[str, Field(min_length=1, max_length=128)]


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64)]
    wrapUpSeconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    wrapUpExtend: bool = False


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: Annotated[str, Field(min_length=1, max_length=64)]
    remove: bool = False


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["idle", "busy"]
    reason: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class WrapUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=32)]
    sessionId: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    callId: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    note: Annotated[str, Field(max_length=512)] | None = None


async def _viewer(sv: Services, me: Agent) -> Viewer:
    async with sv.store.read() as conn:
        return await viewer_of(conn, me)


def _admin(me: Agent) -> None:
    if not me.admin:
        raise ApiError("only an admin may do this", code=ErrorCode.forbidden)


def _sse(sv: Services, viewer: Viewer, name: str, metrics_only: bool) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        async with sv.floor.subscribe(viewer, metrics_only=metrics_only) as sub:
            yield "retry: 1000\n\n"
            while not sub.closed:
                frame = await sub.next(KEEPALIVE)
                if frame is None:
                    if not sub.closed:
                        yield ": keep-alive\n\n"
                    continue
                body = frame["metrics"] if metrics_only else frame
                yield f"event: {name}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # nginx: do not buffer
    )


# --- the floor and the figures


@router.get("/api/floor", tags=["floor"], responses=_ERRORS)
async def floor(request: Request, me: Me) -> Any:
    """The floor now: every agent the viewer sees (state, meaning, reason, since, open
    sessions, calls), the queue with each visitor's wait, and today's figures."""
    sv = services_of(request)
    return await sv.floor.snapshot(await _viewer(sv, me))


@router.get("/api/floor/stream", tags=["floor"], responses=_ERRORS)
async def floor_stream(request: Request, me: Me) -> StreamingResponse:
    """The floor, live (SSE ``event: floor``): a frame now, then one after each change."""
    sv = services_of(request)
    return _sse(sv, await _viewer(sv, me), "floor", False)


@router.get("/api/metrics", tags=["floor"], responses=_ERRORS)
async def metrics(
    request: Request,
    me: Me,
    since: datetime | None = None,
    until: datetime | None = None,
    slaSeconds: Annotated[float, Query(ge=0, le=86400)] | None = None,
) -> Any:
    """The figures over [since, until) (default: today, UTC, so far): offered, answered,
    answered within ``slaSeconds`` (default ``--service-level-seconds``), service level,
    abandoned, waiting, average wait, average handle time, not-ready time by reason."""
    sv = services_of(request)
    return await sv.floor.metrics(
        await _viewer(sv, me), since=aware(since), until=aware(until), sla_seconds=slaSeconds
    )


@router.get("/api/metrics/stream", tags=["floor"], responses=_ERRORS)
async def metrics_stream(request: Request, me: Me) -> StreamingResponse:
    """Today's figures, live (SSE ``event: metrics``), for integrators."""
    sv = services_of(request)
    return _sse(sv, await _viewer(sv, me), "metrics", True)


# --- reasons and wrap-up codes


@router.get("/api/reasons", tags=["floor"], responses=_ERRORS)
async def reasons_list(request: Request, me: Me) -> Any:
    """The catalogue of not-ready reasons (every agent may read it)."""
    async with services_of(request).store.read() as conn:
        return await list_reasons(conn)


@router.post("/api/reasons", tags=["floor"], status_code=201, responses=_ERRORS)
async def reasons_add(request: Request, me: Me, body: ReasonIn) -> Any:
    """Add a not-ready reason (admin)."""
    _admin(me)
    sv = services_of(request)
    return await add_reason(sv.store, body.code, body.label, now=sv.settings.now())


@router.delete("/api/reasons/{code}", tags=["floor"], status_code=204, responses=_ERRORS)
async def reasons_remove(request: Request, me: Me, code: str) -> None:
    """Remove a not-ready reason (admin); the history keeps the code."""
    _admin(me)
    await remove_reason(services_of(request).store, code)


@router.post("/api/wrapups", tags=["floor"], status_code=201, responses=_ERRORS)
async def wrap_up(request: Request, me: Me, body: WrapUpIn) -> Any:
    """Record a wrap-up code for one of the caller's sessions or calls."""
    sv = services_of(request)
    return await record_wrap_up(
        sv.store,
        me,
        body.code,
        session_id=body.sessionId,
        call_id=body.callId,
        note=body.note,
        now=sv.settings.now(),
    )


# --- teams


@router.get("/api/teams", tags=["floor"], responses=_ERRORS)
async def teams_list(request: Request, me: Me) -> Any:
    """Teams with their members, supervisors and wrap-up policy (supervisors: their teams)."""
    sv = services_of(request)
    viewer = await _viewer(sv, me)
    async with sv.store.read() as conn:
        rows = await list_teams(conn)
    return [t for t in rows if viewer.admin or viewer.name in t["supervisors"]]


@router.post("/api/teams", tags=["floor"], status_code=201, responses=_ERRORS)
async def teams_add(request: Request, me: Me, body: TeamIn) -> Any:
    """Add a team (admin)."""
    _admin(me)
    sv = services_of(request)
    out = await add_team(
        sv.store,
        body.name,
        now=sv.settings.now(),
        wrap_up_seconds=body.wrapUpSeconds,
        wrap_up_extend=body.wrapUpExtend,
    )
    await sv.agents.reload_policies()
    return out


@router.post("/api/teams/{name}/members", tags=["floor"], responses=_ERRORS)
async def teams_member(request: Request, me: Me, name: str, body: MemberIn) -> Any:
    """Put an agent in the team, or take it out (admin)."""
    _admin(me)
    sv = services_of(request)
    await assign(sv.store, name, body.agent, remove=body.remove)
    await sv.agents.reload_policies()
    sv.floor.changed()
    return {"team": name, "agent": body.agent, "member": not body.remove}


# --- a supervisor's actions on an agent


async def _target(sv: Services, me: Agent, name: str) -> tuple[Viewer, Agent]:
    async with sv.store.read() as conn:
        viewer = await viewer_of(conn, me)
        target = await find_agent(conn, name=name)
    if target is None or not viewer.sees(target.id):
        raise ApiError(code=ErrorCode.no_such_agent)  # another team's agent: not even its existence
    return viewer, target


async def _act(sv: Services, me: Agent, name: str, event: Event, reason: str | None) -> dict[str, Any]:
    _, target = await _target(sv, me, name)
    try:
        change = await sv.agents.apply(target.id, Flow.agent, event, reason=reason, actor=me.name)
    except InvalidTransition as exc:
        raise ApiError(str(exc), code=ErrorCode.invalid_state) from None
    return {
        "agent": target.name,
        "old": change.before.state.code.value,
        "state": change.after.state.code.value,
        "reason": reason,
        "by": me.name,
    }


@router.post("/api/agents/{name}/state", tags=["floor"], responses=_ERRORS)
async def agent_set_state(request: Request, me: Me, name: str, body: StateIn) -> Any:
    """Make one of the supervisor's agents ready (``idle``) or not ready (``busy``, with a
    reason of the catalogue); the history records who did it."""
    event = Event.setReady if body.state == "idle" else Event.setNotReady
    return await _act(services_of(request), me, name, event, body.reason)


@router.post("/api/agents/{name}/logout", tags=["floor"], responses=_ERRORS)
async def agent_logout(request: Request, me: Me, name: str) -> Any:
    """Log one of the supervisor's agents out (000000); the history records who did it."""
    return await _act(services_of(request), me, name, Event.logout, "logout")
