"""Scenario 7, storage: the same IM load on SQLite and on PostgreSQL.

The load of :mod:`bench.im` at one size (1,000 visitors, 100 agents; quick:
100 and 5), once with the default SQLite file and once with
``--db postgresql://…`` in a schema of its own (dropped afterwards). The
baseline of the same run is measured once and serves both.

PostgreSQL comes from ``$KEFU_BENCH_POSTGRES_URL``, else
``$KEFU_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/kefu_test``;
when it does not answer, the PostgreSQL half says so instead of a figure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from bench.baseline import measure_baseline
from bench.common import Result, Row
from bench.im import im_rows, load_of, measure_kefu

__all__ = ["postgres_url", "run"]

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/kefu_test"


def postgres_url() -> str:
    return os.environ.get("KEFU_BENCH_POSTGRES_URL") or os.environ.get("KEFU_TEST_POSTGRES_URL") or DEFAULT_PG


async def _pg(url: str, sql: str) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_reachable(url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        asyncio.run(_pg(url, "SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _compare(sq: dict[str, Any], pg: dict[str, Any]) -> list[Row]:
    def p(d: dict[str, Any], key: str, q: str) -> float | None:
        v = d.get(key)
        return v.get(q) if isinstance(v, dict) else None

    pairs = [
        ("visitors connected per second", sq["visitors_per_s_connect"], pg["visitors_per_s_connect"], "/s"),
        ("messages/s, closed loop", sq["sat_acked_per_s"], pg["sat_acked_per_s"], "msg/s"),
        ("latency p50", p(sq, "rate_latency_ms", "p50"), p(pg, "rate_latency_ms", "p50"), "ms"),
        ("latency p99", p(sq, "rate_latency_ms", "p99"), p(pg, "rate_latency_ms", "p99"), "ms"),
        ("server CPU at saturation", sq["sat_server_cpu_pct"], pg["sat_server_cpu_pct"], "%"),
    ]
    return [Row(f"PostgreSQL: {name}", b, unit, a) for name, a, b, unit in pairs]


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("storage", "the same IM load on SQLite and on PostgreSQL", quick=quick)
    n = visitors or (100 if quick else 1000)
    m = agents or (5 if quick else 100)
    load = load_of(n, m, quick=quick, workers=workers)
    active = load.active
    url = postgres_url()
    res.params = {**load.__dict__, "postgres": url.split("@")[-1]}
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        root = Path(tmp)
        b = measure_baseline(load, root / "baseline")
        sq = measure_kefu(load, root / "sqlite")
        res.raw = {"baseline": b, "sqlite": sq}
        res.add(Row(f"— SQLite (the default): {n:,} visitors, {m} agents, {active:,} chatting"))
        res.add(*im_rows(sq, b, load, goals=False))
        why = _pg_reachable(url)
        if why is not None:
            res.add(Row("— PostgreSQL"), Row("PostgreSQL not reachable", why[:120]))
            res.notes.append(f"start PostgreSQL or set KEFU_BENCH_POSTGRES_URL (tried {url.split('@')[-1]})")
            return res
        schema = f"bench_{secrets.token_hex(4)}"
        try:
            pg = measure_kefu(load, root / "postgres", db_url=url, db_schema=schema)
        finally:
            asyncio.run(_pg(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        res.raw["postgres"] = pg
        res.add(Row(f"— PostgreSQL: the same load ({url.split('@')[-1]})"))
        res.add(*im_rows(pg, b, load, goals=False))
        res.add(Row("— PostgreSQL against SQLite (baseline column: SQLite)"))
        res.add(*_compare(sq, pg))
    return res
