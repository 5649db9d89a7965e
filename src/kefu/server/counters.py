"""The seq counters of a batch of messages (``mailboxes``' and ``journal_streams``'
``last_seq``), moved in a fixed number of statements whatever the batch's size:
:class:`MessageWriter`'s step 3 (kefu.server.groupcommit), on the driver (D73)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table, bindparam, insert, select, text, update

from .driversql import DriverSQL, PerDialect, one_of
from .schema import journal_streams, mailboxes

__all__ = ["MAILBOXES", "STREAMS", "Counters"]


class Counters:
    """The batched form of ``UPDATE … SET last_seq = last_seq + 1 RETURNING`` for one
    counter table (``mailboxes`` or ``journal_streams``): one ``UPDATE … RETURNING``
    (PostgreSQL, D68; SQLite when every count is the same, D62), else read the batch's
    rows locked, in key order, then write each one's new value."""

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
        #: PostgreSQL: the same in one statement whatever the counts (D68) — the rows locked in
        #: key order by the ``WITH`` (against deadlocks between the writers), then each moved
        #: by its own count from the arrays of keys and counts.
        t, k = table.name, key.name
        self.bump_pg = text(
            f"WITH locked AS (SELECT {k} FROM {t} WHERE {k} = ANY(CAST(:ks AS text[])) ORDER BY {k} FOR UPDATE) "
            f"UPDATE {t} SET last_seq = {t}.last_seq + v.n "
            f"FROM locked, unnest(CAST(:ks AS text[]), CAST(:ns AS integer[])) AS v(k, n) "
            f"WHERE {t}.{k} = locked.{k} AND v.k = locked.{k} RETURNING {t}.{k}, {t}.last_seq"
        )
        self.returning = True  # the benchmark switches it to compare

    async def take(self, db: DriverSQL, counts: dict[str, int]) -> dict[str, int]:
        """Add ``counts[k]`` to each counter ``k``; return each one's value before."""
        keys = sorted(counts)
        steps = set(counts.values())
        if self.returning and db.postgresql:
            ns = [counts[k] for k in keys]
            rows = await db.rows(self.bump_pg, {"ks": keys, "ns": ns})
            have = {r[0]: r[1] - counts[r[0]] for r in rows}
        elif self.returning and len(steps) == 1:
            n = steps.pop()
            have = {r[0]: r[1] - n for r in await db.rows(self.bump, {"ks": keys, "n": n})}
        else:
            have = {r[0]: r[1] for r in await db.rows(self.read, {"ks": keys})}
            known = [{"k": k, "s": have[k] + counts[k]} for k in keys if k in have]
            if known:
                await db.many(self.set, known)
        fresh = [{"k": k, "s": counts[k]} for k in keys if k not in have]
        if fresh:
            await db.many(self.new, fresh)
        return {k: have.get(k, 0) for k in keys}


MAILBOXES = Counters(mailboxes, mailboxes.c.recipient)
STREAMS = Counters(journal_streams, journal_streams.c.stream)
