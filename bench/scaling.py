"""Scenario ``scaling`` (issue 18): how the IM load scales on 1, 2 and 3 nodes, as one table.

The load and the nodes are :mod:`bench.multinode`'s (full: 1,000 visitors,
100 agents; quick: 60 visitors, 4 agents), in a PostgreSQL database made for
the run (``kefu_bench_<hex>``, dropped after) so that nothing else's
statements are counted. One node runs twice: bare (no nginx, no Redis), then
in the setup of several (behind nginx, with the Redis bus), the baseline of
what adding nodes to a deployment gives (D90). For each run:

- **stored msg/s**: messages acknowledged per second in the closed loop (a
  message is acknowledged once it is stored), and its ratio to one node's;
  for 2 and 3 nodes also to one node behind nginx, and their p50 to its p50
  (issue 18's goals: ≥ 0.9× and ≤ 2×);
- **machine busy** at saturation (on a small machine, several nodes, PostgreSQL,
  nginx and the load share its cores: D90); ``--node-cpu 0.3`` holds every node
  to that share of a core (a cgroup, :mod:`bench.cpucap`; needs root), as a
  node on a host of its own: then the ratios say what a node adds;
- **latency p50 / p99** visitor → agent at the fixed offered rate;
- **CPU of each node** at saturation, from ``/proc/<pid>/stat`` of each node;
- **statements from idle connections**: two quiet windows of ``quiet_s``
  seconds, one once the agents are connected, one once the visitors are too,
  before anyone chats. In each, ``pg_stat_activity`` of the run's database is
  read every 20 ms; every backend whose ``query_start`` moved is a statement
  issued (a lower bound when one backend runs several between two reads).
  With the agents alone the nodes' housekeeping shows (the login check, the
  journal's poll, the sweeper), at intervals of their own, so a window holds
  a varying number of them and exactly 0 cannot be read this way. The figure
  with a goal is the second window's excess over the first, per idle visitor:
  a poll or a keep-alive statement per connection would make it ≥ 1, no cost
  per connection keeps it near 0 (< 0.1). The kinds of statement seen only
  with the visitors are listed (housekeeping missed between two reads of the
  first window shows there too). ``pg_stat_database`` is not used: a
  backend flushes its counters up to 10 s late (PostgreSQL ≥ 15).

The baseline (the echo / relay server) runs once with the same load, in the
same run, as in the other scenarios.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.baseline import measure_baseline
from bench.common import Result, Row
from bench.cpucap import cap_unavailable
from bench.im import _p, load_of
from bench.multinode import _measure, engines_ready, nginx_path, redis_url
from bench.storage import _pg, postgres_url

__all__ = ["idle_statements", "run"]

POLL_S = 0.02


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    base, _, tail = url.rpartition("/")
    query = tail.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def _watch(url: str, quiet_s: float) -> dict[str, Any]:
    import asyncpg

    conn = await asyncio.wait_for(asyncpg.connect(_dsn(url)), 5)
    try:
        seen: set[tuple[int, datetime]] = set()
        texts: list[str] = []  # one per statement seen
        start: datetime = await conn.fetchval("SELECT clock_timestamp()")
        backends = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + quiet_s
        while True:
            rows = await conn.fetch(
                "SELECT pid, query_start, left(query, 120) AS query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query_start >= $1",
                start,
            )
            for r in rows:
                if (r["pid"], r["query_start"]) not in seen:
                    seen.add((r["pid"], r["query_start"]))
                    texts.append(" ".join(r["query"].split()))  # one line, for the tables
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        return {"statements": len(seen), "window_s": quiet_s, "backends": backends, "texts": texts[:5000]}
    finally:
        await conn.close()


def idle_statements(url: str, quiet_s: float) -> dict[str, Any]:
    """Statements that other connections to ``url``'s database ran during ``quiet_s`` s
    from now (see the module's docstring); ``texts``: theirs."""
    return asyncio.run(_watch(url, quiet_s))


_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def new_kinds(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The statements of window ``after`` of no kind seen in ``before`` (nor transaction control)."""
    known = set(before.get("texts", []))
    return [
        t for t in after.get("texts", []) if t not in known and not t.lstrip().upper().startswith(_CONTROL)
    ]


def _pct(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return None if v is None else float(v)


def per_connection(housekeeping: dict[str, Any], idle: dict[str, Any], visitors: int) -> float:
    """Statements of the window with the visitors beyond the agents-only window's, per visitor."""
    more = idle.get("statements", 0) - housekeeping.get("statements", 0)
    return max(0, more) / visitors if visitors else 0.0


#: Two nodes against one node of the same setup (behind nginx, with the Redis bus): at
#: least this share of its rate (issue 18's goal, read as in D90).
RATIO_GOAL = 0.9
#: ... and a p50 at the offered rate at most this many times that node's.
P50_GOAL = 2.0


def run_keys(nodes: tuple[int, ...], fronted_one: bool) -> list[str]:
    """The runs, in order: ``"1"`` one bare node, ``"1f"`` one behind nginx with the Redis
    bus (``fronted_one``: the setup of several with one node, D90), ``"2"``, ``"3"``: nodes."""
    return [key for k in nodes for key in (f"{k}", *(["1f"] if k == 1 and fronted_one else []))]


def parse_key(key: str) -> tuple[int, bool]:
    """A run's key (:func:`run_keys`): its number of nodes, and whether one node is fronted."""
    return int(key.rstrip("f")), key.endswith("f")


def label(key: str) -> str:
    """A run's row heading."""
    n, fronted = parse_key(key)
    return f"{n} node{'s' if n > 1 else ''}" + (" behind nginx (Redis bus)" if n > 1 or fronted else "")


def rows_of(figs: dict[str, dict[str, Any]], b: dict[str, Any], rate: float, visitors: int) -> list[Row]:
    """The scaling table: one block of rows per run (``figs``' keys: see :func:`label`)."""
    e, r = b["echo"], b["relay"]
    one = figs.get("1", {}).get("sat_acked_per_s")
    fronted = figs.get("1f", {})
    rows: list[Row] = []
    for key, k in figs.items():
        idle = k.get("idle") or {}
        housekeeping = k.get("idle_agents_only") or {}
        extra = new_kinds(housekeeping, idle)
        cpu = k.get("sat_server_cpu_pct_per_process") or []
        acked = k.get("sat_acked_per_s")
        rows += [
            Row(f"— {label(key)}"),
            Row("stored msg/s, closed loop (vs echo)", acked, "msg/s", e["sat_acked_per_s"]),
            Row("ratio to one node", acked / one if one and acked is not None else None, "×"),
        ]
        if key not in ("1", "1f") and fronted:
            # adding nodes to a deployment: against one node of the same setup (D90)
            base, p50, base_p50 = (
                fronted.get("sat_acked_per_s"),
                _p(k.get("rate_latency_ms"), "p50"),
                _p(fronted.get("rate_latency_ms"), "p50"),
            )
            ratio = acked / base if base and acked is not None else None
            p50_ratio = p50 / base_p50 if p50 is not None and base_p50 else None
            two = key == "2"
            rows += [
                Row(
                    "ratio to one node behind nginx",
                    ratio,
                    "×",
                    goal=f"≥ {RATIO_GOAL:g}×" if two else "",
                    met=ratio >= RATIO_GOAL if two and ratio is not None else None,
                ),
                Row(
                    "latency p50 against one node behind nginx",
                    p50_ratio,
                    "×",
                    goal=f"≤ {P50_GOAL:g}×" if two else "",
                    met=p50_ratio <= P50_GOAL if two and p50_ratio is not None else None,
                ),
            ]
        rows += [
            Row(
                f"latency p50 at {rate:g} msg/s offered",
                _p(k.get("rate_latency_ms"), "p50"),
                "ms",
                _p(r.get("rate_latency_ms"), "p50"),
            ),
            Row(
                f"latency p99 at {rate:g} msg/s offered",
                _p(k.get("rate_latency_ms"), "p99"),
                "ms",
                _p(r.get("rate_latency_ms"), "p99"),
            ),
            Row(
                "CPU per node at saturation",
                " / ".join(f"{c:.0f}" for c in cpu) or None,
                "% of a core",
                _pct(r, "sat_server_cpu_pct"),
            ),
            Row("machine busy at saturation", k.get("sat_machine_busy_pct"), "%"),
            Row(
                f"DB statements in {idle.get('window_s', 0):g} s quiet, agents only (housekeeping)",
                housekeeping.get("statements"),
                f"({housekeeping.get('backends', '?')} backends)",
            ),
            Row(
                "… with every visitor connected too",
                idle.get("statements"),
                f"({idle.get('backends', '?')} backends)",
            ),
            Row(
                "DB statements per idle visitor connection",
                per_connection(housekeeping, idle, visitors),
                "in the window",
                goal="< 0.1 (a poll per connection: ≥ 1)",
                met=per_connection(housekeeping, idle, visitors) < 0.1 if idle and housekeeping else None,
            ),
            Row("statement kinds seen only with the visitors", "; ".join(sorted(set(extra)))[:100] or "none"),
        ]
        loss = k.get("loss") or {}
        rows.append(
            Row(
                "not delivered / duplicated",
                f"{loss.get('lost', '?')} / {loss.get('duplicated', '?')}",
                f"of {loss.get('acked', 0):,}",
                goal="0 / 0",
                met=(loss.get("lost") == 0 and loss.get("duplicated") == 0) if loss else None,
            )
        )
    return rows


def run(
    quick: bool,
    *,
    workers: int | None = None,
    visitors: int | None = None,
    agents: int | None = None,
    nodes: tuple[int, ...] = (1, 2, 3),
    quiet_s: float | None = None,
    fronted_one: bool = True,
    node_cpu: float | None = None,
) -> Result:
    res = Result("scaling", "scaling: the IM load on 1, 2 and 3 nodes, one table", quick=quick)
    n = visitors or (60 if quick else 1000)
    m = agents or (4 if quick else 100)
    quiet = quiet_s if quiet_s is not None else (2.0 if quick else 5.0)
    load = load_of(n, m, quick=quick, workers=workers)
    db, redis = postgres_url(), redis_url()
    nginx = nginx_path()
    res.params = {
        **load.__dict__,
        "nodes": list(nodes),
        "quiet_window_s": quiet,
        "postgres": db.split("@")[-1],
        "redis": redis.split("@")[-1],
        "node_cpu": node_cpu,
    }
    if not engines_ready(res, db, redis, nginx):
        return res
    if node_cpu is not None and (why := cap_unavailable(node_cpu)) is not None:
        res.status = "skipped"
        res.add(Row("a CPU budget a node (--node-cpu) is not available here", why[:120]))
        return res
    name = f"kefu_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg(db, f'CREATE DATABASE "{name}"'))
    run_db = with_database(db, name)
    watch: Callable[[], dict[str, Any]] = lambda: idle_statements(run_db, quiet)  # noqa: E731
    try:
        with tempfile.TemporaryDirectory(prefix="kefu-bench-scaling-") as tmp:
            root = Path(tmp)
            b = measure_baseline(load, root / "baseline")
            figs: dict[str, dict[str, Any]] = {}
            for key in run_keys(nodes, fronted_one):
                nodes_here, fronted = parse_key(key)
                figs[key] = _measure(
                    load,
                    root / f"n{key}",
                    nodes_here,
                    run_db,
                    redis,
                    nginx,
                    idle=watch,
                    fronted=fronted,
                    node_cpu=node_cpu,
                )
                res.notes += [f"{label(key)}: {x}" for x in figs[key]["notes"][:3]]
    finally:
        asyncio.run(_pg(db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    res.raw = {"baseline": b}
    for key, v in figs.items():
        nodes_here, fronted = parse_key(key)
        res.raw[f"nodes_{nodes_here}" + ("_fronted" if fronted else "")] = v
    budget = f", each node held to {node_cpu:g} of a core" if node_cpu is not None else ""
    res.add(
        Row(f"— {n:,} visitors, {m} agents, {load.active:,} chatting, {load.rate:g} msg/s offered{budget}")
    )
    res.add(*rows_of(figs, b, load.rate, n))
    res.notes.append(
        "stored msg/s: acknowledged (= stored) in the closed loop, baseline echo; latency: baseline relay; "
        "CPU: each node's /proc/<pid>/stat over the saturation phase; idle statements: pg_stat_activity "
        "of the run's own database read every 20 ms during the quiet window"
    )
    return res
