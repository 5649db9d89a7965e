"""Group commit (kefu.server.groupcommit, D42): many senders' messages in one transaction.

The messages are given to the server's own ``Sessions`` in one turn of the
loop (as concurrent connections do), so the batch they form is known: the
writer task starts after every sender has queued its message.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest
from sqlalchemy import select

from kefu.protocol import ApiError, ErrorCode
from kefu.server.events import EventType, emit
from kefu.server.groupcommit import GATHER
from kefu.server.hub import agent_key, visitor_key
from kefu.server.onehop import OneHopConnection
from kefu.server.schema import events, journal, messages
from kefu.server.schema import sessions as sessions_table
from kefu.server.store import ordered_ids
from kefu.server.visitors import Visitor as ServerVisitor
from tests.conftest import ServerHandle


async def _open_sessions(server: ServerHandle, n: int) -> tuple[Any, Any, list[ServerVisitor], list[str]]:
    """An agent with ``n`` open sessions; the server's views of the visitors; the session ids."""
    acc = await server.add_agent("a1", max_sessions=n)
    agent = await server.agent("a1", add=False, ready=True)
    clients = [await server.visitor(f"v{i}") for i in range(n)]
    sids = [(await c.send_message("hello"))["sessionId"] for c in clients]
    for _ in range(n):
        await agent.next_event("sessionAssigned")
    visitors = [ServerVisitor(c.visitor_id, c.name) for c in clients]
    return acc, agent, visitors, sids


async def _seqs(server: ServerHandle, recipient: str) -> list[int]:
    async with server.services.store.read() as conn:
        rows = await conn.execute(select(events.c.seq).where(events.c.recipient == recipient))
        return sorted(r.seq for r in rows)


async def test_concurrent_messages_commit_together_with_gap_free_seqs(server: ServerHandle) -> None:
    acc, agent, visitors, sids = await _open_sessions(server, 8)
    sessions = server.services.sessions
    writer = sessions.writer
    before_batches, before_written = writer.batches, writer.written
    agent_seqs_before = await _seqs(server, agent_key(acc.id))
    sends = [sessions.visitor_send(v, f"m{i}", f"c{i}") for i, v in enumerate(visitors)]
    sends += [sessions.agent_send(acc, sid, f"r{i}", f"d{i}") for i, sid in enumerate(sids)]
    replies = await asyncio.gather(*sends)
    assert writer.batches - before_batches == 1  # 16 messages, one transaction
    assert writer.written - before_written == 16
    assert [r["text"] for r in replies] == [f"m{i}" for i in range(8)] + [f"r{i}" for i in range(8)]
    assert all(r["status"] == "open" for r in replies[:8])
    # the agent's pushes: the 8 new ones follow the old ones without a gap, in the senders' order
    seqs = await _seqs(server, agent_key(acc.id))
    assert seqs == list(range(1, len(agent_seqs_before) + 9))
    got = [(await agent.next_event("message"))["payload"]["text"] for _ in range(8)]
    assert got == [f"m{i}" for i in range(8)]
    # each visitor: one push more, the next seq
    for v in visitors:
        vs = await _seqs(server, visitor_key(v.id))
        assert vs == list(range(1, len(vs) + 1))
    # stored once each, and the journal has each message's event
    async with server.services.store.read() as conn:
        stored = (await conn.execute(select(messages.c.text).where(messages.c.text.like("m%")))).all()
        recorded = (await conn.execute(select(journal.c.stream, journal.c.seq, journal.c.type))).all()
    assert sorted(r.text for r in stored) == [f"m{i}" for i in range(8)]
    by_stream: dict[str, list[int]] = {}
    for r in recorded:
        by_stream.setdefault(r.stream, []).append(r.seq)
    assert all(sorted(s) == list(range(1, len(s) + 1)) for s in by_stream.values())  # gap-free
    assert sum(r.type == "message.created" for r in recorded) == 8 + 8 + 8


