"""The batch's statements on the driver (kefu.server.driversql, D73) and SQLite's own writer
connection (kefu.server.store, D74), on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from kefu.server.driversql import DriverSQL, driver_sql
from kefu.server.groupcommit import STORE_MESSAGE
from kefu.server.hub import agent_key
from kefu.server.schema import journal, messages, webhook_deliveries, webhooks
from kefu.server.store import new_id
from kefu.server.visitors import Visitor as ServerVisitor
from tests.conftest import ServerHandle
from tests.server.test_groupcommit import _open_sessions, _seqs


async def test_rows_written_on_the_driver_read_back_through_sqlalchemy(server: ServerHandle) -> None:
    """Times and JSON go through SQLAlchemy's own processors: what the driver path stores,
    SQLAlchemy reads back the same (and the other way round)."""
    _, _, _, sids = await _open_sessions(server, 1)
    store = server.services.store
    at = datetime(2026, 12, 6, 11, 30, 15, 123456, tzinfo=UTC)
    mid = new_id()
    async with store.write() as conn:
        db = await driver_sql(conn)
        assert isinstance(db, DriverSQL) and db.postgresql is not store.is_sqlite
        row = {"id": mid, "sid": sids[0], "sender": "agent", "k": "a:0", "text": "é ✓", "c": "cx", "t": at}
        await db.many(STORE_MESSAGE, [row])
        got = await db.rows(select(messages.c.text, messages.c.created_at).where(messages.c.id == mid))
    assert got[0].text == "é ✓"
    assert got[0].created_at.replace(tzinfo=UTC) == at
    async with store.read() as conn:
        back = (await conn.execute(select(messages.c.created_at).where(messages.c.id == mid))).scalar_one()
    assert back.replace(tzinfo=UTC) == at


async def test_driver_statements_roll_back_with_their_transaction(server: ServerHandle) -> None:
    """They run in SQLAlchemy's transaction (PostgreSQL: begun first if it was not): an error
    in the block rolls them back, and the connection works on."""
    _, _, _, sids = await _open_sessions(server, 1)
    store = server.services.store
    now = server.services.settings.now()
    mid = new_id()
    row = {"id": mid, "sid": sids[0], "sender": "agent", "k": "a:0", "text": "gone", "c": None, "t": now}
    with pytest.raises(RuntimeError):
        async with store.write() as conn:
            await (await driver_sql(conn)).many(STORE_MESSAGE, [row])  # the first statement
            raise RuntimeError("after the insert")
    async with store.read() as conn:
        assert (await conn.execute(select(messages.c.id).where(messages.c.id == mid))).first() is None
    async with store.write() as conn:
        await (await driver_sql(conn)).many(STORE_MESSAGE, [row])
    async with store.read() as conn:
        assert (await conn.execute(select(messages.c.id).where(messages.c.id == mid))).first() is not None


async def test_a_batch_fans_its_events_out_to_the_webhooks(server: ServerHandle) -> None:
    """The journal's step inside the batch (SQLite, D61; a lone message on PostgreSQL, D67)
    on the driver: each event its position, each wanting webhook a delivery at it."""
    _, _, visitors, _ = await _open_sessions(server, 3)
    sv = server.services
    now = sv.settings.now()
    hook = new_id()
    async with sv.store.write() as conn:
        await conn.execute(
            insert(webhooks).values(
                id=hook,
                url="http://127.0.0.1:9/",
                events=["message.created"],
                secret="s",
                created_at=now,
                created_by="t",
            )
        )
    await sv.journal.sequence()
    await sv.journal.close()  # no sequencer loop: the batches give the positions
    sv.sessions.writer.sequence_in = True
    for v in visitors:  # one at a time: batches of one (on PostgreSQL too, D73)
        await sv.sessions.visitor_send(v, "hooked", None)
    async with sv.store.read() as conn:
        events = (
            await conn.execute(
                select(journal.c.num, journal.c.pos, journal.c.data).where(
                    journal.c.type == "message.created"
                )
            )
        ).all()
        given = (
            await conn.execute(
                select(webhook_deliveries.c.event_num, webhook_deliveries.c.pos).where(
                    webhook_deliveries.c.webhook_id == hook
                )
            )
        ).all()
    mine = {e.num: e.pos for e in events if e.data.get("text") == "hooked"}
    assert len(mine) == 3 and all(p is not None for p in mine.values())
    assert {g.event_num: g.pos for g in given if g.event_num in mine} == mine


async def test_a_failing_batch_fails_only_its_bad_message_on_both(server: ServerHandle) -> None:
    """A real error from the database in a batch on the driver (a trigger refusing one
    message): the batch is sent alone, the bad message fails, the others are stored."""
    acc, agent, visitors, _ = await _open_sessions(server, 4)
    async with server.services.store.write() as conn:
        if server.services.store.is_sqlite:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages WHEN NEW.text = 'boom' "
                    "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.text = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages FOR EACH ROW "
                    "EXECUTE FUNCTION refuse_boom()"
                )
            )
    writer = server.services.sessions.writer
    failed = writer.failed
    texts = ["ok0", "boom", "ok2", "ok3"]
    results = await asyncio.gather(
        *(
            server.services.sessions.visitor_send(v, t, f"k{i}")
            for i, (v, t) in enumerate(zip(visitors, texts, strict=True))
        ),
        return_exceptions=True,
    )
    assert writer.failed > failed  # the batch failed on the driver, then each went alone
    assert isinstance(results[1], Exception)
    assert [r["text"] for i, r in enumerate(results) if i != 1] == ["ok0", "ok2", "ok3"]
    got = sorted([(await agent.next_event("message"))["payload"]["text"] for _ in range(3)])
    assert got == ["ok0", "ok2", "ok3"]
    seqs = await _seqs(server, agent_key(acc.id))  # no seq was taken by the failed batch
    assert seqs == list(range(1, len(seqs) + 1))


async def test_repeats_across_batches_on_the_driver(server: ServerHandle) -> None:
    """A clientMsgId sent again in a later batch (a lone one, then a batch of several) is
    answered with the stored message, stored once."""
    _, _, visitors, _ = await _open_sessions(server, 2)
    sessions = server.services.sessions
    first = await sessions.visitor_send(visitors[0], "once", "dup")
    again = await asyncio.gather(
        sessions.visitor_send(visitors[0], "once", "dup"),
        sessions.visitor_send(visitors[1], "other", "dup"),  # another sender's key: stored
    )
    assert again[0]["messageId"] == first["messageId"] and again[0]["repeated"] is True
    assert again[0]["at"] == first["at"]
    assert "repeated" not in again[1]
    async with server.services.store.read() as conn:
        texts = [
            r.text
            for r in await conn.execute(select(messages.c.text).where(messages.c.client_msg_id == "dup"))
        ]
    assert sorted(texts) == ["once", "other"]


async def test_sqlite_writes_on_one_kept_connection(server: ServerHandle) -> None:
    """D74: every write transaction on SQLite is on the writer's own connection, readers on
    others; a failed transaction leaves it usable."""
    store = server.services.store
    if not store.is_sqlite:
        pytest.skip("PostgreSQL writes on the pool")

    async def raw_of_write() -> object:
        async with store.write() as conn:
            return (await conn.get_raw_connection()).driver_connection

    first = await raw_of_write()
    with pytest.raises(RuntimeError):
        async with store.write():
            raise RuntimeError("a failed transaction")
    assert await raw_of_write() is first
    async with store.read() as conn:
        assert (await conn.get_raw_connection()).driver_connection is not first
    _, _, visitors, _ = await _open_sessions(server, 1)
    await server.services.sessions.visitor_send(ServerVisitor(visitors[0].id, visitors[0].name), "x", None)
    assert await raw_of_write() is first


def test_a_time_bound_to_many_rows_is_formatted_once_and_each_new_time_again() -> None:
    """D88: a batch's rows share its ``now``: SQLite's time format runs once for them all,
    and again for any other time (an equal one too: it may be another time zone's)."""
    from sqlalchemy.dialects import sqlite

    from kefu.server.driversql import Compiled, _last_one

    seen: list[object] = []

    def fmt(v: object) -> object:
        seen.append(v)
        return None if v is None else f"<{v}>"

    once = _last_one(fmt)
    now = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    same = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    assert [once(now), once(now), once(now)] == [f"<{now}>"] * 3
    assert once(same) == f"<{same}>" and once(None) is None and once(now) == f"<{now}>"
    assert seen == [now, same, None, now]

    c = Compiled(STORE_MESSAGE, sqlite.dialect(), many=True)
    row = {"id": "m", "sid": "s", "sender": "visitor", "k": "v:1", "text": "hi", "c": None}
    t = datetime(2026, 12, 7, 4, 0, 0, 123456, tzinfo=UTC)
    assert [c.bind({**row, "t": t})[-1] for _ in range(2)] == ["2026-12-07 04:00:00.123456"] * 2
    assert (
        c.bind({**row, "t": datetime(2026, 12, 7, 4, 0, 1, tzinfo=UTC)})[-1] == "2026-12-07 04:00:01.000000"
    )
    assert c.bind({**row, "t": None})[-1] is None
