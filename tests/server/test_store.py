"""The database: migrations equal the tables; SQLite durability; pushes are stored with gap-free seqs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, select, text

from kefu.protocol.wire import event_message
from kefu.server import Settings
from kefu.server.events import _GIVE_POS
from kefu.server.hub import Hub
from kefu.server.schema import events, journal, metadata
from kefu.server.store import Store
from tests.conftest import ServerHandle


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "kefu.server:migrations")
    (head,) = ScriptDirectory.from_config(cfg).get_heads()
    return str(head)


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_the_migrations_make_exactly_the_tables(server_settings: Callable[..., Settings]) -> None:
    store = Store(server_settings())
    await store.open()
    try:
        async with store.read() as conn:
            assert await conn.run_sync(_diff) == []
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            assert version == _head()  # the one head revision (the chain has no branch)
        await store.close()
        await store.open()  # opening again migrates nothing and keeps the data
    finally:
        await store.close()


async def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    store = Store(Settings(data_dir=tmp_path))
    await store.open()
    try:
        async with store.read() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await store.close()


async def test_pushes_get_gap_free_seqs_and_a_rollback_sends_nothing(server: ServerHandle) -> None:
    hub: Hub = server.services.hub
    sent: list[int] = []

    class Sink:
        def offer(self, push: object) -> None:
            sent.append(push.seq)  # type: ignore[attr-defined]

    hub.bus.attach("x:1", Sink())
    async with hub.transaction() as tx:
        assert await tx.push("x:1", event_message("a", mark="event")) == 1
        assert await tx.push("x:1", event_message("b", mark="event")) == 2
    with pytest.raises(RuntimeError):
        async with hub.transaction() as tx:
            await tx.push("x:1", event_message("lost", mark="event"))
            raise RuntimeError("the change fails")
    async with hub.transaction() as tx:
        assert await tx.push("x:1", event_message("c", mark="event")) == 3
    assert sent == [1, 2, 3]
    assert await hub.latest_seq("x:1") == 3
    stored = await hub.pushes_after("x:1", 1)
    assert [p.seq for p in stored] == [2, 3] and '"subMark":"c"' in stored[1].text
    async with server.services.store.read() as conn:
        n = (await conn.execute(select(func.count()).where(events.c.recipient == "x:1"))).scalar()
    assert n == 3


async def test_the_sequencer_reads_the_unsequenced_events_by_their_own_index(
    server_settings: Callable[..., Settings],
) -> None:
    """D83: the sequencer's "first unsequenced events in ``num`` order" is answered by the
    partial index of the unsequenced, in order. On ``pos``'s own index PostgreSQL scanned
    every event sequenced since the last vacuum (thousands under load: 1 ms a batch). SQLite
    updates a row in place, so ``pos``'s index holds only the unsequenced as NULL: its own
    choice is as good."""
    settings = server_settings()
    if settings.db_url is None:
        pytest.skip("PostgreSQL's plan (SQLite has no dead row versions in its indexes)")
    store = Store(settings)
    await store.open()
    try:
        now = datetime.now(UTC)
        rows: list[dict[str, object]] = [
            {
                "id": f"e{i}",
                "type": "im.message",
                "stream": "session:s",
                "seq": i + 1,
                "data": {},
                "created_at": now,
                "pos": i + 1 if i < 2000 else None,
            }
            for i in range(2010)
        ]
        async with store.write() as conn:
            await conn.execute(journal.insert(), rows)
        async with store.read() as conn:
            sql = str(_GIVE_POS.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            plan = str((await conn.execute(text("EXPLAIN (FORMAT JSON) " + sql.replace("%%", "%")))).scalar())
        assert "ix_journal_unsequenced" in plan, plan
    finally:
        await store.close()