async def test_repeats_errors_and_new_sessions_in_one_batch(server: ServerHandle) -> None:
    acc, _, visitors, sids = await _open_sessions(server, 3)
    other = await server.add_agent("a2")
    sessions = server.services.sessions
    stored = await sessions.visitor_send(visitors[0], "stored before", "k-old")
    newcomer_client = await server.visitor("newcomer")
    newcomer = ServerVisitor(newcomer_client.visitor_id, "newcomer")
    before = sessions.writer.batches
    results = await asyncio.gather(
        sessions.visitor_send(visitors[0], "stored before", "k-old"),  # a repeat of a stored one
        sessions.visitor_send(visitors[1], "twice", "k-new"),
        sessions.visitor_send(visitors[1], "twice", "k-new"),  # a repeat within the batch
        sessions.agent_send(other, sids[2], "not mine", None),  # forbidden: fails alone
        sessions.visitor_send(newcomer, "a new session", None),  # the queue's way
        sessions.agent_send(acc, sids[2], "fine", None),
        return_exceptions=True,
    )
    assert sessions.writer.batches == before + 1
    old, first, again, refused, queued, fine = results
    assert old["messageId"] == stored["messageId"] and old["repeated"] is True
    assert again["messageId"] == first["messageId"] and again["repeated"] is True
    assert "repeated" not in first
    assert isinstance(refused, ApiError) and refused.code == ErrorCode.forbidden
    assert queued["status"] == "queued" and queued["position"] == 1
    assert fine["text"] == "fine"
    async with server.services.store.read() as conn:
        texts = [r.text for r in await conn.execute(select(messages.c.text))]
    assert texts.count("twice") == 1 and texts.count("stored before") == 1
    assert "not mine" not in texts and "fine" in texts and "a new session" in texts


def test_ids_of_a_batch_are_distinct_hex_led_by_their_millisecond() -> None:
    """D88: 32 hex digits, the first 12 the time in ms (so a new row lands at the end of
    its unique index), the other 20 random (so ids stay unguessable)."""
    before = time.time_ns() // 1_000_000
    ids = ordered_ids(64)
    after = time.time_ns() // 1_000_000
    assert len(ids) == 64 == len(set(ids))
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert all(before <= int(i[:12], 16) <= after for i in ids)
    assert len({i[12:] for i in ids}) == 64  # the random part differs within one millisecond
    assert len(set(ordered_ids(2)) | set(ids)) == 66


async def test_a_batch_gives_positions_to_its_events_and_earlier_ones_in_its_transaction(
    server: ServerHandle,
) -> None:
    """D52: the journal is sequenced by the batch's own transaction, in commit order, an
    earlier transaction's event of the same stream first; nothing is left for the sequencer."""
    _, _, visitors, sids = await _open_sessions(server, 4)
    journal_ = server.services.journal
    await journal_.sequence()
    await journal_.close()  # no sequencer loop from here: only the batch can give positions
    server.services.sessions.writer.sequence_in = True  # D52's variant
    hub = server.services.hub
    async with hub.transaction() as tx:  # committed, not sequenced: the stream of session 0
        await emit(tx, EventType.message_created, sids[0], {"earlier": True})
    before = journal_.top
    replies = await asyncio.gather(*(server.services.sessions.visitor_send(v, "x", None) for v in visitors))
    assert len(replies) == 4
    async with server.services.store.read() as conn:
        rows = (
            await conn.execute(
                select(journal.c.stream, journal.c.seq, journal.c.pos, journal.c.data).order_by(journal.c.num)
            )
        ).all()
    assert all(r.pos is not None for r in rows)  # the batch sequenced everything, its own too
    assert sorted(r.pos for r in rows) == list(range(1, len(rows) + 1))  # no hole
    assert journal_.top == len(rows) > before  # told after the commit: waiters wake
    stream0 = sorted((r.seq, r.pos) for r in rows if r.stream.endswith(sids[0]))
    assert [p for _, p in stream0] == sorted(p for _, p in stream0)  # per stream: seq order = pos order
    earlier = next(r for r in rows if r.data == {"earlier": True})
    assert earlier.pos < max(p for _, p in stream0)


async def test_on_postgresql_the_sequencer_gives_the_batch_its_positions_after_it(
    server: ServerHandle,
) -> None:
    """D52 on PostgreSQL (the default there; D61: SQLite sequences inside the batch)."""
    _, _, visitors, _ = await _open_sessions(server, 3)
    journal_ = server.services.journal
    await journal_.sequence()
    await journal_.close()
    writer = server.services.sessions.writer
    assert writer.sequence_in is server.services.store.is_sqlite  # the defaults (D52, D61)
    writer.sequence_in = False
    await asyncio.gather(*(server.services.sessions.visitor_send(v, "y", None) for v in visitors))
    async with server.services.store.read() as conn:
        unsequenced = (await conn.execute(select(journal.c.num).where(journal.c.pos.is_(None)))).all()
    assert len(unsequenced) == 3
    await journal_.sequence()
    async with server.services.store.read() as conn:
        assert not (await conn.execute(select(journal.c.num).where(journal.c.pos.is_(None)))).all()


