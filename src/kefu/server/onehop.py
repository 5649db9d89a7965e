"""SQLite for asyncio in one trip per statement.

SQLAlchemy's ``sqlite+aiosqlite`` dialect runs each statement as four trips
to aiosqlite's database thread (make a cursor, execute, fetch the rows, close
the cursor), and every trip costs a queue hand-off, a future and a wake-up of
the event loop: about 70–90 µs each here, so three quarters of a statement's
cost was the trips, not SQLite (measured in docs/decisions.md, D11).

:class:`OneHopConnection` is aiosqlite's connection with a cursor that does
all of it in **one** trip: the worker thread creates the cursor, executes,
fetches every row, reads ``rowcount`` / ``lastrowid`` / ``description`` and
closes the cursor; the event-loop side then only hands those back. It is
given to SQLAlchemy through ``create_async_engine(async_creator=…)``
(:func:`connector`), so the dialect, the pool, the transactions and every
query stay SQLAlchemy's. Reading all rows at once is what the dialect does
anyway for non-streaming cursors; kefu never streams SQLite results.

The ``sqlite3`` connection is used only in aiosqlite's thread, as before.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["OneHopConnection", "OneHopCursor", "connector"]

_Outcome = tuple[Any, list[Any], int, int | None]


class OneHopCursor:
    """An aiosqlite-compatible cursor: ``execute`` is one trip, the rest none."""

    __slots__ = ("_conn", "_rows", "arraysize", "description", "lastrowid", "rowcount")

    def __init__(self, conn: OneHopConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._rows = []

    def __await__(self) -> Any:
        async def me() -> OneHopCursor:
            return self

        return me().__await__()

    async def _run(self, call: Callable[[sqlite3.Cursor], Any]) -> OneHopCursor:
        raw = self._conn._conn  # used only inside the database thread

        def work() -> _Outcome:
            cur = raw.cursor()
            try:
                call(cur)
                desc = cur.description
                rows = cur.fetchall() if desc is not None else []
                return desc, rows, cur.rowcount, cur.lastrowid
            finally:
                cur.close()
                self._conn.in_tx = raw.in_transaction

        if self._conn.inline:
            outcome = work()  # the writer, on the event loop: see OneHopConnection
        else:
            outcome = await self._conn._execute(work)  # type: ignore[no-untyped-call]
        self.description, self._rows, self.rowcount, self.lastrowid = outcome
        return self

    async def execute(self, sql: str, parameters: Any = ()) -> OneHopCursor:
        return await self._run(lambda cur: cur.execute(sql, parameters))

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneHopCursor:
        seq = list(parameters)
        return await self._run(lambda cur: cur.executemany(sql, seq))

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        n = self.arraysize if size is None else size
        rows, self._rows = self._rows[:n], self._rows[n:]
        return rows

    async def close(self) -> None:
        self._rows = []


class OneHopConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors take one trip a statement.

    It also remembers whether SQLite has a transaction open (read in the
    database thread after each statement): a rollback with none open — every
    read-only connection going back to the pool — takes no trip at all."""

    in_tx = False
    #: Set by the store for the length of a write transaction: its statements run right
    #: here on the event loop (an indexed insert or update into SQLite's page cache takes
    #: tens of µs, less than the trip), while the commit — the fsync — still goes to the
    #: thread (unless :attr:`commit_here` says otherwise). Writers take turns
    #: (``Store.write``), so the connection is never used by two threads at once; reads
    #: always go to the thread.
    inline = False
    #: Set by the store, with :attr:`inline`, for a write transaction whose commit may run
    #: here on the event loop too: asked at the commit, it says whether to (a quiet node's lone chat message, D89).
    #: The loop then waits for the fsync itself, instead of handing the commit to the thread
    #: and being woken when it is done: two thread wake-ups a message fewer.
    commit_here: Callable[[], bool] | None = None
    #: How long this connection's commits take, a moving average (s): a commit runs on the
    #: loop only while it is at most :attr:`commit_here_max`. A slow disk (a SAN's 10-50 ms
    #: fsync) would stall every connection of the node for each lone message; its commits
    #: stay in the thread, and come back to the loop if the disk gets fast again.
    commit_s = 0.0
    commit_here_max = 0.002

    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)

    async def rollback(self) -> None:
        if self.in_tx:
            await super().rollback()
            self.in_tx = False

    async def commit(self) -> None:
        here = self.commit_here
        t0 = time.perf_counter()
        if here is not None and self.commit_s <= self.commit_here_max and here():
            self._conn.commit()  # the writer's, on the loop (D89)
        else:
            await super().commit()
        self.commit_s += (time.perf_counter() - t0 - self.commit_s) / 8
        self.in_tx = False


def connector(path: Path) -> Callable[[], Awaitable[OneHopConnection]]:
    """The ``async_creator`` of an engine on the SQLite file ``path``."""

    async def connect() -> OneHopConnection:
        # check_same_thread off: a writer's statements run on the event loop (``inline``)
        conn = OneHopConnection(
            lambda: sqlite3.connect(str(path), check_same_thread=False), iter_chunk_size=64
        )
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        await conn
        return conn

    return connect
