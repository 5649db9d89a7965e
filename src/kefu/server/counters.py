"""The seq counters of a batch of messages (``mailboxes``' and ``journal_streams``'
``last_seq``), moved in a fixed number of statements whatever the batch's size:
:class:`MessageWriter`'s step 3 (kefu.server.groupcommit), on the driver (D73);
on PostgreSQL both tables in one statement (:func:`take_all`, D86)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table, TextClause, bindparam, insert, select, text, update

from .driversql import DriverSQL, PerDialect, one_of
from .schema import journal_streams, mailboxes

__all__ = ["MAILBOXES", "STREAMS", "Counters", "take_all"]


class Counters:
    """The batched form of ``UPDATE … SET last_seq = last_seq + 1 RETURNING`` for one
    counter table (``mailboxes`` or ``journal_streams``): one ``UPDATE … RETURNING``
    (PostgreSQL, D68, in :func:`take_all`'s statement; SQLite when every count is the same,
    D62), else read the batch's rows locked, in key order, then write each one's new value."""

    def __init__(self, table: Table, key: Column[Any]) -> None:
        self.read = PerDialect(
            lambda pg: (
                select(key, table.c.last_seq).where(one_of(key, "ks", pg)).order_by(key).with_for_update()
            )
        )
        self.set = update(table).where(key == bindparam("k")).values(last_seq=bindparam("s"))
        self.new = insert(table).values({key.name: bindparam("k"), "last_seq": bindparam("s")})
        #: SQLite, every counter of the batch moved by the same count (a batch of one message):
        #: one ``UPDATE … RETURNING`` instead of the read and the write (D62).
        self.bump = PerDialect(
            lambda pg: (
                update(table)
                .where(one_of(key, "ks", pg))
                .values(last_seq=table.c.last_seq + bindparam("n"))
                .returning(key, table.c.last_seq)
            )
        )
        self.table, self.key = table.name, key.name
        self.returning = True  # the benchmark switches it to compare

    def ctes(self, n: str) -> str:
        """PostgreSQL (D68, :func:`take_all`): the ``WITH`` parts ``locked{n}`` (the rows of
        the keys ``:ks{n}`` locked in key order, against deadlocks between the writers) and
        ``moved{n}`` (each one moved by its own count in ``:ns{n}``; rows ``k``, ``s``: key,
        new value), whatever the counts."""
        t, k = self.table, self.key
        return (
            f"locked{n} AS (SELECT {k} FROM {t} WHERE {k} = ANY(CAST(:ks{n} AS text[])) ORDER BY {k} "
            f"FOR UPDATE), moved{n} AS (UPDATE {t} SET last_seq = {t}.last_seq + v.n "
            f"FROM locked{n}, unnest(CAST(:ks{n} AS text[]), CAST(:ns{n} AS integer[])) AS v(k, n) "
            f"WHERE {t}.{k} = locked{n}.{k} AND v.k = locked{n}.{k} RETURNING {t}.{k} AS k, {t}.last_seq AS s)"
        )

    async def take(self, db: DriverSQL, counts: dict[str, int]) -> dict[str, int]:
        """Add ``counts[k]`` to each counter ``k``; return each one's value before. This
        table alone (:func:`take_all` takes PostgreSQL's tables together)."""
        keys = sorted(counts)
        steps = set(counts.values())
        if self.returning and len(steps) == 1:
            n = steps.pop()
            have = {r[0]: r[1] - n for r in await db.rows(self.bump, {"ks": keys, "n": n})}
        else:
            have = {r[0]: r[1] for r in await db.rows(self.read, {"ks": keys})}
            known = [{"k": k, "s": have[k] + counts[k]} for k in keys if k in have]
            if known:
                await db.many(self.set, known)
        return await self._start(db, counts, have)

    async def _start(self, db: DriverSQL, counts: dict[str, int], have: dict[str, int]) -> dict[str, int]:
        """Insert the counters not there yet (at their counts); each one's value before."""
        keys = sorted(counts)
        fresh = [{"k": k, "s": counts[k]} for k in keys if k not in have]
        if fresh:
            await db.many(self.new, fresh)
        return {k: have.get(k, 0) for k in keys}


#: PostgreSQL: the statements of several counter tables as one (D86), by the tables taken.
_TOGETHER: dict[tuple[Counters, ...], TextClause] = {}


async def take_all(db: DriverSQL, parts: list[tuple[Counters, dict[str, int]]]) -> list[dict[str, int]]:
    """:meth:`Counters.take` of each part, in order. On PostgreSQL the parts' ``UPDATE …
    RETURNING`` (D68) are **one** statement, one round trip (D86): each table's rows locked in
    key order, the tables in the order given, as their statements one after the other did."""
    live = [(c, counts) for c, counts in parts if counts]
    if not live or not db.postgresql or not all(c.returning for c, _ in live):
        return [await c.take(db, counts) if counts else {} for c, counts in parts]
    tables = tuple(c for c, _ in live)
    stmt = _TOGETHER.get(tables)
    if stmt is None:
        withs = ", ".join(c.ctes(str(i)) for i, c in enumerate(tables))
        union = " UNION ALL ".join(f"SELECT {i} AS part, k, s FROM moved{i}" for i in range(len(tables)))
        stmt = _TOGETHER[tables] = text(f"WITH {withs} {union}")
    params: dict[str, Any] = {}
    for i, (_, counts) in enumerate(live):
        keys = sorted(counts)
        params[f"ks{i}"], params[f"ns{i}"] = keys, [counts[k] for k in keys]
    have: list[dict[str, int]] = [{} for _ in live]
    for part, key, value in await db.rows(stmt, params):
        have[part][key] = value - live[part][1][key]
    taken = [await c._start(db, counts, h) for (c, counts), h in zip(live, have, strict=True)]
    return [taken.pop(0) if counts else {} for _, counts in parts]


MAILBOXES = Counters(mailboxes, mailboxes.c.recipient)
STREAMS = Counters(journal_streams, journal_streams.c.stream)
