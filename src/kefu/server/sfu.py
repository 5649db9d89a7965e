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

Recording (``--janus-recordings``): the first publisher whose media reaches
Janus (its ``webrtcup``) starts the call's recording: ``calls.recording`` says
``recording`` with the time, a ``recording.started`` event is journalled and
the call's agents get a ``recording`` push. When the room is gone, the call's
``.mjr`` files are made into one file (:mod:`kefu.server.recording`, in
subprocesses, ``recording_workers`` calls at a time) and stored as the call's
recording artifact with its SHA-256 (``recording.ready``); anything that goes
wrong is ``recording.failed`` with the reason, in the record and pushed.

Several nodes (``--redis``): the node that created a call's room drives its
handles in Janus; the others hand it the members' signals and the call's
changes (:mod:`kefu.server.sfu_nodes`, D46). :meth:`signal`, :meth:`sync` and
:meth:`ended` choose where each runs.

Janus lost mid-call (killed, or restarted: its session is gone, and with it
every room and handle): every call with an open room ends at once with
``media_server_lost`` (``end_call``, set by the services: the call service's
:meth:`~kefu.server.calls.CallService.media_server_lost`), every member told
as for any end; the recording is then made from the ``.mjr`` files Janus had
written until it died.

The room's node lost mid-call (several nodes: its process killed, or its host
gone; Janus is alive): the call's handles were in that node's Janus session,
which nobody drives any more, so its media would stop without an end. Every
other node hears the node go (its beats on the bus stop for ``presence_ttl``,
or its ``bye``: :attr:`RedisBus.on_node_gone`) and ends its calls with
``media_server_lost`` (the same ``end_call``); the node where the end commits
destroys the room (Janus stops recording and writes the files) and makes the
recording from the ``.mjr`` files as for any end (docs/decisions.md D48). A
node that restarts under the same id ends the calls its previous run drove
(:meth:`end_orphans`): its Janus session is a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, or_, select, update

from kefu.protocol import ApiError
from kefu.protocol.call import CallPhase

from .hub import Tx
from .janus import JanusClient, MediaServerError, Room
from .media import Media
from .recording import Composer, RecordingError, remove_room_files, tracks_of_room
from .schema import calls, media_rooms
from .settings import Settings
from .sfu_nodes import InOrder, SfuNodes
from .sfu_relay import Member, Push, SfuRelay
from .store import Store, iso
from .tasks import Background

__all__ = ["MediaServerError", "Sfu"]

log = logging.getLogger("kefu.server.sfu")

_OWNERS_KEPT = 4096  # calls whose room's node this node remembers


