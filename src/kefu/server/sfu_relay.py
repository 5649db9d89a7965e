"""The SFU mode's media path: members' ``signal`` messages turned into Janus requests.

Theory of operation
-------------------
Members never talk to Janus (docs/decisions.md D22). A member publishes by
sending ``signal`` to ``{"kind": "sfu", "name": "sfu"}`` with an offer: the
server attaches a publisher handle, sends ``joinandconfigure`` (``ptype``
publisher, ``display`` the member's ``kind:name``) with the offer and pushes
Janus's answer back as ``signal`` from the sfu. A later offer of the same
member (a screen share on or off) is a ``configure`` on the same handle; Janus
adds a publisher's new stream to a subscription only when asked, so the
streams it publishes now (``mids``) are compared with before and every
subscription to it gets an ``update`` (``subscribe`` / ``unsubscribe`` those
mids), whose new offer goes to its member as any subscription's offer.
A subscription's ``start`` also asks the feed's publisher for a key frame
(``configure`` with ``keyframe``): a stream joined mid-way decodes nothing
until the next one.

When Janus says a publisher's connection is up (``webrtcup`` on its handle,
from the long poll), every other joined member gets a subscription to it: a
subscriber handle, ``join`` (``ptype`` subscriber, ``streams: [{feed}]``,
Janus 1.1's multistream API), and Janus's offer pushed to the member with
``feed: {kind, name}``; the member's answer (with the same ``feed``) is sent
with ``start``. A member who joins later gets the feeds that are up already.
A member who leaves has its handles detached; the others' subscriptions to
it are detached and they get ``{"type": "leave", "feed"}``. A publisher that
Janus hangs up (its connection failed) is taken away from the others the
same way; the member may publish again with a new offer.

The state lives on the node that handles the call's signalling (the handles
belong to this node's Janus session); everything about one call runs under
the call's lock, in order. The wire forms are :mod:`kefu.protocol.sfu`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.sfu import SfuAnswer, SfuCandidate, SfuOffer, decode_sfu_signal, feed_ref

from .janus import JanusClient, JanusEvent, MediaServerError, Room
from .tasks import Background

__all__ = ["Member", "SfuRelay"]

log = logging.getLogger("kefu.server.sfu")

Member = tuple[str, str]  # (kind, name)
Push = Callable[[str, Member, dict[str, Any]], Awaitable[None]]
RoomOf = Callable[[str], Awaitable[Room | None]]


@dataclass(slots=True)
class _Publisher:
    handle: int
    feed: int  # Janus's publisher id in the room
    up: bool = False
    mids: frozenset[str] = frozenset()  # the streams it publishes (Janus's mids), as last configured


@dataclass(slots=True)
class _CallMedia:
    call_id: str
    room: Room
    members: set[Member] = field(default_factory=set)  # joined, as last told
    publishers: dict[Member, _Publisher] = field(default_factory=dict)
    subs: dict[tuple[Member, Member], int] = field(default_factory=dict)  # (subscriber, feed) → handle
    # a feed heard only by some members (a supervisor, issue 20): feed → its audience
    audience: dict[Member, frozenset[str]] = field(default_factory=dict)

    def hears(self, member: Member, owner: Member) -> bool:
        heard = self.audience.get(owner)
        return member != owner and (heard is None or member[1] in heard)

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _mids(data: dict[str, Any]) -> frozenset[str]:
    """The streams a publisher sends, from Janus's ``joined``/``configured`` event."""
    streams = data.get("streams")
    if not isinstance(streams, list):
        return frozenset()
    return frozenset(
        str(s["mid"]) for s in streams if isinstance(s, dict) and "mid" in s and not s.get("disabled")
    )


