"""SQLite's WAL checkpoints, off the commit path (issue 18, D88).

In WAL mode a commit appends the pages it changed to the log; a *checkpoint* copies them
back into the database file and syncs it. By default SQLite runs one inside whichever
commit takes the log past 1,000 pages: that commit then copies about 4 MB and syncs the
database file before it returns, and every chat message of the next group-commit batch
waits for it. A node storing 2,500 messages a second writes 16–40 KB of log a message:
a checkpoint inside the writer every fraction of a second.

:class:`Checkpointer` takes them out of the writer's way:

- every connection of the store has ``PRAGMA wal_autocheckpoint=0`` (:data:`PRAGMAS`), so
  no commit checkpoints;
- a thread of its own, on a connection of its own, runs ``PRAGMA wal_checkpoint(PASSIVE)``
  after writes (:meth:`Checkpointer.kick`, called by the store after each write
  transaction), at most once every ``every`` seconds. PASSIVE waits for nobody: it copies
  what no reader still needs while the writer goes on appending; once the whole log is
  copied and no reader holds it, the next commit starts the log again from its beginning;
- ``journal_size_limit`` truncates the log file when it starts again, so a burst does not
  leave it large on disk.

An idle store is not touched (no kick, no checkpoint). Closing runs a last checkpoint.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["PRAGMAS", "Checkpointer"]

log = logging.getLogger(__name__)

#: run on every connection of a store whose checkpoints a :class:`Checkpointer` runs
PRAGMAS = ("PRAGMA wal_autocheckpoint=0", "PRAGMA journal_size_limit=67108864")


class Checkpointer:
    """PASSIVE checkpoints of one SQLite database, in a thread, after writes."""

    def __init__(self, path: Path, *, every: float) -> None:
        self.path = path
        self.every = every
        self.runs = 0  # checkpoints run
        self.last: tuple[int, int, int] | None = None  # (busy, log frames, checkpointed frames)
        self._kicked = threading.Event()
        self._stop = threading.Event()
        self._ran = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="kefu-wal-checkpoint", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Something was committed: checkpoint soon (at most once every ``every``)."""
        self._kicked.set()

    def wait_runs(self, runs: int, timeout: float) -> bool:
        """Block until :attr:`runs` reaches ``runs`` (or ``timeout`` passes): whether it did."""
        with self._ran:
            return self._ran.wait_for(lambda: self.runs >= runs, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after a last checkpoint."""
        self._stop.set()
        self._kicked.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        self._kicked.wait()  # the first write: the store has made the file and its WAL by then
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            while True:
                self._kicked.clear()
                self._checkpoint(conn)
                if self._stop.is_set():
                    return
                self._stop.wait(self.every)  # what commits meanwhile waits for the next one
                self._kicked.wait()
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            log.exception("a WAL checkpoint of %s failed; the next write tries again", self.path)
            return
        with self._ran:
            self.runs += 1
            self.last = (busy, frames, done)
            self._ran.notify_all()