async def test_batches_of_one_message_keep_the_counters_gap_free(server: ServerHandle) -> None:
    """D62: on SQLite a batch whose counters all move by one takes them in one
    ``UPDATE … RETURNING``; on PostgreSQL a lone message is a batch of one too (D73), the
    general path (``MessageWriter._run``) when ``lone_batch`` is off. Either way the pushes' and the stream's numbers stay gap-free."""
    acc, agent, visitors, sids = await _open_sessions(server, 2)
    writer = server.services.sessions.writer
    before = await _seqs(server, agent_key(acc.id))
    # a batch each (D73: on PostgreSQL too, on the driver), or none (the general path, D67)
    per_message = 1 if server.services.store.is_sqlite or writer.lone_batch else 0
    for i in range(3):  # one at a time: each alone
        batches = writer.batches
        await server.services.sessions.visitor_send(visitors[i % 2], f"one{i}", None)
        assert writer.batches == batches + per_message
    assert await _seqs(server, agent_key(acc.id)) == list(range(1, len(before) + 4))
    got = [(await agent.next_event("message"))["payload"]["text"] for _ in range(3)]
    assert got == ["one0", "one1", "one2"]
    async with server.services.store.read() as conn:
        rows = (await conn.execute(select(journal.c.stream, journal.c.seq))).all()
    for sid in sids:
        seqs = sorted(r.seq for r in rows if r.stream.endswith(sid))  # the session's stream
        assert len(seqs) >= 3 and seqs == list(range(1, len(seqs) + 1))


async def test_a_lone_message_is_acknowledged_with_its_journal_position(server: ServerHandle) -> None:
    """D61 (SQLite: a batch of one) and D67 (PostgreSQL: the general path run by the writer):
    a message sent alone gives the journal's positions in its own transaction — its event and
    an earlier committed one, in commit order — with no sequencer loop running."""
    _, _, visitors, sids = await _open_sessions(server, 1)
    journal_ = server.services.journal
    await journal_.sequence()
    await journal_.close()  # no sequencer loop from here
    async with server.services.hub.transaction() as tx:  # committed, not sequenced
        await emit(tx, EventType.message_created, sids[0], {"earlier": True})
    reply = await server.services.sessions.visitor_send(visitors[0], "alone", None)
    async with server.services.store.read() as conn:
        rows = (await conn.execute(select(journal.c.pos, journal.c.data).order_by(journal.c.num))).all()
    assert all(r.pos is not None for r in rows)
    assert sorted(r.pos for r in rows) == list(range(1, len(rows) + 1))
    earlier = next(r.pos for r in rows if r.data == {"earlier": True})
    mine = next(r.pos for r in rows if r.data.get("messageId") == reply["messageId"])
    assert earlier < mine == journal_.top  # told after the commit: waiters wake


async def _turns(n: int = 5) -> None:
    """Let the loop run every ready task ``n`` times (the writers look at their queue)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_on_postgresql_a_writer_gathers_messages_while_a_batch_is_in_flight(
    server: ServerHandle,
) -> None:
    """D82: while a batch is in flight, a free writer starts the next only once ``gather``
    messages wait, or once no batch is in flight any more."""
    if server.services.store.is_sqlite:
        pytest.skip("SQLite writes one batch at a time (its one writer)")
    _, _, visitors, sids = await _open_sessions(server, 5)
    sessions = server.services.sessions
    writer = sessions.writer
    assert writer.writers > 1 and writer.gather == GATHER  # the default (Settings.db_gather)
    writer.gather = 3
    batches = writer.batches
    async with server.services.store.write() as conn:
        # hold visitor 0's session: its batch stays in flight, waiting for the row lock
        await conn.execute(
            select(sessions_table.c.id).where(sessions_table.c.id == sids[0]).with_for_update()
        )
        first = asyncio.create_task(sessions.visitor_send(visitors[0], "held", None))
        await _turns()
        assert writer.in_flight == 1 and writer.waiting == 0  # its batch waits for the row
        two = [asyncio.create_task(sessions.visitor_send(v, "gathered", None)) for v in visitors[1:3]]
        await _turns()  # every writer had its turn to look: both still wait
        assert writer.waiting == 2 and not any(t.done() for t in two)
        third = asyncio.create_task(sessions.visitor_send(visitors[3], "gathered", None))
        replies = await asyncio.gather(*two, third)  # 3 wait: a batch starts beside the held one
        assert [r["text"] for r in replies] == ["gathered"] * 3
        assert writer.batches == batches + 1 and not first.done()
        alone = asyncio.create_task(sessions.visitor_send(visitors[4], "after", None))
        await _turns()
        assert writer.waiting == 1  # fewer than 3, and a batch in flight: it waits
    # the held batch commits; the waiting message goes next, with no other to gather
    assert (await first)["text"] == "held"
    assert (await alone)["text"] == "after"
    assert writer.batches == batches + 3 and writer.waiting == 0


async def test_the_counters_of_a_batch_move_in_one_statement(server: ServerHandle) -> None:
    """D86: a batch's journal streams and mailboxes move together — on PostgreSQL in one
    statement (they were two round trips); each counter from its value before, the ones not
    there yet started at their counts; SQLite takes each table alone, with the same values."""
    from kefu.server.counters import MAILBOXES, STREAMS, take_all
    from kefu.server.driversql import driver_sql

    async def take(parts: list[tuple[Any, dict[str, int]]]) -> tuple[list[dict[str, int]], int]:
        async with server.services.store.write() as conn:
            db = await driver_sql(conn)
            calls: list[str] = []
            fetch = db._fetch

            async def counted(sql: str, args: tuple[Any, ...]) -> list[Any]:
                calls.append(sql)
                return await fetch(sql, args)

            db._fetch = counted  # type: ignore[method-assign]
            try:
                return await take_all(db, parts), len(calls)
            finally:
                del db._fetch

    streams, boxes = {"session:d86a": 2, "session:d86b": 1}, {"agent:d86": 3}
    fresh, _ = await take([(STREAMS, streams), (MAILBOXES, boxes)])
    assert fresh == [{"session:d86a": 0, "session:d86b": 0}, {"agent:d86": 0}]
    moved, statements = await take([(STREAMS, {"session:d86a": 1, "session:d86b": 4}), (MAILBOXES, boxes)])
    assert moved == [{"session:d86a": 2, "session:d86b": 1}, {"agent:d86": 3}]
    if server.services.store.is_sqlite:
        assert statements >= 2  # a table at a time
    else:
        assert statements == 1
    alone, _ = await take([(STREAMS, {"session:d86a": 1}), (MAILBOXES, {})])
    assert alone == [{"session:d86a": 3}, {}]
    last, _ = await take([(STREAMS, {"session:d86a": 1, "session:d86b": 1}), (MAILBOXES, boxes)])
    assert last == [{"session:d86a": 4, "session:d86b": 5}, {"agent:d86": 6}]


async def test_on_sqlite_a_quiet_nodes_lone_message_commits_on_the_loop(
    server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D89: a batch of one message with nothing queued behind it commits on the event loop
    (the writer's connection thread is not used); a batch with messages waiting behind it
    commits in the thread, so the loop prepares the next batch meanwhile. Either way the
    message is stored when it is acknowledged: a new connection reads it."""
    if not server.services.store.is_sqlite:
        pytest.skip("PostgreSQL commits through asyncpg: no thread to skip")
    _, _, visitors, _ = await _open_sessions(server, 2)
    sessions = server.services.sessions
    writer = sessions.writer
    in_thread: list[str] = []  # what the batches' transactions handed to the connection's thread
    real = OneHopConnection._execute

    async def spy(self: OneHopConnection, fn: Any, *args: Any, **kw: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("kefu-group-commit"):  # not other writes
            in_thread.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kw)

    monkeypatch.setattr(OneHopConnection, "_execute", spy)
    driver = (await server.services.store._writer.get_raw_connection()).driver_connection  # type: ignore[union-attr]
    assert isinstance(driver, OneHopConnection) and 0 < driver.commit_s  # the set-up's commits, timed
    monkeypatch.setattr(driver, "commit_s", 0.0)  # a fast disk (this one's may not be)
    monkeypatch.setattr(driver, "commit_here_max", 0.05)
    reply = await sessions.visitor_send(visitors[0], "quiet", None)
    assert "commit" not in in_thread
    db = server.services.settings.data_dir / "kefu.db"
    with sqlite3.connect(db) as other:
        stored = other.execute("SELECT text FROM messages WHERE id = ?", (reply["messageId"],)).fetchall()
    assert stored == [("quiet",)]
    # one message a batch, two sent at once: the first commits with the second queued
    monkeypatch.setattr(writer, "max_batch", 1)
    batches = writer.batches
    replies = await asyncio.gather(
        sessions.visitor_send(visitors[0], "busy", None), sessions.visitor_send(visitors[1], "next", None)
    )
    assert writer.batches == batches + 2
    assert in_thread.count("commit") == 1  # the first; the second had nothing behind it
    assert [r["text"] for r in replies] == ["busy", "next"]
    # a slow disk: while the writer's commits take longer than commit_here_max on average,
    # they stay in the thread (the loop is not stalled by each fsync)
    monkeypatch.setattr(driver, "commit_s", 1.0)
    await sessions.visitor_send(visitors[0], "slow disk", None)
    assert in_thread.count("commit") == 2
    assert driver.commit_s < 1.0  # this faster commit pulled the average down
    # switched off (the benchmark's comparison): every commit in the thread
    monkeypatch.setattr(driver, "commit_s", 0.0)
    monkeypatch.setattr(writer, "commit_lone_here", False)
    await sessions.visitor_send(visitors[1], "threaded", None)
    assert in_thread.count("commit") == 3
