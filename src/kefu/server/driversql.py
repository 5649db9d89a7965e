"""The hot statements of a message, run on the database driver itself (issue 18, D73).

A group-commit batch (kefu.server.groupcommit) runs about ten statements per
transaction, and on a quiet server every message is a batch of one. Through
SQLAlchemy each statement built an execution context, looked up its compiled
form in a cache, processed its parameters and wrapped its rows: about as much
CPU as SQLite's own work for a one-key index lookup (py-spy, D73).

:class:`DriverSQL` runs a SQLAlchemy Core statement on the driver connection
under an ``AsyncConnection``, in that connection's transaction. The statement
stays written once, in SQLAlchemy Core, next to the code that uses it; it is
compiled **once per dialect** (:class:`Compiled`: its SQL text, its
parameters in order with SQLAlchemy's own bind processors — SQLite's time
format, JSON — and its rows' result processors), and each call only orders
the parameters and runs the text:

- SQLite (:class:`SqliteSQL`): on the ``sqlite3`` connection, which caches
  the prepared statement by its text; inline on the event loop when the store
  says so (a write transaction: ``OneHopConnection.inline``), else in
  aiosqlite's thread;
- PostgreSQL (:class:`PgSQL`): on the ``asyncpg`` connection, which prepares
  a statement once per connection and text; SQLAlchemy's transaction is begun
  first if it was not yet (else the statements would commit one by one).

A statement whose text depends on the dialect (a list parameter: SQLite's
``json_each``, PostgreSQL's ``= ANY``) is given as :class:`PerDialect`.
Errors are the driver's own (``sqlite3.Error``, ``asyncpg`` exceptions):
the batch's callers send each message alone on any error anyway.
"""

from __future__ import annotations

import re
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from sqlalchemy import JSON, ColumnElement, DateTime, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

__all__ = ["Compiled", "DriverSQL", "PerDialect", "PgSQL", "SqliteSQL", "driver_sql", "one_of"]

Row = Any  # a namedtuple of the statement's result columns


class PerDialect:
    """A statement whose text differs per dialect: ``build(postgresql)`` makes it, once each."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[bool], Executable]) -> None:
        self.build = build


def one_of(column: ColumnElement[Any], name: str, postgresql: bool) -> ColumnElement[bool]:
    """``column`` is one of the list parameter ``name``, one statement text whatever the
    list's length: ``= ANY(:name)`` on PostgreSQL, ``IN (SELECT value FROM json_each(:name))``
    on SQLite (the list sent as JSON; SQLite searches the column's index once per value)."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=JSON)))
    )


class Compiled:
    """A statement compiled once for a dialect: its text, its parameters in order, the
    processors SQLAlchemy would apply to them and to its rows."""

    __slots__ = ("args", "defaults", "make", "results", "sql")

    def __init__(self, stmt: Executable, dialect: Dialect, *, many: bool = False) -> None:
        c = stmt.compile(dialect=dialect, for_executemany=many)  # type: ignore[attr-defined]
        self.sql: str = c.string
        procs = c._bind_processors
        names = list(c.positiontup or ())
        timed = {n for n, b in c.binds.items() if isinstance(b.type, DateTime)}
        self.args: list[tuple[str, Callable[[Any], Any] | None]] = [
            (n, _last_one(procs[n]) if n in timed and n in procs else procs.get(n)) for n in names
        ]
        self.defaults: dict[str, Any] = {
            k: v for k, v in c.construct_params(_check=False).items() if v is not None
        }
        cols = c._result_columns
        self.results: list[Callable[[Any], Any] | None] = [
            e[3]._cached_result_processor(dialect, None) for e in cols
        ]
        if not any(self.results):
            self.results = []
        keys = [e[0] for e in cols]
        self.make: Callable[[Iterable[Any]], Row] | None = None
        if keys:
            self.make = namedtuple("Row", keys, rename=True)._make  # type: ignore[attr-defined]

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        if self.defaults:
            params = {**self.defaults, **params}
        return tuple(params[n] if p is None else p(params[n]) for n, p in self.args)

    def rows(self, raw: Iterable[Any]) -> list[Row]:
        make = self.make
        if make is None:
            return list(raw)  # a text statement: the driver's rows (by index)
        if self.results:
            procs = self.results
            return [make(v if p is None else p(v) for p, v in zip(procs, r, strict=True)) for r in raw]
        return [make(r) for r in raw]


