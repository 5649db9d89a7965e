"""REST for integrators (admins): webhooks and the event stream (docs/integrations.md).

- ``POST/GET /api/webhooks``, ``GET/DELETE /api/webhooks/{id}``,
  ``GET /api/webhooks/{id}/deliveries`` (:mod:`kefu.server.webhooks`);
- ``GET /api/events?after=&limit=`` and its live form ``GET /api/events/stream``
  (Server-Sent Events; ``Last-Event-ID`` resumes) over :class:`kefu.server.events.Journal`.

The cursor is the event's ``pos`` as a string; an event id is accepted too.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kefu.protocol import ApiError, ErrorCode

from .accounts import Agent
from .api_deps import current_agent, services_of
from .api_models import ERRORS as _ERRORS
from .events import Journal

__all__ = ["router"]

router = APIRouter()


async def admin(agent: Annotated[Agent, Depends(current_agent)]) -> Agent:
    if not agent.admin:
        raise ApiError("integrations are for admins", code=ErrorCode.forbidden)
    return agent


Admin = Annotated[Agent, Depends(admin)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[str], Field(min_length=1, max_length=64)]
    secret: Annotated[str | None, Field(min_length=16, max_length=256)] = Field(
        default=None, description="the HMAC key (16+ characters); made for you when left out"
    )


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    createdAt: str
    createdBy: str
    secret: str | None = Field(default=None, description="only in the answer that creates it")


class EventOut(BaseModel):
    id: str
    type: str
    at: str
    stream: str
    seq: int
    cursor: str
    data: dict[str, Any]


class EventsOut(BaseModel):
    events: list[EventOut]
    cursor: str = Field(description="pass as the next `after`")


@router.post("/api/webhooks", tags=["integrations"], response_model=WebhookOut, responses=_ERRORS)
async def webhook_add(request: Request, body: WebhookIn, me: Admin) -> Any:
    """Register an endpoint for the event types listed (``"*"``, a type, or ``"call.*"``).
    The answer shows the secret this once; it is never shown or logged again."""
    secret = body.secret or secrets.token_urlsafe(32)
    hook = await services_of(request).webhooks.register(body.url, body.events, secret, me.name)
    return {**hook, "secret": secret}


@router.get("/api/webhooks", tags=["integrations"], response_model=list[WebhookOut], responses=_ERRORS)
async def webhook_list(request: Request, _me: Admin) -> Any:
    return await services_of(request).webhooks.all()


@router.get("/api/webhooks/{hook_id}", tags=["integrations"], response_model=WebhookOut, responses=_ERRORS)
async def webhook_one(request: Request, hook_id: str, _me: Admin) -> Any:
    return await services_of(request).webhooks.get(hook_id)


@router.delete("/api/webhooks/{hook_id}", tags=["integrations"], status_code=204, responses=_ERRORS)
async def webhook_delete(request: Request, hook_id: str, me: Admin) -> Response:
    """Delete the endpoint and its pending deliveries."""
    await services_of(request).webhooks.delete(hook_id, me.name)
    return Response(status_code=204)


@router.get("/api/webhooks/{hook_id}/deliveries", tags=["integrations"], responses=_ERRORS)
async def webhook_deliveries(
    request: Request,
    hook_id: str,
    _me: Admin,
    status: Literal["pending", "delivered", "failed"] | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The endpoint's deliveries in event order: status, attempts, last HTTP status or error,
    next attempt, time delivered."""
    sv = services_of(request)
    cursor = await _cursor(sv.journal, after)
    return await sv.webhooks.deliveries(hook_id, status=status, after=cursor, limit=limit)


async def _cursor(journal: Journal, after: str | None) -> int:
    """A cursor (``pos``) or an event id → ``pos``; none → the beginning."""
    if after is None or after == "":
        return 0
    if after.isdigit() and len(after) < 19:
        return int(after)
    found = await journal.cursor_of(after) if len(after) == 32 else None
    if found is None:
        raise ApiError("after: a cursor or an event id", code=ErrorCode.invalid_field)
    return found


@router.get("/api/events", tags=["integrations"], response_model=EventsOut, responses=_ERRORS)
async def events_page(
    request: Request,
    _me: Admin,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The events after the cursor ``after`` (none: from the first), oldest first."""
    journal = services_of(request).journal
    cursor = await _cursor(journal, after)
    got = await journal.after(cursor, limit)
    return {"events": got, "cursor": got[-1]["cursor"] if got else str(cursor)}


@router.get(
    "/api/events/stream",
    tags=["integrations"],
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
)
async def events_stream(request: Request, _me: Admin, after: str | None = None) -> Response:
    """Server-Sent Events: every event after ``after`` (or the ``Last-Event-ID`` header), then
    each new one as it comes. ``id:`` is the event's cursor."""
    sv = services_of(request)
    journal = sv.journal
    cursor = await _cursor(journal, request.headers.get("last-event-id") or after)
    keepalive = sv.settings.sse_keepalive

    async def stream() -> AsyncIterator[str]:
        nonlocal cursor
        yield "retry: 1000\n\n"
        while not journal.closed:
            got = await journal.after(cursor, 500)
            for e in got:
                data = json.dumps(e, ensure_ascii=False, separators=(",", ":"))
                yield f"id: {e['cursor']}\nevent: {e['type']}\ndata: {data}\n\n"
                cursor = int(e["cursor"])
            if len(got) == 500:
                continue
            before = journal.top
            await journal.wait(cursor, keepalive)
            if journal.top == before and journal.top <= cursor:
                yield ": keepalive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
