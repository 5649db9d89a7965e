"""The media API (SPEC §4.4, §4.5): ``snapshot``, ``takePhoto``, ``inviteShare``.

``snapshot`` comes from the plugin's own media (a JPEG of the visitor's latest
frame, stored on the server too); ``takePhoto`` and ``inviteShare`` go
through the server, answered when the visitor's photo or share arrives
(``event``/``photo``, ``event``/``share``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from kefu.protocol import ApiError, ErrorCode, Request, error_body, error_message, reply_message
from kefu.protocol.call import MemberStatus
from kefu.protocol.messages import readdress
from kefu.protocol.mirror import CallView, OpenRequest
from kefu.protocol.wire import Json

from .host import PluginCore, Replier
from .link import AgentLink
from .upstream import Upstream

__all__ = ["MediaApi", "ShareWait"]

log = logging.getLogger("kefu.plugin")


@dataclass(eq=False)
class ShareWait:
    """An ``inviteShare`` request: ``open`` when the share is on, ``close`` when it stops."""

    req: OpenRequest
    call_id: str
    timer: asyncio.TimerHandle | None = None
    opened: bool = False


class MediaApi:
    def __init__(self, core: PluginCore, upstream: Upstream) -> None:
        self.core = core
        self.upstream = upstream
        self._photos: dict[str, asyncio.Future[Json]] = {}  # takePhoto: server requestId → event
        self._early_photos: OrderedDict[str, Json] = OrderedDict()  # photo events before their reply
        self._shares: list[ShareWait] = []

    def forget_closed(self) -> None:
        """A controller went: its share requests are over."""
        self._shares = [w for w in self._shares if not w.req.closed]

    def end(self) -> None:
        """The agent is gone: its share and photo requests end."""
        for wait in self._shares:
            self._end_share_wait(wait)
        self._shares.clear()
        for fut in self._photos.values():
            if not fut.done():
                fut.set_exception(ApiError("the agent logged out", code=ErrorCode.not_logged_in))
        self._photos.clear()
        self._early_photos.clear()

    def _current_call(self, conn: Replier, req: Request) -> CallView | None:
        """The call the agent is in, or an error answered (not logged in, not in a call)."""
        if self.core.link is None or self.core.agent is None:
            conn.reply(error_message(req.mark, ErrorCode.not_logged_in, rid=req.id))
            return None
        call = self.core.mirror.current()
        me = self.core.mirror.me
        if call is None or me is None or call.status_of("agent", me) is not MemberStatus.joined:
            conn.reply(
                error_message(req.mark, ErrorCode.not_in_call, "the agent is not in a call", rid=req.id)
            )
            return None
        return call

    def _primary_call(self, conn: Replier, req: Request, what: str) -> tuple[CallView, AgentLink] | None:
        """The call the agent leads and the link to ask the visitor on, or an error answered."""
        call = self._current_call(conn, req)
        link = self.core.link
        if call is None or link is None:
            return None
        if call.primary != self.core.mirror.me:
            msg = f"only the call's primary agent asks the visitor {what}"
            conn.reply(error_message(req.mark, ErrorCode.invalid_state, msg, rid=req.id))
            return None
        return call, link

    async def snapshot(self, conn: Replier, req: Request) -> None:
        """snapshot (SPEC §4.4): a JPEG of the visitor's latest received frame,
        taken here, stored on the server as a media artifact, returned to the SDK."""
        call = self._current_call(conn, req)
        if call is None:
            return
        if self.core.media is None:
            msg = "this plugin runs without media (--no-media): no video to take a snapshot of"
            conn.reply(error_message(req.mark, ErrorCode.no_media, msg, rid=req.id))
            return
        try:
            image = await self.core.media.snapshot(call)
            stored = await self.core.api.upload_snapshot(call.call_id, image.jpeg)
        except ApiError as exc:
            conn.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
            return
        payload = {
            **image.to_payload(),
            "artifactId": stored.get("artifactId"),
            "sha256": stored.get("sha256"),
            "size": len(image.jpeg),
            "callId": call.call_id,
            "visitorName": call.first_visitor,
            "createdAt": stored.get("createdAt"),
        }
        conn.reply(reply_message(req.mark, "success", payload, rid=req.id))

    async def take_photo(self, conn: Replier, req: Request) -> None:
        """takePhoto (SPEC §4.4): the visitor's client takes a full-resolution
        still and uploads it; the agent gets the artifact (``event``/``photo``),
        fetched here and answered with the image."""
        asked = self._primary_call(conn, req, "for a photo")
        if asked is None:
            return
        _, link = asked
        request_id: str | None = None
        try:
            async with asyncio.timeout(self.core.settings.media_timeout):
                answer = await self.upstream.upstream(link, "takePhoto", {})
                if answer.get("subMark") == "error":
                    conn.reply(readdress(answer, req.id, req.mark))
                    return
                body = answer.get("payload") or {}
                request_id = body.get("requestId") if isinstance(body, dict) else None
                if not isinstance(request_id, str):
                    raise ApiError("the server's takePhoto answer has no requestId", code=ErrorCode.internal)
                event = self._early_photos.pop(request_id, None)
                if event is None:
                    fut: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
                    self._photos[request_id] = fut
                    event = await fut
                error = event.get("error")
                if isinstance(error, dict):
                    # SPEC §4.4: photos disabled is exactly {"type":"snapShotDisabled","msg":"snapShotDisabled"}
                    conn.reply(readdress({"subMark": "error", "error": error}, req.id, req.mark))
                    return
                artifact_id = event.get("artifactId")
                if not isinstance(artifact_id, str):
                    raise ApiError("the photo event has no artifact", code=ErrorCode.internal)
                jpeg = await self.core.api.fetch_artifact(artifact_id)
        except TimeoutError:
            msg = f"no photo from the visitor within {self.core.settings.media_timeout:g} s"
            conn.reply(error_message(req.mark, ErrorCode.timeout, msg, rid=req.id))
            return
        except ApiError as exc:
            conn.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
            return
        finally:
            if request_id is not None:
                self._photos.pop(request_id, None)
        raw_meta = event.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        payload = {
            "base64": base64.b64encode(jpeg).decode("ascii"),
            "width": meta.get("width"),
            "height": meta.get("height"),
            "mime": event.get("contentType", "image/jpeg"),
            "artifactId": artifact_id,
            "sha256": event.get("sha256"),
            "size": len(jpeg),
            "callId": event.get("callId"),
            "requestId": request_id,
            "visitorName": meta.get("visitorName"),
            "createdAt": event.get("createdAt"),
        }
        conn.reply(reply_message(req.mark, "success", payload, rid=req.id))

    def on_photo(self, payload: Json) -> None:
        request_id = payload.get("requestId")
        if not isinstance(request_id, str):
            return
        fut = self._photos.pop(request_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(payload)
            return
        self._early_photos[request_id] = payload  # before takePhoto's reply
        while len(self._early_photos) > 32:
            self._early_photos.popitem(last=False)

    async def invite_share(self, conn: Replier, req: Request) -> None:
        """inviteShare (SPEC §4.5): the visitor is asked; ``open`` when its share
        is on, ``close`` when it stops (or the call ends), ``error`` when it
        refuses or does not answer within the media timeout."""
        asked = self._primary_call(conn, req, "to share the screen")
        if asked is None:
            return
        call, link = asked
        done = asyncio.Event()
        uid = link.new_id()
        wait = ShareWait(self.core.requests.open(conn.reply, req.id, req.mark, uid, done.set), call.call_id)
        self._shares.append(wait)

        def on_answer(msg: Json) -> None:
            if msg.get("subMark") == "error":
                wait.req.reply(readdress(msg, req.id, req.mark))
                return
            # the visitor was asked: the spec has no callback for that; its answer follows
            wait.req.accepted()

        wait.timer = asyncio.get_running_loop().call_later(
            self.core.settings.media_timeout, self._share_timeout, wait
        )
        try:
            await link.request("inviteShare", {}, on_answer, uid=uid)
        except ApiError as exc:
            wait.req.reply(error_message(req.mark, exc.code, exc.msg, rid=req.id))
        try:
            await done.wait()
        finally:
            self._end_share_wait(wait)
            if wait in self._shares:
                self._shares.remove(wait)

    def _share_timeout(self, wait: ShareWait) -> None:
        wait.timer = None
        if not wait.opened:
            msg = f"the visitor did not answer within {self.core.settings.media_timeout:g} s"
            wait.req.tell("error", None, error=error_body(ErrorCode.timeout, msg))

    @staticmethod
    def _end_share_wait(wait: ShareWait) -> None:
        if wait.timer is not None:
            wait.timer.cancel()
            wait.timer = None
        wait.req.close()

    def on_share(self, payload: Json) -> None:
        """The visitor's answer to ``inviteShare``, and the end of its share (``event``/``share``)."""
        call_id, state = payload.get("callId"), payload.get("state")
        if not isinstance(call_id, str):
            return
        reason = payload.get("reason")
        if state == "open":
            self.share_changed(call_id, True, "visitor")
        elif state == "close":
            self.share_changed(call_id, False, "visitor")
        elif state in ("refused", "error"):
            code = ErrorCode.share_refused if state == "refused" else ErrorCode.no_media
            msg = reason if isinstance(reason, str) and reason else None
            for wait in [w for w in self._shares if w.call_id == call_id and not w.opened]:
                wait.req.tell("error", None, error=error_body(code, msg))

    def share_changed(self, call_id: str, on: bool, why: str) -> None:
        """The visitor's screen share opened or closed (its answer, or the hub saw the track).

        A screen track's removal closes only the share its arrival belonged to:
        the track of a share the visitor closed already may go after the next
        share opened (the renegotiation that removes it is on its way)."""
        view = self.core.mirror.calls.get(call_id)
        if why == "track":
            if view is None:
                return
            if on:
                view.screen_epoch = view.share_epoch + (0 if view.share else 1)
            elif view.screen_epoch != view.share_epoch:
                return  # the end of a share that is over already
        changed = view is not None and view.share != on
        if view is not None:
            if on and not view.share:
                view.share_epoch += 1
            view.share = on
        info = {"callId": call_id, "by": why}
        for wait in [w for w in self._shares if w.call_id == call_id]:
            if on and not wait.opened:
                wait.opened = True
                if wait.timer is not None:
                    wait.timer.cancel()
                    wait.timer = None
                wait.req.tell("open", None, info)
            elif not on and wait.opened:
                wait.req.tell("close", None, info)
        if changed:
            log.info("call %s: the visitor's screen share is %s (%s)", call_id, "on" if on else "off", why)

    def share_over(self, call_id: str, why: str) -> None:
        """The call ended: its share is over; a request still waiting for an answer fails."""
        self.share_changed(call_id, False, why)
        for wait in [w for w in self._shares if w.call_id == call_id and not w.opened]:
            wait.req.tell("error", None, error=error_body(ErrorCode.not_in_call, "the call ended"))
