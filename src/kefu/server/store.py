"""The database: engine, migrations on open, transactions.

SQLite (the default) runs in WAL mode with ``synchronous=FULL``: a committed
transaction survives a power loss (reliability §0.8), and readers do not wait
for the writer. SQLite has one writer at a time, so write transactions are
serialised in-process by a lock instead of failing with ``database is
locked``. PostgreSQL takes row locks and needs no such lock.

The schema is made by the Alembic migrations in ``kefu/server/migrations``,
which run when the store opens (an advisory lock keeps two PostgreSQL nodes
from migrating at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .onehop import OneHopConnection, connector
from .settings import Settings
from .walcheck import PRAGMAS as CHECKPOINTED
from .walcheck import Checkpointer

__all__ = ["MIGRATION_LOCK", "Store", "aware", "iso", "new_id", "ordered_ids", "storage_full"]

MIGRATION_LOCK = 0x6B656675  # "kefu": PostgreSQL advisory lock id for migrations
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def new_id() -> str:
    """A random 128-bit id as 32 hex digits (unguessable; reliability T10)."""
    return secrets.token_hex(16)


def ordered_ids(n: int) -> list[str]:
    """``n`` ids of the rows written in volume (chat messages, journal events): 32 hex
    digits, the first 12 the milliseconds since the epoch, the other 20 random (80 bits,
    from one read of the system's random source). Unique and unguessable as :func:`new_id`'s
    are, but a new row's id lands at the right end of its unique index, on a page the last
    rows warmed, not on a random page of an index that outgrows the cache (D88)."""
    at = f"{time.time_ns() // 1_000_000:012x}"
    raw = secrets.token_hex(10 * n)
    return [at + raw[i : i + 20] for i in range(0, 20 * n, 20)]


def aware(value: datetime | None) -> datetime | None:
    """Times come back naive from SQLite: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    v = aware(value)
    return v.isoformat() if v is not None else None


#: ENOSPC (the disk) and EDQUOT (the user's quota)
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: PostgreSQL's SQLSTATE for disk_full (class 53, insufficient resources)
_PG_DISK_FULL = "53100"


def storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a write that failed for lack of space:
    ``OSError`` ENOSPC / EDQUOT, SQLite's ``SQLITE_FULL`` ("database or disk is
    full"), PostgreSQL's ``disk_full`` (53100). SQLAlchemy and the drivers wrap
    the original error, so the chain (``orig``, ``__cause__``, ``__context__``) is
    followed."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.Error) and (
            getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(e)
        ):
            return True
        if getattr(e, "sqlstate", None) == _PG_DISK_FULL or getattr(e, "pgcode", None) == _PG_DISK_FULL:
            return True
        orig = getattr(e, "orig", None)
        todo.extend((orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__))
    return False


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, *, checkpointed: bool = False) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    if checkpointed:  # a Checkpointer's thread runs them, not the commits (D88)
        for pragma in CHECKPOINTED:
            cur.execute(pragma)
    cur.close()


def _alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "kefu.server:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def _upgrade(conn: Connection) -> None:
    command.upgrade(_alembic_config(conn), "head")


class Store:
    """One database, opened once per server process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        #: SQLite: the one connection that writes, kept out of the pool (D74). SQLite drops a
        #: connection's page cache when another connection changed the file; the writer is
        #: the only one that does, so its cache stays warm from one transaction to the next
        #: (from the pool, each write took whichever connection a reader had last used).
        self._writer: AsyncConnection | None = None
        self.keep_writer = True  # the benchmark switches it to compare
        #: SQLite file: its WAL checkpoints, off the commit path (D88)
        self.checkpointer: Checkpointer | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not open")
        return self._engine

    async def open(self) -> None:
        """Connect, create the schema if asked, and migrate to the newest revision."""
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            schema = self.settings.db_schema
            server_settings = dict(self.settings.db_settings)
            if schema is not None:
                if not _SCHEMA_NAME.fullmatch(schema):
                    raise ValueError(f"schema name {schema!r}: use lower-case letters, digits and _")
                await self._create_schema(schema)
                server_settings["search_path"] = schema
            if server_settings:
                kwargs["connect_args"] = {"server_settings": server_settings}
            kwargs["pool_size"] = self.settings.db_pool
            kwargs["max_overflow"] = self.settings.db_pool
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                kwargs["async_creator"] = connector(Path(path))  # one trip a statement (onehop.py)
                if self.settings.checkpoint_every > 0:
                    self.checkpointer = Checkpointer(Path(path), every=self.settings.checkpoint_every)
            # each connection is a thread and a file handle: keep enough open for the readers of a
            # busy node rather than opening and closing overflow connections under load
            kwargs["pool_size"] = 20
            kwargs["max_overflow"] = 20
        # a failed statement's error (and the 500's traceback in the log) names the statement,
        # never its parameters: row values such as a message's text or a token's hash (kefu.logs)
        engine = create_async_engine(self.url, hide_parameters=True, **kwargs)
        if self.is_sqlite:
            pragmas = functools.partial(_sqlite_pragmas, checkpointed=self.checkpointer is not None)
            event.listen(engine.sync_engine, "connect", pragmas)
        self._engine = engine
        async with self.write() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            await conn.run_sync(_upgrade)
        if self.is_sqlite:
            self._writer = await engine.connect()

    async def _create_schema(self, schema: str) -> None:
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        finally:
            await engine.dispose()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)  # the last checkpoint
            self.checkpointer = None

    @contextlib.asynccontextmanager
    async def write(self, *, commit_here: Callable[[], bool] | None = None) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on an error.

        SQLite: its statements run on the event loop, its commit (the fsync) in the
        connection's thread, unless ``commit_here`` says at the commit that the loop has
        nothing else to do meanwhile (the group commit's lone message, D89)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        writer: OneHopConnection | None = None
        async with self._write_lock:
            try:
                async with self._begin() as conn:
                    driver = (await conn.get_raw_connection()).driver_connection
                    if isinstance(driver, OneHopConnection):
                        writer = driver
                        writer.inline = True  # statements on the loop (onehop.py)
                        writer.commit_here = commit_here
                    yield conn
            finally:
                if writer is not None:
                    writer.inline = False
                    writer.commit_here = None
        if self.checkpointer is not None:
            self.checkpointer.kick()  # committed: its pages go to the database soon

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """SQLite: a transaction on the writer's own connection (under the write lock)."""
        writer = self._writer if self.keep_writer else None
        if writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with writer.begin():
            yield writer

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn
