"""One connection's outgoing messages: replies and pushes, in order, by one task.

Pushes leave strictly in ``seq`` order: one at or below the last sent is a
duplicate (a replay overlapped a live push) and is dropped; one past a gap
makes the outbox read the gap from the database first (see
:mod:`kefu.server.hub`). With several nodes (a bus that may lose a push and
nothing after it), an outbox idle for ``gap_poll`` seconds compares its last
``seq`` with the stored one and sends what it missed. A client that does not read fills the bounded queue
and is closed with 1008; it resumes from its last ``seq`` when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from kefu.protocol.wire import Json, encode, event_message

from .hub import Push
from .services import Services

__all__ = ["CLOSE_POLICY", "CLOSE_REPLACED", "CLOSE_TOO_BIG", "Outbox"]

log = logging.getLogger("kefu.server.connection")

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_REPLACED = 4001


class Outbox:
    """One connection's outgoing messages, sent in order by one task."""

    def __init__(self, ws: WebSocket, services: Services, limit: int, *, gap_poll: float = 0.0) -> None:
        self.ws = ws
        self.gap_poll = gap_poll
        self.hub = services.hub
        self.limit = limit
        self.recipient: str | None = None
        self.last_sent = 0
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kefu-outbox")

    def _put(self, kind: str, item: Any) -> None:
        if self._stopped:
            return
        if self._queue.qsize() >= self.limit and kind != "close":
            log.warning("%s reads too slowly: closing it (it resumes from its last seq)", self.recipient)
            self._stopped = True
            self._queue.put_nowait(("close", (CLOSE_POLICY, "too slow")))
            return
        self._queue.put_nowait((kind, item))

    def reply(self, msg: Json) -> None:
        self._put("text", encode(msg))

    def offer(self, push: Push) -> None:
        """A committed push for this connection's recipient (the :class:`~kefu.server.hub.Sink`)."""
        self._put("push", push)

    def catch_up(self) -> None:
        """Send every stored push after :attr:`last_sent`."""
        self._put("catchup", None)

    def close(self, code: int, reason: str) -> None:
        self._put("close", (code, reason))
        self._stopped = True

    def replaced(self) -> None:
        """A newer connection of the same recipient took over."""
        self.reply(event_message("replaced", {"reason": "a newer connection took over"}, mark="event"))
        self.close(CLOSE_REPLACED, "replaced by a newer connection")

    async def _fill(self, upto: int | None) -> None:
        assert self.recipient is not None
        while True:
            batch = await self.hub.pushes_after(self.recipient, self.last_sent)
            if not batch:
                return
            for p in batch:
                if upto is not None and p.seq > upto:
                    return
                await self.ws.send_text(p.text)
                self.last_sent = p.seq

    async def _next(self) -> tuple[str, Any] | None:
        """The next item; ``None`` after ``gap_poll`` idle seconds (when polling is on)."""
        if self.gap_poll <= 0:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), self.gap_poll)
        except TimeoutError:
            return None

    async def _run(self) -> None:
        try:
            while True:
                got = await self._next()
                if got is None:
                    if (
                        self.recipient is not None
                        and await self.hub.latest_seq(self.recipient) > self.last_sent
                    ):
                        log.info("%s: pushes lost on the bus; sending them from the database", self.recipient)
                        await self._fill(None)
                    continue
                kind, item = got
                if kind == "text":
                    await self.ws.send_text(item)
                elif kind == "push":
                    if item.seq <= self.last_sent:
                        continue  # sent already (a replay overlapped a live push)
                    if item.seq > self.last_sent + 1:
                        await self._fill(item.seq - 1)
                    await self.ws.send_text(item.text)
                    self.last_sent = item.seq
                elif kind == "catchup":
                    await self._fill(None)
                else:
                    code, reason = item
                    await self.ws.close(code, reason)
                    return
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.debug("outbox of %s stopped: %r", self.recipient, exc)
        except Exception:
            # e.g. the database failed while filling a gap: the client resumes from its last seq
            log.exception("outbox of %s failed; closing the connection", self.recipient)
            self._stopped = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(1011, "internal error")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def closing(self) -> bool:
        return self._stopped
