"""Janus as the data centre's media server (SFU): the server's client of its API.

Theory of operation
-------------------
In SFU mode (``kefu server --janus URL``) every call gets a VideoRoom room in
Janus; each member publishes its stream once and subscribes to the others'.
Janus forwards RTP without decoding it and records each publisher (``.mjr``).

Only the kefu server talks to Janus (docs/decisions.md D22): the API secret,
the VideoRoom ``admin_key`` and each room's ``secret`` never leave it, and the
members' clients keep the one signalling path they have (``signal`` messages
through kefu), so Janus's API is never exposed to the internet or the intranet.
This module is the client: the HTTP transport of Janus's API (a request per
message, events by long poll on the session), one session per kefu node, one
``janus.plugin.videoroom`` handle for the rooms and one handle per publisher or
subscriber.

Janus is a component that can fail. Any transport failure or an error from
Janus is a :class:`MediaServerError` (``media_server_unavailable`` on the wire);
a session that Janus forgot (a restart) is made anew on the next request.
Losing the session — the long poll failing three times in a row (Janus killed:
its connections are refused at once), or Janus answering that it does not know
it (restarted) — calls ``on_lost``: every handle, so every call's media, is gone.

The wire forms are Janus's (https://janus.conf.meetecho.com/docs/rest and
``videoroom.html``): requests ``{"janus": "message", "body": {...}, "jsep"?}``,
synchronous plugin answers ``{"janus": "success", "plugindata": {"data": ...}}``,
asynchronous ones an ``ack`` followed by an ``event`` with the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from kefu.protocol import ApiError, ErrorCode

from .tasks import Background

__all__ = ["JanusClient", "JanusEvent", "MediaServerError", "Room"]

log = logging.getLogger("kefu.server.janus")

VIDEOROOM = "janus.plugin.videoroom"


class MediaServerError(ApiError):
    """Janus did not answer, or refused: the call cannot use the media server now."""

    code = ErrorCode.media_server_unavailable


class _SessionGone(MediaServerError):
    """Janus no longer knows our session (it restarted): its handles are gone too."""


@dataclass(frozen=True, slots=True)
class JanusEvent:
    """An asynchronous event of a handle: a plugin event or a core one (``webrtcup``, ``media`` …)."""

    handle: int
    kind: str  # Janus's "janus" field: event, webrtcup, media, hangup, slowlink, detached
    data: dict[str, Any]  # the plugin's data for "event"; the message itself otherwise
    jsep: dict[str, Any] | None = None


@dataclass(slots=True)
class Room:
    """A call's VideoRoom room: its number and secret (kept on the server only)."""

    number: int
    secret: str
    call_id: str
    publishers: dict[str, int] = field(default_factory=dict)  # member key -> publisher handle
    node: str | None = None  # the kefu node whose Janus session drives its handles


