"""The agent's ``takePhoto`` requests (SPEC §4.4; issue 15): what a visitor's photo or
``photoAnswer`` answers, once, within ``photo_request_ttl``; at most ``photo_max_open`` open."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode

from .schema import photo_requests
from .settings import Settings
from .store import new_id

__all__ = ["answer_photo_request", "open_photo_request", "open_request_where"]


async def open_photo_request(
    conn: AsyncConnection, settings: Settings, *, call_id: str, agent_id: int, visitor_name: str, now: Any
) -> str:
    """Record a new takePhoto request of the call's agent; its id. More than
    ``photo_max_open`` unanswered ones in the call: ``rate_limited``."""
    since = now - timedelta(seconds=settings.photo_request_ttl)
    open_now = (
        await conn.execute(
            select(func.count())
            .select_from(photo_requests)
            .where(
                photo_requests.c.call_id == call_id,
                photo_requests.c.answered_at.is_(None),
                photo_requests.c.created_at >= since,
            )
        )
    ).scalar_one()
    if open_now >= settings.photo_max_open:
        raise ApiError(
            f"{open_now} photo requests of this call are not answered yet; wait for them",
            code=ErrorCode.rate_limited,
        )
    request_id = new_id()
    await conn.execute(
        insert(photo_requests).values(
            id=request_id, call_id=call_id, agent_id=agent_id, visitor_name=visitor_name, created_at=now
        )
    )
    return request_id


def open_request_where(settings: Settings, request_id: str, call_id: str, visitor_name: str, now: Any) -> Any:
    return (
        photo_requests.c.id == request_id,
        photo_requests.c.call_id == call_id,
        photo_requests.c.visitor_name == visitor_name,
        photo_requests.c.answered_at.is_(None),
        photo_requests.c.created_at >= now - timedelta(seconds=settings.photo_request_ttl),
    )


async def answer_photo_request(
    conn: AsyncConnection,
    settings: Settings,
    *,
    request_id: str,
    call_id: str,
    visitor_name: str,
    answer: str,
    now: Any,
) -> None:
    """Mark the request answered (once); ``no_such_request`` if it is not open for this visitor."""
    done = await conn.execute(
        update(photo_requests)
        .where(*open_request_where(settings, request_id, call_id, visitor_name, now))
        .values(answered_at=now, answer=answer)
    )
    if done.rowcount != 1:
        raise ApiError(
            "no open takePhoto request with this id for you in this call", code=ErrorCode.no_such_request
        )
