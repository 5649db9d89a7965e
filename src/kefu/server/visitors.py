"""Visitors: a name (the ``visitorName`` of the spec's call APIs) and an id.

The first ``hello`` with a new name creates the visitor and gives it a
``visitorKey`` (random, 192 bits; only its SHA-256 is stored). A later
``hello`` with that name must bring the key, so nobody takes over another
visitor's name, session or history.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.protocol import ApiError, ErrorCode

from .hub import Hub, open_mailbox, visitor_key
from .schema import visitors
from .store import aware, new_id

__all__ = ["LAST_SEEN_RESOLUTION", "Visitor", "identify"]


@dataclass(frozen=True, slots=True)
class Visitor:
    id: str
    name: str

    @property
    def recipient(self) -> str:
        return visitor_key(self.id)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


#: ``last_seen_at`` is kept to this resolution: a visitor reconnecting within it (a
#: reconnect storm, a flaky phone) is identified by a read alone, with no write.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)


_BY_NAME = select(visitors.c.id, visitors.c.name, visitors.c.key_hash, visitors.c.last_seen_at).where(
    visitors.c.name == bindparam("name")
)


#: Reads more on the same connection once the visitor is known (``identify(read_also=…)``).
ReadAlso = Callable[[AsyncConnection, "Visitor"], Awaitable[Any]]


async def _known(
    hub: Hub, name: str, key: str | None, read_also: ReadAlso | None
) -> tuple[Visitor, Any] | None:
    also: Any = None
    async with hub.store.read() as conn:
        row = (await conn.execute(_BY_NAME, {"name": name})).first()
        if row is None:
            return None
        if key is None or not hmac.compare_digest(_hash(key), row.key_hash):
            raise ApiError("this visitor name is taken; send its visitorKey", code=ErrorCode.forbidden)
        visitor = Visitor(row.id, row.name)
        seen = aware(row.last_seen_at)
        stale = seen is None or hub.settings.now() - seen >= LAST_SEEN_RESOLUTION
        if read_also is not None and not stale:
            also = await read_also(conn, visitor)  # the usual reconnect: one connection, no write
    if stale:
        async with hub.transaction() as tx:
            await tx.conn.execute(update(visitors).where(visitors.c.id == row.id).values(last_seen_at=tx.now))
        if read_also is not None:
            async with hub.store.read() as conn:
                also = await read_also(conn, visitor)
    return visitor, also


async def identify(
    hub: Hub, name: str, key: str | None, *, read_also: ReadAlso | None = None
) -> tuple[Visitor, str, Any]:
    """The visitor called ``name`` (created if new), its key, and what ``read_also``
    read for it (``None`` without it).

    Raises ``forbidden`` when the name exists and ``key`` is not its key."""
    if not name.isprintable() or name != name.strip():
        raise ApiError("a visitor name is printable, without spaces around it", code=ErrorCode.invalid_field)
    for _ in range(2):  # a second round if another connection created the name meanwhile
        known = await _known(hub, name, key, read_also)
        if known is not None:
            assert key is not None
            return known[0], key, known[1]
        new_key = secrets.token_urlsafe(24)
        vid = new_id()
        try:
            async with hub.transaction() as tx:
                await tx.conn.execute(
                    insert(visitors).values(
                        id=vid, name=name, key_hash=_hash(new_key), created_at=tx.now, last_seen_at=tx.now
                    )
                )
                await open_mailbox(tx.conn, visitor_key(vid))
        except IntegrityError:
            continue
        visitor = Visitor(vid, name)
        if read_also is None:
            return visitor, new_key, None
        async with hub.store.read() as conn:
            return visitor, new_key, await read_also(conn, visitor)
    raise ApiError("this visitor name is taken; send its visitorKey", code=ErrorCode.forbidden)
