"""SQLite's WAL checkpoints run in the checkpointer's thread, never inside a commit (D88)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from sqlalchemy import text

from kefu.server import Settings
from kefu.server.store import Store

BIG = 6 * 1024 * 1024  # 1,500 pages of 4 KiB: past SQLite's automatic checkpoint (1,000)


async def _open(tmp_path: Path, every: float) -> Store:
    store = Store(dataclasses.replace(Settings(data_dir=tmp_path), checkpoint_every=every))
    await store.open()
    async with store.write() as conn:
        await conn.execute(text("CREATE TABLE blobs (b BLOB)"))
    return store


async def _write_big(store: Store) -> None:
    async with store.write() as conn:
        await conn.execute(text("INSERT INTO blobs VALUES (randomblob(:n))"), {"n": BIG})


async def test_commits_leave_the_checkpoints_to_the_checkpointers_thread(tmp_path: Path) -> None:
    store = await _open(tmp_path, every=3600.0)  # after its first run, it waits: commits alone
    db = tmp_path / "kefu.db"
    try:
        cp = store.checkpointer
        assert cp is not None
        assert await asyncio.to_thread(cp.wait_runs, 1, 10.0)  # the migrations' and the table's writes
        async with store.read() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        size = db.stat().st_size
        await _write_big(store)
        # a commit with SQLite's own checkpoints would have copied its 1,500 pages into the
        # file; here they wait in the log for the checkpointer
        assert db.stat().st_size < size + BIG // 2
        assert (tmp_path / "kefu.db-wal").stat().st_size > BIG
        assert cp.runs == 1
    finally:
        await store.close()  # the last checkpoint
    assert db.stat().st_size > size + BIG
    assert cp.last is not None and cp.last[1] == cp.last[2]  # every frame of the log copied


async def test_the_checkpointer_copies_the_log_soon_after_a_write(tmp_path: Path) -> None:
    store = await _open(tmp_path, every=0.001)
    db = tmp_path / "kefu.db"
    try:
        cp = store.checkpointer
        assert cp is not None
        assert await asyncio.to_thread(cp.wait_runs, 1, 10.0)
        runs, size = cp.runs, db.stat().st_size
        await _write_big(store)
        assert await asyncio.to_thread(cp.wait_runs, runs + 1, 10.0)
        if db.stat().st_size < size + BIG:  # that run began before the commit: the next one copies it
            assert await asyncio.to_thread(cp.wait_runs, runs + 2, 10.0)
        assert db.stat().st_size > size + BIG
        assert cp.last is not None and cp.last[0] == 0 and cp.last[1] == cp.last[2]
        # idle: no write, no kick, no checkpoint
        runs = cp.runs
        assert not await asyncio.to_thread(cp.wait_runs, runs + 1, 0.05)
    finally:
        await store.close()


async def test_without_the_checkpointer_the_commits_checkpoint_as_sqlite_does(tmp_path: Path) -> None:
    store = await _open(tmp_path, every=0.0)
    db = tmp_path / "kefu.db"
    try:
        assert store.checkpointer is None
        async with store.read() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 1000
        size = db.stat().st_size
        await _write_big(store)
        assert db.stat().st_size > size + BIG  # copied by the commit itself
    finally:
        await store.close()