class SfuRelay:
    """Every call's publishers and subscriptions in Janus, as far as this node handles them."""

    def __init__(self, janus: JanusClient, room_of: RoomOf, push: Push) -> None:
        self.janus = janus
        self._room_of = room_of
        self._push = push
        self._calls: dict[str, _CallMedia] = {}
        self._handles: dict[int, tuple[str, Member, Member | None]] = {}  # → call, member, feed
        self._tasks = Background(log)  # the work started by events and call changes
        # each call's publishers as Janus numbers them (feed → "kind:name"), kept after the call
        # ends until its recording is made (:meth:`forget_feeds`): the .mjr files name the feed
        self.feeds: dict[str, dict[int, str]] = {}
        # a publisher's media reaches Janus (its webrtcup): the recording's first media
        self.on_media_up: Callable[[str, Member], None] | None = None
        janus.on_event = self.on_event

    # --- what members send

    async def signal(self, call_id: str, me: Member, joined: Iterable[Member], data: object) -> None:
        """A joined member's ``signal`` to the sfu (``invalid_field`` for bad data)."""
        message = decode_sfu_signal(data)
        cm = await self._media(call_id, joined)
        async with cm.lock:
            if isinstance(message, SfuOffer):
                await self._publish(cm, me, message.sdp)
            elif isinstance(message, SfuAnswer):
                handle = cm.subs.get((me, message.feed))
                if handle is None:
                    raise ApiError(
                        f"no offer of {message.feed[0]} {message.feed[1]}'s media is out to you",
                        code=ErrorCode.invalid_field,
                    )
                await self.janus.message(handle, {"request": "start"}, {"type": "answer", "sdp": message.sdp})
                pub = cm.publishers.get(message.feed)
                if pub is not None:
                    await self._key_frame(cm, message.feed, pub)
            else:
                await self._trickle(cm, me, message)

    async def _media(self, call_id: str, joined: Iterable[Member]) -> _CallMedia:
        cm = self._calls.get(call_id)
        if cm is None:
            room = await self._room_of(call_id)
            if room is None:
                raise ApiError("this call has no media room", code=ErrorCode.media_server_unavailable)
            cm = self._calls.setdefault(call_id, _CallMedia(call_id, room))
        cm.members = set(joined)
        return cm

    async def _publish(self, cm: _CallMedia, me: Member, sdp: str) -> None:
        jsep = {"type": "offer", "sdp": sdp}
        pub = cm.publishers.get(me)
        if pub is not None:  # the member changes what it sends (a screen share on or off)
            data, answer = await self.janus.message(pub.handle, {"request": "configure"}, jsep)
            before, pub.mids = pub.mids, _mids(data)
        else:
            handle = await self.janus.attach()
            self._handles[handle] = (cm.call_id, me, None)
            body = {
                "request": "joinandconfigure",
                "room": cm.room.number,
                "ptype": "publisher",
                "display": f"{me[0]}:{me[1]}",
            }
            try:
                data, answer = await self.janus.message(handle, body, jsep)
            except MediaServerError:
                await self._detach(handle)
                raise
            pub = cm.publishers[me] = _Publisher(handle, int(data["id"]), mids=_mids(data))
            before = pub.mids
            self.feeds.setdefault(cm.call_id, {})[int(data["id"])] = f"{me[0]}:{me[1]}"
        if answer is None or answer.get("type") != "answer":
            raise MediaServerError("the media server gave no answer to the offer")
        log.info("call %s: %s %s publishes", cm.call_id, *me)
        await self._push(cm.call_id, me, {"type": "answer", "sdp": answer["sdp"]})
        if pub.mids != before:
            await self._update_subscriptions(cm, me, pub, before)

    async def _update_subscriptions(
        self, cm: _CallMedia, owner: Member, pub: _Publisher, before: frozenset[str]
    ) -> None:
        """``owner`` publishes other streams now (a screen share on or off): Janus adds them
        to a subscription only when asked (``update``), and answers with a new offer."""
        body: dict[str, Any] = {"request": "update"}
        if pub.mids - before:
            body["subscribe"] = [{"feed": pub.feed, "mid": mid} for mid in sorted(pub.mids - before)]
        if before - pub.mids:
            body["unsubscribe"] = [{"feed": pub.feed, "mid": mid} for mid in sorted(before - pub.mids)]
        for (member, feed), handle in list(cm.subs.items()):
            if feed != owner:
                continue
            try:
                _data, offer = await self.janus.message(handle, body)
            except MediaServerError as exc:
                log.warning(
                    "call %s: %s %s's subscription to %s not updated: %s", cm.call_id, *member, owner, exc
                )
                continue
            if offer is not None and offer.get("type") == "offer":
                await self._tell(
                    cm.call_id, member, {"type": "offer", "sdp": offer["sdp"], "feed": feed_ref(*owner)}
                )

    async def _key_frame(self, cm: _CallMedia, owner: Member, pub: _Publisher) -> None:
        """Ask ``owner``'s publisher for a key frame (an RTCP PLI from Janus): a subscription
        that starts, or gets a stream again, decodes nothing until the next one (D45)."""
        try:
            await self.janus.message(pub.handle, {"request": "configure", "keyframe": True})
        except MediaServerError as exc:
            log.warning("call %s: no key frame asked of %s %s: %s", cm.call_id, *owner, exc)

    async def _trickle(self, cm: _CallMedia, me: Member, c: SfuCandidate) -> None:
        if c.feed is None:
            pub = cm.publishers.get(me)
            handle = pub.handle if pub is not None else None
        else:
            handle = cm.subs.get((me, c.feed))
        if handle is None:
            raise ApiError("a candidate for no connection of yours", code=ErrorCode.invalid_field)
        candidate: dict[str, Any] = {"completed": True}
        if c.candidate is not None:
            candidate = {"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index}
        await self.janus.trickle(handle, candidate)

    # --- subscriptions

    async def _reconcile(self, cm: _CallMedia) -> None:
        """Every joined member subscribed to every other member's feed that is up (under the lock)."""
        for owner, pub in list(cm.publishers.items()):
            if not pub.up:  # Janus refuses a subscription before (No such feed)
                continue
            for member in sorted(cm.members):
                if cm.hears(member, owner) and (member, owner) not in cm.subs:
                    try:
                        await self._subscribe(cm, member, owner, pub)
                    except MediaServerError as exc:
                        log.warning(
                            "call %s: no subscription of %s to %s: %s", cm.call_id, member, owner, exc
                        )

    async def _subscribe(self, cm: _CallMedia, member: Member, owner: Member, pub: _Publisher) -> None:
        handle = await self.janus.attach()
        self._handles[handle] = (cm.call_id, member, owner)
        cm.subs[(member, owner)] = handle
        body = {
            "request": "join",
            "room": cm.room.number,
            "ptype": "subscriber",
            "streams": [{"feed": pub.feed}],
        }
        try:
            _data, offer = await self.janus.message(handle, body)
            if offer is None or offer.get("type") != "offer":
                raise MediaServerError("the media server made no offer for the subscription")
        except MediaServerError:
            cm.subs.pop((member, owner), None)
            await self._detach(handle)
            raise
        await self._push(cm.call_id, member, {"type": "offer", "sdp": offer["sdp"], "feed": feed_ref(*owner)})

    async def _unsubscribe(self, cm: _CallMedia, owner: Member) -> None:
        """Take ``owner``'s feed away from everyone (under the lock)."""
        for member, feed in [k for k in cm.subs if k[1] == owner]:
            await self._detach(cm.subs.pop((member, feed)))
            if member in cm.members:
                await self._tell(cm.call_id, member, {"type": "leave", "feed": feed_ref(*owner)})

    async def _tell(self, call_id: str, member: Member, data: dict[str, Any]) -> None:
        try:
            await self._push(call_id, member, data)
        except ApiError as exc:
            log.warning("call %s: could not tell %s %s: %s", call_id, *member, exc.msg)

    async def _detach(self, handle: int) -> None:
        self._handles.pop(handle, None)
        await self.janus.detach(handle)

    # --- what the call and Janus say

    def sync(
        self,
        call_id: str,
        joined: Iterable[Member],
        ended: bool,
        audience: Mapping[Member, frozenset[str]] | None = None,
    ) -> None:
        """After a call changed: who is joined now (after the commit), and the feeds that only
        some members hear (``audience``, by name: a supervisor's, issue 20)."""
        if call_id in self._calls:
            heard = dict(audience or {})
            self._spawn(self._sync(call_id, set(joined), ended, heard), f"kefu-sfu-sync-{call_id}")

    async def _sync(
        self, call_id: str, joined: set[Member], ended: bool, audience: dict[Member, frozenset[str]]
    ) -> None:
        cm = self._calls.get(call_id)
        if cm is None:
            return
        async with cm.lock:
            cm.audience = audience
            for member, owner in [k for k in cm.subs if not cm.hears(*k)]:
                await self._detach(cm.subs.pop((member, owner)))  # no longer in the feed's audience
                if member in joined:
                    await self._tell(cm.call_id, member, {"type": "leave", "feed": feed_ref(*owner)})
            gone = cm.members - joined if not ended else set(cm.members) | set(cm.publishers)
            cm.members = joined if not ended else set()
            for member in gone:
                for key in [k for k in cm.subs if k[0] == member]:
                    await self._detach(cm.subs.pop(key))
                pub = cm.publishers.pop(member, None)
                if pub is not None:
                    await self._detach(pub.handle)
                    await self._unsubscribe(cm, member)
            if ended:
                self._calls.pop(call_id, None)
            else:
                await self._reconcile(cm)

    def on_event(self, ev: JanusEvent) -> None:
        """An event of a handle, from the long poll (sync: the work goes to a task)."""
        known = self._handles.get(ev.handle)
        if known is None:
            return
        call_id, member, feed = known
        if ev.kind == "media":
            log.info(
                "call %s: %s %s %s %s: receiving %s",
                call_id,
                *member,
                "publisher" if feed is None else "subscription to " + ":".join(feed),
                ev.data.get("type"),
                ev.data.get("receiving"),
            )
            return
        if ev.kind in ("webrtcup", "hangup") or (ev.kind == "event" and ev.jsep is not None):
            self._spawn(self._on_event(ev, call_id, member, feed), f"kefu-sfu-event-{ev.handle}")

    async def _on_event(self, ev: JanusEvent, call_id: str, member: Member, feed: Member | None) -> None:
        cm = self._calls.get(call_id)
        if cm is None:
            return
        async with cm.lock:
            if feed is None:
                pub = cm.publishers.get(member)
                if pub is None or pub.handle != ev.handle:
                    return
                if ev.kind == "webrtcup":
                    pub.up = True
                    log.info("call %s: %s %s's media reaches the media server", call_id, *member)
                    if self.on_media_up is not None:
                        self.on_media_up(call_id, member)
                    await self._reconcile(cm)
                elif ev.kind == "hangup":
                    log.info(
                        "call %s: %s %s's publisher hung up (%s)", call_id, *member, ev.data.get("reason")
                    )
                    del cm.publishers[member]
                    await self._detach(pub.handle)
                    await self._unsubscribe(cm, member)
            elif cm.subs.get((member, feed)) == ev.handle:
                if ev.kind == "hangup":
                    del cm.subs[(member, feed)]
                    await self._detach(ev.handle)
                elif ev.kind == "webrtcup":
                    # the subscription's connection is up: a key frame now reaches it (D45)
                    pub = cm.publishers.get(feed)
                    if pub is not None:
                        await self._key_frame(cm, feed, pub)
                elif ev.jsep is not None and ev.jsep.get("type") == "offer":
                    # the feed changed its tracks: Janus offers the subscription again
                    data = {"type": "offer", "sdp": ev.jsep.get("sdp"), "feed": feed_ref(*feed)}
                    await self._tell(call_id, member, data)

    def forget_feeds(self, call_id: str) -> dict[int, str]:
        """The call's feeds (feed → "kind:name"), forgotten here: its recording is being made."""
        return self.feeds.pop(call_id, {})

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name)  # a failure is logged with the task's name

    async def settled(self) -> None:
        """Until the work started by events and call changes is done (tests, closing)."""
        await self._tasks.settled()

    async def aclose(self) -> None:
        await self._tasks.close()
        self._calls.clear()
        self._handles.clear()
