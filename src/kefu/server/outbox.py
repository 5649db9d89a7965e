"""One connection's outgoing messages: replies and pushes, in order, by one task at a time.

Pushes leave strictly in ``seq`` order: one at or below the last sent is a
duplicate (a replay overlapped a live push) and is dropped; one past a gap
makes the outbox read the gap from the database first (see
:mod:`kefu.server.hub`). With several nodes (a bus that may lose a push and
nothing after it), the bus notices the loss and the hub tells each connection
here the stored latest ``seq`` (:meth:`Outbox.check`): one that is behind
sends what it missed. An idle connection costs no query. A client that does
not read fills the bounded queue and is closed with 1008; it resumes from its
last ``seq`` when it reconnects.

Memory: an idle connection holds no queue and no task of its own (most
visitors are idle; each would cost ~4 KiB). The first message queued starts a
sending task, which sends until the queue is empty and ends; messages queued
meanwhile join its queue, so they still leave in order and one at a time.
The connection's own replies start no task: its reader holds the outbox while
it handles a frame and sends what the frame queued after it (D43). Under
uvicorn's sans-I/O protocol, a reply or an in-order push for an idle outbox
(nothing queued, nothing being sent) whose socket is writable is written at
once, in the caller's task (:mod:`.wsdirect`, D78): no task, no queue; what
cannot be written at once is queued as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from kefu.protocol.close import CloseCode
from kefu.protocol.wire import Json, encode, event_message

from .hub import Push
from .services import Services
from .wsdirect import DirectSend

__all__ = ["CLOSE_POLICY", "CLOSE_REPLACED", "CLOSE_TOO_BIG", "Outbox"]

log = logging.getLogger("kefu.server.connection")

# the old names of three close codes (kefu.protocol.close has them all)
CLOSE_POLICY = CloseCode.policy
CLOSE_TOO_BIG = CloseCode.too_big
CLOSE_REPLACED = CloseCode.replaced


class Outbox:
    """One connection's outgoing messages, sent in order by one task at a time."""

    __slots__ = (
        "_busy",
        "_dead",
        "_direct",
        "_held",
        "_items",
        "_started",
        "_stopped",
        "_task",
        "hub",
        "last_sent",
        "limit",
        "recipient",
        "ws",
    )

    def __init__(self, ws: WebSocket, services: Services, limit: int) -> None:
        self.ws = ws
        self.hub = services.hub
        self.limit = limit
        self.recipient: str | None = None
        self.last_sent = 0
        self._items: deque[tuple[str, Any]] | None = None  # None while empty
        self._task: asyncio.Task[None] | None = None  # the sending task, while there is something to send
        self._started = False
        self._stopped = False  # closing: nothing more is queued
        self._dead = False  # a send failed: nothing more is sent
        self._held = False  # the reader handles a frame: it sends its own replies after (flush)
        self._busy = False  # the reader sends what is queued, in its own task (flush)
        self._direct: DirectSend | None = None  # set once accepted, under uvicorn's sans-I/O

    def start(self) -> None:
        """The socket is accepted: send what is queued, and from now on."""
        self._started = True
        self._direct = DirectSend.of(self.ws)
        self._wake()

    def _wake(self) -> None:
        """Start the sending task if there is something to send and none runs."""
        if self._task is not None or self._busy or not self._started or self._dead:
            return
        if self._items:
            self._task = asyncio.create_task(self._run(), name="kefu-outbox")

    def _now(self, kind: str, item: Any) -> bool:
        """Write a reply or an in-order push at once, if the outbox is idle and the
        socket writable (D78); ``False``: queue it."""
        direct = self._direct
        if direct is None or self._task is not None or self._busy:
            return False
        if kind == "text":
            return direct.text(item)
        if kind != "push" or item.seq > self.last_sent + 1:
            return False  # a gap: the queue reads it from the database first
        if item.seq <= self.last_sent:
            return True  # sent already (a replay overlapped a live push)
        if direct.text(item.text):
            self.last_sent = item.seq
            return True
        return False

    def _put(self, kind: str, item: Any) -> None:
        if self._stopped or self._dead:
            return
        items = self._items
        if items is None:
            if self._now(kind, item):
                return
            items = self._items = deque()
        elif len(items) >= self.limit and kind != "close":
            log.warning("%s reads too slowly: closing it (it resumes from its last seq)", self.recipient)
            self._stopped = True
            items.append(("close", (CLOSE_POLICY, "too slow")))
            self._wake()
            return
        items.append((kind, item))
        if not (self._held and kind == "text"):
            self._wake()

    def hold(self) -> None:
        """The reader is about to handle a frame: its replies wait for :meth:`flush`
        instead of starting a sending task (pushes from elsewhere do not wait)."""
        self._held = True

    def release(self) -> None:
        """The frame is handled (or failed): replies start a sending task again."""
        self._held = False

    async def flush(self) -> None:
        """Send what is queued here, in the caller's task, if no sending task runs: a
        reply costs no task of its own (D43). Order and slow-reader close are unchanged."""
        self._held = False
        if self._task is not None or self._busy or not self._items or not self._started or self._dead:
            return
        self._busy = True
        try:
            await self._drain()
        finally:
            self._busy = False
        self._wake()

    def reply(self, msg: Json) -> None:
        self._put("text", encode(msg))

    def offer(self, push: Push) -> None:
        """A committed push for this connection's recipient (the :class:`~kefu.server.hub.Sink`)."""
        self._put("push", push)

    def catch_up(self) -> None:
        """Send every stored push after :attr:`last_sent`."""
        self._put("catchup", None)

    def check(self, latest: int) -> None:
        """The recipient's stored latest ``seq`` (pushes may have been lost on the bus):
        send what this connection missed, if anything (the :class:`~kefu.server.hub.Sink`)."""
        if latest > self.last_sent:
            log.info("%s: pushes lost on the bus; sending them from the database", self.recipient)
            self.catch_up()

    def close(self, code: int, reason: str) -> None:
        self._put("close", (code, reason))
        self._stopped = True

    def replaced(self) -> None:
        """A newer connection of the same recipient took over."""
        self.reply(event_message("replaced", {"reason": "a newer connection took over"}, mark="event"))
        self.close(CLOSE_REPLACED, "replaced by a newer connection")

    async def _write(self, text: str) -> None:
        if self._direct is None or not self._direct.text(text):
            await self.ws.send_text(text)

    async def _fill(self, upto: int | None) -> None:
        assert self.recipient is not None
        while True:
            batch = await self.hub.pushes_after(self.recipient, self.last_sent)
            if not batch:
                return
            for p in batch:
                if upto is not None and p.seq > upto:
                    return
                await self._write(p.text)
                self.last_sent = p.seq

    async def _send(self, kind: str, item: Any) -> bool:
        """Send one queued item; ``True`` once the connection is closed."""
        if kind == "text":
            await self._write(item)
        elif kind == "push":
            if item.seq <= self.last_sent:
                return False  # sent already (a replay overlapped a live push)
            if item.seq > self.last_sent + 1:
                await self._fill(item.seq - 1)
            await self._write(item.text)
            self.last_sent = item.seq
        elif kind == "catchup":
            await self._fill(None)
        else:
            code, reason = item
            await self.ws.close(code, reason)
            return True
        return False

    async def _run(self) -> None:
        """Send until the queue is empty (the sending task)."""
        await self._drain()
        self._task = None

    async def _drain(self) -> None:
        """Send until the queue is empty."""
        try:
            while self._items:
                kind, item = self._items.popleft()
                if await self._send(kind, item):
                    self._dead = True  # closed: nothing more to send
                    break
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.debug("outbox of %s stopped: %r", self.recipient, exc)
            self._dead = True
        except Exception:
            # e.g. the database failed while filling a gap: the client resumes from its last seq
            log.exception("outbox of %s failed; closing the connection", self.recipient)
            self._stopped = True
            self._dead = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.ws.close(CloseCode.internal, "internal error")
        # no await between the queue's last look and here: nothing is left queued without a sender
        self._items = None

    async def stop(self) -> None:
        self._stopped = True
        self._dead = True
        self._items = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def pending(self) -> bool:
        """Something is queued (what :meth:`flush` would send)."""
        return bool(self._items)

    @property
    def closing(self) -> bool:
        return self._stopped
