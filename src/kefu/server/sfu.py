"""The SFU mode (``kefu server --janus URL``): every call gets a VideoRoom room in Janus.

Theory of operation
-------------------
A call is created only once its room exists: :meth:`Sfu.open` asks Janus for a
room (a random number, a random secret, recording into ``--janus-recordings``
when set) before the call's transaction, and the call's creation stores the
room beside the call (``media_rooms``) in that transaction, so any node finds
it. Janus down means no room, hence no call: the API that would have created it
is refused with ``media_server_unavailable`` and nothing changes (no state code,
no push). A room whose call's transaction failed is destroyed again.

When the call ends, the room is destroyed (every member's handles go with it)
after the commit, and its row gets ``closed_at``. A room Janus has already lost
(a restart) is simply marked closed.

The room's secret never leaves the server (docs/decisions.md D22).
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import insert, select, update

from .hub import Tx
from .janus import JanusClient, MediaServerError, Room
from .schema import media_rooms
from .settings import Settings
from .sfu_relay import Push, SfuRelay
from .store import Store
from .tasks import Background

__all__ = ["MediaServerError", "Sfu"]

log = logging.getLogger("kefu.server.sfu")


class Sfu:
    """The calls' rooms in Janus."""

    def __init__(self, settings: Settings, store: Store, push: Push) -> None:
        assert settings.janus_url is not None
        self.s = settings
        self.store = store
        self.janus = JanusClient(
            settings.janus_url,
            api_secret=settings.janus_api_secret,
            admin_key=settings.janus_admin_key,
            timeout=settings.janus_timeout,
        )
        self._closing = Background(log)  # rooms of ended calls being destroyed
        # the members' publishers and subscriptions (sfu_relay.py); push: a signal to a member
        self.relay = SfuRelay(self.janus, self.room_of, push)

    async def open(self, call_id: str) -> Room:
        """A room for a new call (before its transaction); ``MediaServerError`` when Janus is down."""
        record = str(self.s.janus_recordings) if self.s.janus_recordings is not None else None
        room = await self.janus.create_room(call_id, record_dir=record)
        log.info("call %s: media room %d", call_id, room.number)
        return room

    async def store_room(self, tx: Tx, room: Room) -> None:
        """Keep the room beside its call, in the call's transaction."""
        await tx.conn.execute(
            insert(media_rooms).values(
                call_id=room.call_id, room=room.number, secret=room.secret, created_at=tx.now
            )
        )

    async def discard(self, room: Room) -> None:
        """A room whose call was not created after all."""
        with contextlib.suppress(MediaServerError):
            await self.janus.destroy_room(room)

    async def room_of(self, call_id: str) -> Room | None:
        async with self.store.read() as c:
            row = (
                await c.execute(
                    select(media_rooms.c.room, media_rooms.c.secret).where(
                        media_rooms.c.call_id == call_id, media_rooms.c.closed_at.is_(None)
                    )
                )
            ).first()
        return None if row is None else Room(number=int(row.room), secret=row.secret, call_id=call_id)

    def ended(self, call_id: str) -> None:
        """The call ended (after its commit): destroy its room in the background."""
        self._closing.spawn(self.close(call_id), f"kefu-sfu-close-{call_id}")

    async def close(self, call_id: str) -> None:
        room = await self.room_of(call_id)
        if room is None:
            return
        try:
            await self.janus.destroy_room(room)
        except MediaServerError as exc:
            # Janus lost it (a restart) or is down: the room is gone with it either way
            log.warning("call %s: media room %d not destroyed (%s)", call_id, room.number, exc)
        async with self.store.write() as conn:
            await conn.execute(
                update(media_rooms)
                .where(media_rooms.c.call_id == call_id, media_rooms.c.closed_at.is_(None))
                .values(closed_at=self.s.now())
            )

    async def aclose_pending(self) -> None:
        """Wait for the rooms of ended calls to be destroyed."""
        await self._closing.settled()

    async def aclose(self) -> None:
        """After the calls' timers stopped, before the store closes: the rooms of ended calls
        are destroyed first (each bounded by ``janus_timeout``)."""
        await self.relay.aclose()
        await self._closing.settled()
        await self._closing.close()
        await self.janus.aclose()