class JanusClient:
    """One Janus session over the HTTP transport, with a long-poll reader of its events."""

    def __init__(
        self,
        url: str,
        *,
        api_secret: str | None = None,
        admin_key: str | None = None,
        timeout: float = 5.0,
        on_event: Callable[[JanusEvent], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._api_secret = api_secret
        self._admin_key = admin_key
        self.timeout = timeout
        self.on_event = on_event
        self.on_lost = on_lost
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=timeout + 30.0))
        self._session: int | None = None
        self._rooms_handle: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._pollers = Background(log)  # the long polls, until they have ended
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    # --- the transport

    def _tx(self) -> str:
        return secrets.token_hex(8)

    async def _post(self, path: str, msg: dict[str, Any]) -> dict[str, Any]:
        if self._api_secret:
            msg["apisecret"] = self._api_secret
        try:
            r = await self._http.post(self.url + path, json=msg)
            r.raise_for_status()
            answer: dict[str, Any] = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MediaServerError(f"the media server does not answer ({type(exc).__name__})") from None
        if answer.get("janus") == "error":
            err = answer.get("error", {})
            if err.get("code") == 458:  # no such session: Janus restarted
                self._forget_session(lost=True)
                raise _SessionGone("the media server restarted")
            raise MediaServerError(f"the media server refused: {err.get('reason', 'error')}")
        return answer

    def _forget_session(self, *, lost: bool = False) -> None:
        had = self._session is not None
        self._session = None
        self._rooms_handle = None
        if self._poller is not None:
            self._poller.cancel()  # awaited by aclose (self._pollers)
            self._poller = None
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(MediaServerError("the media server restarted"))
        self._waiting.clear()
        if lost and had and not self._closed and self.on_lost is not None:
            self.on_lost()

    async def _ensure_session(self) -> int:
        async with self._lock:
            if self._session is None:
                answer = await self._post("", {"janus": "create", "transaction": self._tx()})
                self._session = int(answer["data"]["id"])
                self._rooms_handle = None
                self._poller = self._pollers.spawn(self._poll(self._session), "kefu-janus-poll")
                log.info("media server session %d at %s", self._session, self.url)
            return self._session

    async def _poll(self, session: int) -> None:
        params = {"maxev": "10"}
        if self._api_secret:
            params["apisecret"] = self._api_secret
        failures = 0
        while not self._closed and self._session == session:
            try:
                r = await self._http.get(f"{self.url}/{session}", params=params)
                r.raise_for_status()
                body = r.json()
                failures = 0
            except (httpx.HTTPError, ValueError) as exc:
                failures += 1
                if failures >= 3:
                    log.warning("the media server's events stopped (%s): session dropped", type(exc).__name__)
                    if self._session == session:
                        self._forget_session(lost=True)
                    return
                await asyncio.sleep(0.2 * failures)
                continue
            for msg in body if isinstance(body, list) else [body]:
                self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("janus")
        if kind == "keepalive":
            return
        if kind == "error" and msg.get("error", {}).get("code") == 458:
            self._forget_session(lost=True)
            return
        tx = msg.get("transaction")
        fut = self._waiting.pop(tx, None) if tx else None
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return
        handle = int(msg.get("sender") or 0)
        data = msg.get("plugindata", {}).get("data", {}) if kind == "event" else msg
        if self.on_event is not None:
            self.on_event(JanusEvent(handle, str(kind), data, msg.get("jsep")))

    # --- handles and messages

    async def attach(self) -> int:
        session = await self._ensure_session()
        answer = await self._post(
            f"/{session}", {"janus": "attach", "plugin": VIDEOROOM, "transaction": self._tx()}
        )
        return int(answer["data"]["id"])

    async def detach(self, handle: int) -> None:
        if self._session is None:
            return
        with contextlib.suppress(MediaServerError):
            await self._post(f"/{self._session}/{handle}", {"janus": "detach", "transaction": self._tx()})

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous VideoRoom request (create, destroy, kick, exists, listparticipants)."""
        session = await self._ensure_session()
        answer = await self._post(
            f"/{session}/{handle}", {"janus": "message", "body": body, "transaction": self._tx()}
        )
        data: dict[str, Any] = answer.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise MediaServerError(f"the media server refused {body.get('request')}: {data.get('error')}")
        return data

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous VideoRoom request (join, configure, start …): its event and JSEP."""
        session = await self._ensure_session()
        tx = self._tx()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[tx] = fut
        msg: dict[str, Any] = {"janus": "message", "body": body, "transaction": tx}
        if jsep is not None:
            msg["jsep"] = jsep
        try:
            answer = await self._post(f"/{session}/{handle}", msg)
            if answer.get("janus") != "ack":  # answered at once
                self._waiting.pop(tx, None)
                reply = answer
            else:
                reply = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise MediaServerError(f"the media server did not answer {body.get('request')} in time") from None
        finally:
            self._waiting.pop(tx, None)
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise MediaServerError(f"the media server refused {body.get('request')}: {data.get('error')}")
        return data, reply.get("jsep")

    async def trickle(self, handle: int, candidate: dict[str, Any]) -> None:
        """A trickled ICE candidate of a handle's connection (``{"completed": true}`` at the end)."""
        session = await self._ensure_session()
        await self._post(
            f"/{session}/{handle}", {"janus": "trickle", "candidate": candidate, "transaction": self._tx()}
        )

    # --- rooms

    async def _rooms(self) -> int:
        await self._ensure_session()
        if self._rooms_handle is None:
            self._rooms_handle = await self.attach()
        return self._rooms_handle

    async def _on_rooms(self, body: dict[str, Any]) -> dict[str, Any]:
        """A request on the rooms' handle; once more on a new session if Janus restarted."""
        try:
            return await self.request(await self._rooms(), body)
        except _SessionGone:
            return await self.request(await self._rooms(), body)

    async def create_room(self, call_id: str, *, publishers: int = 6, record_dir: str | None = None) -> Room:
        """A room for a call: a random number and secret; recorded when ``record_dir`` is given."""
        number = secrets.randbelow(2**52) + 1
        room = Room(number=number, secret=secrets.token_urlsafe(18), call_id=call_id)
        body: dict[str, Any] = {
            "request": "create",
            "room": number,
            "description": f"kefu call {call_id}",
            "secret": room.secret,
            "is_private": True,
            "publishers": publishers,
            "audiocodec": "opus",
            "videocodec": "vp8",
            "notify_joining": True,
            "permanent": False,
        }
        if self._admin_key:
            body["admin_key"] = self._admin_key
        if record_dir is not None:
            body["record"] = True
            body["rec_dir"] = record_dir
        await self._on_rooms(body)
        return room

    async def destroy_room(self, room: Room) -> None:
        await self._on_rooms({"request": "destroy", "room": room.number, "secret": room.secret})

    async def room_exists(self, number: int) -> bool:
        data = await self._on_rooms({"request": "exists", "room": number})
        return bool(data.get("exists"))

    async def participants(self, room: Room) -> list[dict[str, Any]]:
        data = await self._on_rooms({"request": "listparticipants", "room": room.number})
        return list(data.get("participants", []))

    async def kick(self, room: Room, publisher_id: int) -> None:
        await self._on_rooms(
            {"request": "kick", "room": room.number, "secret": room.secret, "id": publisher_id},
        )

    async def info(self) -> dict[str, Any]:
        """Janus's own description (``GET /janus/info``): a health check."""
        try:
            r = await self._http.get(f"{self.url}/info")
            r.raise_for_status()
            data: dict[str, Any] = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MediaServerError(f"the media server does not answer ({type(exc).__name__})") from None
        return data

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            with contextlib.suppress(MediaServerError):
                await self._post(f"/{self._session}", {"janus": "destroy", "transaction": self._tx()})
        self._forget_session()
        await self._pollers.close()
        await self._http.aclose()
