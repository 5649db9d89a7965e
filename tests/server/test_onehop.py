"""One trip to SQLite's thread per statement, with SQLAlchemy on top (kefu.server.onehop)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from kefu.server.onehop import OneHopConnection, connector


async def test_statements_results_and_transactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "t.db"
    trips: list[str] = []
    real = OneHopConnection._execute

    async def counted(self: OneHopConnection, fn: object, *a: object, **k: object) -> object:
        trips.append(getattr(fn, "__name__", "?"))
        return await real(self, fn, *a, **k)

    engine = create_async_engine(f"sqlite+aiosqlite:///{db}", async_creator=connector(db))
    try:
        async with engine.begin() as c:
            await c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
        monkeypatch.setattr(OneHopConnection, "_execute", counted)
        async with engine.begin() as c:
            r = await c.execute(text("INSERT INTO t (v) VALUES ('a'), ('b')"))
            assert r.rowcount == 2
            got = await c.execute(text("SELECT id, v FROM t ORDER BY id"))
            assert [tuple(x) for x in got] == [(1, "a"), (2, "b")]
        assert trips == ["work", "work", "commit"]  # one trip a statement, then the commit
        trips.clear()
        async with engine.connect() as c:  # a read: back to the pool with no rollback trip
            assert (await c.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
        assert trips == ["work"]
        # a failing statement rolls its transaction back; what committed stays
        with pytest.raises(IntegrityError):
            async with engine.begin() as c:
                await c.execute(text("INSERT INTO t (v) VALUES ('c')"))
                await c.execute(text("INSERT INTO t (v) VALUES ('a')"))
        async with engine.connect() as c:
            rows = (await c.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
        assert rows == ["a", "b"]
    finally:
        await engine.dispose()


async def test_a_write_transaction_runs_its_statements_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In ``Store.write`` only the commit goes to the thread; reads always do."""
    from kefu.server.settings import Settings
    from kefu.server.store import Store

    store = Store(Settings(data_dir=tmp_path))
    await store.open()
    async with store.read() as c:  # a reader's connection, opened (the writer keeps its own, D74)
        await c.execute(text("SELECT 1"))
    trips: list[str] = []
    real = OneHopConnection._execute

    async def counted(self: OneHopConnection, fn: object, *a: object, **k: object) -> object:
        trips.append(getattr(fn, "__name__", "?"))
        return await real(self, fn, *a, **k)

    try:
        monkeypatch.setattr(OneHopConnection, "_execute", counted)
        async with store.write() as c:
            await c.execute(text("CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT)"))
            await c.execute(text("INSERT INTO w (v) VALUES ('x')"))
            assert (await c.execute(text("SELECT count(*) FROM w"))).scalar_one() == 1
        assert trips == ["commit"]
        trips.clear()
        async with store.read() as c:
            assert (await c.execute(text("SELECT v FROM w"))).scalar_one() == "x"
        assert trips == ["work"]
    finally:
        await store.close()
