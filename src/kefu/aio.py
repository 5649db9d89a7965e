"""The event loop a kefu process runs on: uvloop where installed, else asyncio's own.

uvloop (libuv) runs the server's message path about 15 % faster on this
machine (docs/benchmarks.md, issue 18). ``KEFU_LOOP=asyncio`` (or ``kefu
server --loop asyncio``) turns it off, e.g. to compare or to debug with
asyncio's debug mode. Windows has no uvloop: asyncio's loop is used.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "loop_name", "new_event_loop", "run"]

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


def loop_name(wanted: str | None = None) -> str:
    """The loop to run: ``wanted``, else ``$KEFU_LOOP``, else uvloop if installed."""
    name = (wanted or os.environ.get("KEFU_LOOP") or "uvloop").lower()
    if name not in LOOPS:
        raise ValueError(f"event loop {name!r}: use one of {', '.join(LOOPS)}")
    if name == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "asyncio"
    return name


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_name` picks."""
    if loop_name(loop) == "asyncio":
        return asyncio.run(main)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def new_event_loop(*, loop: str | None = None) -> asyncio.AbstractEventLoop:
    """A new loop of the kind :func:`loop_name` picks (for a loop run in a thread, such
    as the synchronous ``IMClient``'s)."""
    if loop_name(loop) == "asyncio":
        return asyncio.new_event_loop()
    import uvloop

    return uvloop.new_event_loop()
