"""The server's message path alone: what storing one chat message costs (issue 18, D42).

``python -m bench.msgpath [--senders 100] [--seconds 5] [--db URL]``

A real server (``ServerRunner``: store, hub, journal, routing) in this process,
``--senders`` visitors each with an open session of one of ``--agents``
agents (rows made directly), and each visitor sending in a closed loop
through the server's own ``Sessions.visitor_send`` — everything a chat
message costs on the server except its WebSocket frame and JSON decoding.
Two variants in the same run, same database, same senders:

- ``one a transaction``: the writer of group commit is closed, so every
  message takes the general path (its own transaction: the path before D42);
- ``group commit``: many senders' messages per transaction (D42), the
  journal sequenced after the batches by the sequencer's own transaction
  (the default on PostgreSQL, D52);
- ``journal in batch`` (unless ``--group-only``): group commit with the
  journal's positions given inside each batch's transaction (the default on
  SQLite, D61);
- SQLite, ``pooled writer``: the same with each write transaction on a
  connection from the pool (before D74: the writer's own connection);
- SQLite, ``commit in thread``: the default with a lone message's commit in
  the connection's thread (before D89: on the event loop);
- PostgreSQL: ``group commit`` there is D52's path with the counters read
  and written in two statements each; ``lone sequenced in`` adds a lone
  message's transaction giving the journal's positions too (D67);
  ``counters in one`` adds the counters in one ``UPDATE … RETURNING`` each
  (D68); ``lone on driver`` sends a lone message through the batch's statements
  on the driver too (D73): the defaults there. These alternate ``--rounds`` times.

Figures: stored messages/s, the process's CPU per message (user + system,
µs), messages per transaction, a message's round trip p50 / p99; each
variant's ratio to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import percentiles
from kefu.server.accounts import add_agent
from kefu.server.counters import MAILBOXES, STREAMS
from kefu.server.hub import open_mailbox, visitor_key
from kefu.server.runner import ServerRunner
from kefu.server.schema import sessions, visitors
from kefu.server.settings import Settings
from kefu.server.store import new_id
from kefu.server.visitors import Visitor

__all__ = ["measure", "run_variant"]


async def _setup(runner: ServerRunner, n_agents: int, n_senders: int) -> list[Visitor]:
    sv = runner.services
    now = sv.settings.now()
    agents = [
        await add_agent(sv.store, f"bench{i}", "pw-bench-123", now=now, scrypt_n=2**10, max_sessions=1000)
        for i in range(n_agents)
    ]
    out: list[Visitor] = []
    async with sv.store.write() as conn:
        for i in range(n_senders):
            v = Visitor(new_id(), f"bv{i}-{new_id()[:8]}")
            await conn.execute(
                insert(visitors).values(id=v.id, name=v.name, key_hash="x", created_at=now, last_seen_at=now)
            )
            await open_mailbox(conn, visitor_key(v.id))
            await conn.execute(
                insert(sessions).values(
                    id=new_id(),
                    visitor_id=v.id,
                    agent_id=agents[i % n_agents].id,
                    status="open",
                    created_at=now,
                    assigned_at=now,
                )
            )
            out.append(v)
    return out


async def run_variant(runner: ServerRunner, senders: list[Visitor], seconds: float) -> dict[str, Any]:
    """Each sender in a closed loop for ``seconds``: stored msg/s and CPU µs a message."""
    sessions_ = runner.services.sessions
    writer = sessions_.writer
    b0, w0, f0 = writer.batches, writer.written, writer.failed
    stop = time.monotonic() + seconds
    counts = [0] * len(senders)

    took: list[float] = []

    async def loop(i: int, v: Visitor) -> None:
        n = 0
        while (t := time.monotonic()) < stop:
            await sessions_.visitor_send(v, f"bench message {n} " + "x" * 60, f"{v.id[:8]}-{n}-{stop}")
            took.append(time.monotonic() - t)
            n += 1
        counts[i] = n

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop(i, v) for i, v in enumerate(senders)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    total = sum(counts)
    batches = writer.batches - b0
    return {
        "messages": total,
        "msg_per_s": total / wall,
        "cpu_us_per_msg": 1e6 * cpu / total if total else None,
        "cpu_pct": 100 * cpu / wall,
        "failed_batches": writer.failed - f0,
        "per_transaction": (writer.written - w0) / batches if batches else 1.0,
        "ms": {k: round(1e3 * v, 2) for k, v in percentiles(took).items() if k != "count" and v is not None},
    }


async def measure(
    *, senders: int, agents: int, seconds: float, db: str | None, alone: bool = True, rounds: int = 1
) -> dict[str, Any]:
    """Both variants (``alone=False``: group commit only, e.g. to profile it)."""
    with tempfile.TemporaryDirectory(prefix="kefu-msgpath-") as tmp:
        kw: dict[str, Any] = {"db_url": db, "db_schema": f"bench_{new_id()[:12]}"} if db else {}
        settings = Settings(port=0, data_dir=Path(tmp), log_level="warning", scrypt_n=2**10, **kw)
        runner = ServerRunner(settings)
        await runner.start()
        try:
            vs = await _setup(runner, agents, senders)
            await run_variant(runner, vs, min(1.0, seconds))  # warm-up (caches, pages)
            writer = runner.services.sessions.writer
            if not alone:
                return {"group_commit": await run_variant(runner, vs, seconds)}
            res: dict[str, Any] = {}
            # in the batch on SQLite (D61), after it on PostgreSQL; a lone message's on PostgreSQL (D67)
            # and the counters in one statement on PostgreSQL (D68)
            store = runner.services.store
            default = writer.sequence_in, writer.sequence_lone, MAILBOXES.returning, store.keep_writer
            variants = [
                ("group_commit", False, False, True, True),
                ("journal_in_batch", True, False, True, True),
                # SQLite's writer from the pool, as before D74
                ("pooled_writer", True, False, True, False),
                # a lone message's commit in the connection's thread, as before D89
                ("commit_in_thread", True, False, True, True),
            ]
            if db:
                variants = [
                    ("group_commit", False, False, False, True),
                    ("lone_sequenced_in", False, True, False, True),
                    ("counters_in_one", False, True, True, True),
                    ("lone_on_driver", False, True, True, True),
                    ("lone_on_driver_seq_after", False, False, True, True),
                ]
            lone_batch = writer.lone_batch
            for r in range(1, rounds + 1):
                tag = f" {r}" if rounds > 1 else ""
                for name, in_batch, lone, returning, keep in variants:
                    # PostgreSQL: a lone message the general way in D67's and D68's variants
                    writer.lone_batch = name.startswith("lone_on_driver")
                    writer.commit_lone_here = name != "commit_in_thread"
                    writer.sequence_in, writer.sequence_lone = in_batch, lone
                    MAILBOXES.returning = STREAMS.returning = returning
                    store.keep_writer = keep
                    res[f"{name}{tag}"] = await run_variant(runner, vs, seconds)
            writer.sequence_in, writer.sequence_lone, MAILBOXES.returning, store.keep_writer = default
            writer.lone_batch = lone_batch
            writer.commit_lone_here = True
            STREAMS.returning = MAILBOXES.returning
            await writer.close()  # from now on every message goes alone (the path before D42)
            single = await run_variant(runner, vs, seconds)
        finally:
            await runner.stop()
            if db:
                from bench.storage import _pg

                await _pg(db, f'DROP SCHEMA IF EXISTS "{kw["db_schema"]}" CASCADE')
    return {"one_a_transaction": single, **res}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--senders", type=int, default=100)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--db", default=None, help="postgresql://… (default: SQLite in a temporary folder)")
    p.add_argument("--group-only", action="store_true", help="the group commit variant only")
    p.add_argument(
        "--rounds", type=int, default=1, help="rounds of journal after / group commit, alternating"
    )
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    a = p.parse_args(argv)
    coro = measure(
        senders=a.senders,
        agents=a.agents,
        seconds=a.seconds,
        db=a.db,
        alone=not a.group_only,
        rounds=a.rounds,
    )
    if a.loop == "uvloop":
        import uvloop

        res = uvloop.run(coro)
    else:
        res = asyncio.run(coro)
    base = (res.get("one_a_transaction") or next(iter(res.values())))["msg_per_s"]
    print(f"load average {os.getloadavg()}, {a.senders} senders, {a.seconds:g} s, db {a.db or 'sqlite'}")
    for name, r in res.items():
        print(
            f"{name:>18}: {r['msg_per_s']:8.0f} msg/s ({r['msg_per_s'] / base:.2f}×), "
            f"{r['cpu_us_per_msg']:6.0f} µs CPU/msg, {r['per_transaction']:5.1f} msg/transaction, "
            f"CPU {r['cpu_pct']:.0f} %, {r['failed_batches']} batches failed, "
            f"p50 / p99 {r['ms'].get('p50')} / {r['ms'].get('p99')} ms"
        )
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
