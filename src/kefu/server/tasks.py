"""The tasks a service starts beside its requests, owned until they end.

A task started with ``asyncio.create_task`` and forgotten outlives whoever started
it: on shutdown it still runs after the store closed, and fails with "Task exception
was never retrieved … the store is not open". A service keeps each task it starts in
its :class:`Background` from the start to the **end** of the task (not merely until
the task stops waiting: a grace or ringing timer that fired is still working), and
its ``close()`` refuses new tasks, cancels the rest and awaits them, before
:meth:`Services.close <kefu.server.services.Services.close>` closes the store. A
task that fails is logged with its name, never left for the garbage collector.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["Background", "Coalesced"]


class Background:
    """``spawn`` tasks; ``settled()`` waits for them, ``close()`` cancels and awaits them."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """Run ``coro`` as a task named ``name``; ``None`` (and ``coro`` not run) once closed."""
        if self.closed:
            coro.close()
            self._log.debug("%s not started: shutting down", name)
            return None
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("%s failed", task.get_name(), exc_info=exc)

    def _others(self) -> set[asyncio.Task[None]]:
        return self._tasks - {asyncio.current_task()}

    async def settled(self) -> None:
        """Until every task started so far, and those they started, has ended."""
        while pending := self._others():
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Start no more tasks; cancel those running and wait until they have ended."""
        self.closed = True
        while pending := self._others():
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class Coalesced:
    """A job run whenever it is asked for, never twice at once, asks coalesced.

    ``ask()`` during a run makes exactly one more run after it, however many asks
    came (a routing pass, the queue's or the floor's pushes, a look for pushes
    lost on the bus); with ``interval`` (seconds, or a function giving them) a run
    is followed by that pause, so changes meanwhile are shown together. A run that
    fails is logged (``failed``: what it means for the user) and the next ask runs
    again. ``close()`` stops asking and cancels a run in progress."""

    def __init__(
        self,
        job: Callable[[], Awaitable[None]],
        name: str,
        log: logging.Logger,
        *,
        failed: str,
        interval: float | Callable[[], float] = 0.0,
    ) -> None:
        self._job = job
        self._name = name
        self._log = log
        self._failed = failed
        self._interval = interval
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def ask(self) -> None:
        if self.closed:
            return
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while self._again and not self.closed:
            self._again = False
            try:
                await self._job()
            except Exception:
                self._log.exception(self._failed)
            pause = self._interval() if callable(self._interval) else self._interval
            if pause > 0:
                await asyncio.sleep(pause)  # a rate, not a wait for an event

    async def idle(self) -> None:
        """Until no run is going on."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
