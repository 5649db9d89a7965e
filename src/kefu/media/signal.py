"""Carry negotiation between two :class:`~kefu.media.peer.MediaPeer` objects
of one process — what the server does between two processes.

Used by the tests, the benchmark and anything that runs both ends in one
process. It also shows the whole driver a real signalling channel needs:
on :class:`~kefu.media.events.NegotiationNeeded` call ``negotiate()`` and
deliver the result; deliver every reply with ``handle()`` until there is none.
"""

from __future__ import annotations

import asyncio
import logging

from .errors import MediaError
from .events import MediaEvent, NegotiationNeeded
from .peer import MediaPeer

__all__ = ["DirectLink"]

log = logging.getLogger(__name__)


class DirectLink:
    """Negotiates ``a`` ⇄ ``b`` whenever either needs it, one exchange at a time."""

    def __init__(self, a: MediaPeer, b: MediaPeer) -> None:
        self.a, self.b = a, b
        self.exchanges = 0
        self.errors: list[MediaError] = []
        self._queue: asyncio.Queue[MediaPeer] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unsubscribe = [
            a.events.subscribe(lambda e: self._on_event(a, e)),
            b.events.subscribe(lambda e: self._on_event(b, e)),
        ]
        self._task = asyncio.ensure_future(self._run())

    def _on_event(self, side: MediaPeer, event: MediaEvent) -> None:
        if isinstance(event, NegotiationNeeded):
            self.kick(side)

    def kick(self, side: MediaPeer) -> None:
        """Ask ``side`` to negotiate (as if it had emitted NegotiationNeeded)."""
        self._idle.clear()
        self._queue.put_nowait(side)

    async def _run(self) -> None:
        while True:
            side = await self._queue.get()
            try:
                if not side.closed:
                    await self._exchange(side)
            except MediaError as exc:
                log.warning("negotiation %s -> %s failed: %s", side.local, side.remote, exc)
                self.errors.append(exc)
            finally:
                # a NegotiationNeeded the exchange scheduled (call_soon) lands first
                await asyncio.sleep(0)
                if self._queue.empty():
                    self._idle.set()

    async def _exchange(self, side: MediaPeer) -> None:
        message = await side.negotiate()
        sender = side
        while message is not None:
            receiver = self.b if sender is self.a else self.a
            if receiver.closed:
                return
            message = await receiver.handle(message)
            sender = receiver
            self.exchanges += 1

    async def settled(self, within: float = 5.0) -> None:
        """Wait until no negotiation is queued or running."""
        await asyncio.wait_for(self._idle.wait(), within)

    async def negotiate(self, within: float = 5.0) -> None:
        """Run one negotiation started by the offerer's side and wait for it."""
        offerer = self.a if self.a.offerer else self.b
        self.kick(offerer)
        await self.settled(within)

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