def _last_one(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` that remembers its last value: a batch's rows share one time (``now``),
    formatted once for all of them, not once a row and statement (SQLite's text times)."""
    last: list[tuple[Any, Any]] = [(_NOTHING, None)]  # one pair: read and replaced whole

    def again(value: Any) -> Any:
        seen, out = last[0]
        if value is not seen:
            out = process(value)
            last[0] = (value, out)
        return out

    return again


_NOTHING = object()

#: Compiled statements by (dialect name, statement, many).
_COMPILED: dict[tuple[str, Any, bool], Compiled] = {}


class DriverSQL:
    """Statements on the driver connection under a SQLAlchemy connection, in its transaction."""

    postgresql: bool = False

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def compiled(self, stmt: Executable | PerDialect, many: bool = False) -> Compiled:
        key = (self.dialect.name, stmt, many)
        c = _COMPILED.get(key)
        if c is None:
            built = stmt.build(self.postgresql) if isinstance(stmt, PerDialect) else stmt
            c = _COMPILED[key] = Compiled(built, self.dialect, many=many)
        return c

    async def rows(self, stmt: Executable | PerDialect, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run ``stmt`` once; its rows (attributes by column name), or ``[]``."""
        c = self.compiled(stmt)
        return c.rows(await self._fetch(c.sql, c.bind(params or {})))

    async def many(self, stmt: Executable | PerDialect, params: list[dict[str, Any]]) -> None:
        """Run ``stmt`` once per parameter set, in one call to the driver."""
        c = self.compiled(stmt, many=True)
        await self._many(c.sql, [c.bind(p) for p in params])

    async def insert_all(self, parts: list[tuple[Executable, list[dict[str, Any]]]]) -> None:
        """Run each ``INSERT`` for its rows (the parts with none are left out)."""
        for stmt, params in parts:
            if params:
                await self.many(stmt, params)

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        raise NotImplementedError

    async def _many(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError


class SqliteSQL(DriverSQL):
    """On the ``sqlite3`` connection of an aiosqlite (or ``OneHopConnection``) connection."""

    def __init__(self, dialect: Dialect, driver: Any) -> None:
        super().__init__(dialect)
        self.driver = driver
        self.raw: sqlite3.Connection = driver._conn

    def _run(self, work: Callable[[], Any]) -> Any:
        raw = self.raw
        try:
            return work()
        finally:
            self.driver.in_tx = raw.in_transaction  # OneHopConnection: its rollback needs to know

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        raw = self.raw

        def work() -> list[Any]:
            cur = raw.execute(sql, args)
            try:
                return cur.fetchall()
            finally:
                cur.close()

        if getattr(self.driver, "inline", False):
            return self._run(work)  # type: ignore[no-any-return]
        return await self.driver._execute(self._run, work)  # type: ignore[no-any-return]

    async def _many(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        raw = self.raw

        def work() -> None:
            raw.executemany(sql, args).close()

        if getattr(self.driver, "inline", False):
            self._run(work)
        else:
            await self.driver._execute(self._run, work)


class PgSQL(DriverSQL):
    """On the ``asyncpg`` connection under SQLAlchemy's adapter."""

    postgresql = True

    def __init__(self, dialect: Dialect, adapted: Any) -> None:
        super().__init__(dialect)
        self.adapted = adapted
        self.driver = adapted._connection

    async def insert_all(self, parts: list[tuple[Executable, list[dict[str, Any]]]]) -> None:
        """The ``INSERT`` s in **one** statement, one round trip whatever their rows: each
        one's ``VALUES`` made an ``unnest`` of one array a column, all but the last in a
        ``WITH`` (:func:`_unnested`)."""
        parts = [(stmt, params) for stmt, params in parts if params]
        if len(parts) < 2:
            await super().insert_all(parts)
            return
        key = ("insert_all", *(stmt for stmt, _ in parts))
        sql = _COMBINED.get(key)
        compiled = [self.compiled(stmt, many=True) for stmt, _ in parts]
        if sql is None:
            sql = _COMBINED[key] = _unnested([c.sql for c in compiled])
        args: list[Any] = []
        for c, (_, params) in zip(compiled, parts, strict=True):
            args.extend(list(col) for col in zip(*(c.bind(p) for p in params), strict=True))
        await self._fetch(sql, tuple(args))

    async def _begun(self) -> None:
        if self.adapted._transaction is None:
            await self.adapted._start_transaction()  # as SQLAlchemy's cursor does before a statement

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        await self._begun()
        return await self.driver.fetch(sql, *args)  # type: ignore[no-any-return]

    async def _many(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        await self._begun()
        await self.driver.executemany(sql, args)


_COMBINED: dict[tuple[Any, ...], str] = {}
_INSERT = re.compile(r"(INSERT INTO .+?\)) VALUES \((.*)\)", re.DOTALL)
_ARG = re.compile(r"\$(\d+)(::.+)")


def _unnested(inserts: list[str]) -> str:
    """PostgreSQL: ``INSERT … VALUES ($1::T, …)`` statements as one, each inserting the rows
    of arrays (``SELECT * FROM unnest($1::T[], …)``), their parameters numbered on."""
    out: list[str] = []
    base = 0
    for sql in inserts:
        m = _INSERT.fullmatch(sql.strip())
        if m is None:
            raise ValueError(f"not an INSERT … VALUES: {sql!r}")
        arrays = []
        for i, expr in enumerate(m.group(2).split(", "), 1):
            a = _ARG.fullmatch(expr)
            if a is None or int(a.group(1)) != i:
                raise ValueError(f"a value that is not the parameter ${i}: {expr!r}")
            arrays.append(f"${base + i}{a.group(2)}[]")
        base += len(arrays)
        out.append(f"{m.group(1)} SELECT * FROM unnest({', '.join(arrays)})")
    ctes = ", ".join(f"i{n} AS ({sql})" for n, sql in enumerate(out[:-1]))
    return f"WITH {ctes} {out[-1]}"


#: SQLAlchemy's connection → the driver statements on it (one a connection and transaction).
SQL_KEY: Final = "kefu_driver_sql"


async def driver_sql(conn: AsyncConnection) -> DriverSQL:
    """The driver statements of ``conn`` (kept in the connection's ``info`` for its next use)."""
    info = conn.info  # the pooled DBAPI connection's: lives as long as the driver connection
    db: DriverSQL | None = info.get(SQL_KEY)
    if db is None:
        fairy = await conn.get_raw_connection()
        if conn.dialect.name == "sqlite":
            db = SqliteSQL(conn.dialect, fairy.driver_connection)
        else:
            db = PgSQL(conn.dialect, fairy.dbapi_connection)
        info[SQL_KEY] = db
    return db