class Sfu:
    """The calls' rooms in Janus."""

    def __init__(self, settings: Settings, store: Store, push: Push, media: Media | None = None) -> None:
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
        self.media = media
        self.composer = Composer(
            workers=settings.recording_workers,
            timeout=settings.recording_timeout,
            tile=settings.recording_tile,
            fps=settings.recording_fps,
        )
        self._started: set[str] = set()  # calls whose recording started (as this node saw)
        # ends a call whose media server is gone (CallService.media_server_lost)
        self.end_call: Callable[[str], Awaitable[None]] | None = None
        self.janus.on_lost = self._lost
        if media is not None and settings.janus_recordings is not None:
            self.relay.on_media_up = self._media_up
        self._per_call = InOrder(self._closing)  # one call's syncs and end, in order
        self._owners: dict[str, str | None] = {}  # call → the node driving its room (None: unknown)
        self.nodes: SfuNodes | None = None
        if settings.redis_url:
            self.nodes = SfuNodes(
                settings.redis_url,
                prefix=settings.redis_prefix,
                node_id=settings.node_id,
                timeout=2 * settings.janus_timeout + 1.0,
                signal=self.relay.signal,
                sync=self.relay.sync,
                ended=self._close_here,
            )

    async def start(self) -> None:
        if self.nodes is not None:
            await self.nodes.start()

    @property
    def records(self) -> bool:
        return self.media is not None and self.s.janus_recordings is not None

    async def open(self, call_id: str) -> Room:
        """A room for a new call (before its transaction); ``MediaServerError`` when Janus is down."""
        record = str(self.s.janus_recordings) if self.s.janus_recordings is not None else None
        room = await self.janus.create_room(call_id, record_dir=record)
        room.node = self.s.node_id
        log.info("call %s: media room %d", call_id, room.number)
        return room

    async def store_room(self, tx: Tx, room: Room) -> None:
        """Keep the room beside its call, in the call's transaction."""
        await tx.conn.execute(
            insert(media_rooms).values(
                call_id=room.call_id, room=room.number, secret=room.secret, created_at=tx.now, node=room.node
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
                    select(media_rooms.c.room, media_rooms.c.secret, media_rooms.c.node).where(
                        media_rooms.c.call_id == call_id, media_rooms.c.closed_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        return Room(number=int(row.room), secret=row.secret, call_id=call_id, node=row.node)

    # --- where a call's Janus work runs (one node, or its room's owner among several)

    async def _owner(self, call_id: str) -> str | None:
        """The node driving the call's room when it is another node; None when it is this one."""
        if self.nodes is None:
            return None
        if call_id not in self._owners:
            room = await self.room_of(call_id)
            if len(self._owners) >= _OWNERS_KEPT:  # the oldest calls' (most ended since)
                del self._owners[next(iter(self._owners))]
            self._owners[call_id] = room.node if room is not None else None
        owner = self._owners[call_id]
        return owner if owner is not None and owner != self.s.node_id else None

    async def signal(self, call_id: str, me: Member, joined: list[Member], data: object) -> None:
        """A joined member's ``signal`` to the sfu, run where the call's handles are."""
        owner = await self._owner(call_id)
        if owner is None or self.nodes is None:
            await self.relay.signal(call_id, me, joined, data)
        else:
            await self.nodes.signal(owner, call_id, me, joined, data)

    def sync(
        self,
        call_id: str,
        joined: list[Member],
        ended: bool,
        audience: Mapping[Member, frozenset[str]] | None = None,
    ) -> None:
        """After a call changed (after its commit): who is joined now, and the feeds only some
        members hear (:meth:`SfuRelay.sync`), told where its handles are."""
        if self.nodes is None:
            self.relay.sync(call_id, joined, ended, audience)
        else:
            # told in the order the changes were committed here (the end after the last sync)
            self._per_call.run(
                call_id, self._sync(call_id, joined, ended, audience), f"kefu-sfu-sync-{call_id}"
            )

    async def _sync(
        self,
        call_id: str,
        joined: list[Member],
        ended: bool,
        audience: Mapping[Member, frozenset[str]] | None,
    ) -> None:
        owner = await self._owner(call_id)
        if owner is None or self.nodes is None:
            self.relay.sync(call_id, joined, ended, audience)
            return
        heard = [[k, n, sorted(names)] for (k, n), names in (audience or {}).items()]
        await self.nodes.tell(
            owner, "sync", call_id, joined=[list(m) for m in joined], ended=ended, audience=heard
        )

    def ended(self, call_id: str) -> None:
        """The call ended (after its commit): its room destroyed in the background, by the
        node driving it, or here when that node is gone."""
        self._per_call.run(call_id, self._ended(call_id), f"kefu-sfu-close-{call_id}")

    async def _ended(self, call_id: str) -> None:
        owner = await self._owner(call_id) if self.nodes is not None else None
        self._owners.pop(call_id, None)
        if owner is not None and self.nodes is not None and await self.nodes.tell(owner, "ended", call_id):
            return
        await self.close(call_id)

    def _close_here(self, call_id: str) -> None:
        """Another node ended the call whose room this node drives."""
        self._owners.pop(call_id, None)
        self._closing.spawn(self.close(call_id), f"kefu-sfu-close-{call_id}")

    def _lost(self) -> None:
        """Janus's session is gone (from the long poll): end the calls whose media it carried."""
        self._closing.spawn(self._end_lost_calls(self.s.node_id, "the media server is lost"), "kefu-sfu-lost")

    def node_gone(self, node: str) -> None:
        """Another node is gone (:attr:`RedisBus.on_node_gone`): the calls whose rooms it drove
        have no one to drive their handles any more (D48)."""
        if node != self.s.node_id:
            self._closing.spawn(
                self._end_lost_calls(node, f"node {node}, which drove their media, is gone"),
                f"kefu-sfu-node-gone-{node}",
            )

    async def end_orphans(self) -> None:
        """At start: rooms this node's id drove before are a previous run's (its handles were in
        a Janus session nobody drives now): their calls end."""
        await self._end_lost_calls(self.s.node_id, "this node restarted")

    async def _end_lost_calls(self, node: str, why: str) -> None:
        """End, with ``media_server_lost``, the calls whose room ``node`` drove."""
        async with self.store.read() as c:
            open_rooms = (
                await c.execute(
                    select(media_rooms.c.call_id)
                    .join(calls, calls.c.id == media_rooms.c.call_id)
                    .where(media_rooms.c.closed_at.is_(None), calls.c.status != CallPhase.ended.value)
                    # the calls whose handles were in that node's session (the others' are fine)
                    .where(
                        or_(media_rooms.c.node == node, media_rooms.c.node.is_(None))
                        if node == self.s.node_id  # rooms of unknown node (before 0015): this one's
                        else media_rooms.c.node == node
                    )
                )
            ).all()
        if open_rooms:
            log.error("%s: ending %d call(s) whose media went through it", why, len(open_rooms))
        else:
            log.info("%s (no call's media went through it)", why)
        for row in open_rooms:
            if self.end_call is None:
                break
            try:
                await self.end_call(row.call_id)
            except Exception:
                log.exception("call %s: could not be ended after the media server was lost", row.call_id)

    def _media_up(self, call_id: str, member: tuple[str, str]) -> None:
        if call_id in self._started:
            return
        self._started.add(call_id)
        at = self.s.now()
        self._closing.spawn(self._recording_started(call_id, member, at), f"kefu-rec-{call_id}")

    async def _recording_started(self, call_id: str, member: tuple[str, str], at: object) -> None:
        assert self.media is not None
        try:
            await self.media.recording_started(call_id, f"{member[0]}:{member[1]}", at)
        except Exception:
            log.exception("call %s: the recording's start could not be recorded", call_id)

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
        if self.records:
            await self.make_recording(call_id, room)

    async def make_recording(self, call_id: str, room: Room) -> None:
        """The call's ``.mjr`` files made into its recording artifact (or its failure recorded)."""
        assert self.media is not None and self.s.janus_recordings is not None
        self._started.discard(call_id)
        feeds = self.relay.forget_feeds(call_id)
        if await self.media.recording_status(call_id) is None:
            log.info("call %s: no media reached the media server: nothing to record", call_id)
            return
        out = self.media.recording_path(call_id)
        work = self.media.root / "work" / call_id
        try:
            tracks = await asyncio.to_thread(
                tracks_of_room, Path(self.s.janus_recordings), room.number, feeds
            )
            inputs = await self.composer.compose(tracks, out, work)
            zero = min(t.first_us for t in tracks)
            meta = {"tracks": inputs, "mediaStartedAt": iso(datetime.fromtimestamp(zero / 1e6, UTC))}
            await self.media.server_recording(call_id, out, meta)
            # the raw tracks are in clear: the stored recording (sealed with a key) replaces them
            await asyncio.to_thread(remove_room_files, Path(self.s.janus_recordings), room.number)
        except (RecordingError, OSError, ApiError) as exc:
            await asyncio.to_thread(out.unlink, missing_ok=True)
            await self.media.recording_failed(call_id, str(exc))
        except Exception as exc:
            log.exception("call %s: making the recording failed", call_id)
            await asyncio.to_thread(out.unlink, missing_ok=True)
            await self.media.recording_failed(call_id, f"internal error ({type(exc).__name__})")

    async def aclose_pending(self) -> None:
        """Wait for the rooms of ended calls to be destroyed."""
        await self._closing.settled()

    async def aclose(self) -> None:
        """After the calls' timers stopped, before the store closes: the rooms of ended calls
        are destroyed first (each bounded by ``janus_timeout``)."""
        if self.nodes is not None:
            await self.nodes.aclose()  # no more work from other nodes (and none handed to them)
        await self.relay.aclose()
        await self._closing.settled()
        await self._closing.close()
        await self.janus.aclose()
