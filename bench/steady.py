"""The steady state of one node: its CPU with the connections held and no message, at
a steady rate, and at saturation (issue 18, D60).

``python -m bench.steady [--visitors 1000] [--agents 100] [--window 15] [--profile idle,rate]``

One ``kefu server`` (SQLite, or ``--db postgresql://…`` in a schema of its own; the benchmarks' options), ``--agents`` agents and
``--visitors`` visitors connected from two load workers, 100 sessions open
(:data:`bench.im.CHATTING`), then three windows of ``--window`` seconds:

- ``idle``: nobody sends (what held connections, pings and housekeeping cost);
- ``rate``: the chatting visitors send 100 msg/s in all (open loop): delivery
  latency p50 / p99 / max;
- ``sat``: each chatting visitor sends, waits for the acknowledgement, sends
  again: acknowledged msg/s.

Per window: the server's CPU (% of a core), its busiest threads (user / system
%), its reads and writes (``/proc/<pid>/io``); CPU per message; lost and
duplicated messages. ``--profile`` names the windows py-spy samples (raw
collapsed stacks in ``--out``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import percentiles
from bench.im import CHATTING
from bench.kefu_server import add_agents, agent_names, kefu_load, kefu_process
from bench.load import Pool
from bench.measure import drain, loss_check
from bench.procs import profiled
from bench.storage import _pg

__all__ = ["main", "run"]

RATE = 100.0  # messages/s in all in the rate window
WORKERS = 2


def _io(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return out


def _threads(pid: int) -> dict[str, tuple[int, int]]:
    """Each thread's user and system clock ticks."""
    out: dict[str, tuple[int, int]] = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1 : st.rindex(")")]
        fields = st[st.rindex(")") + 2 :].split()
        out[f"{name}:{t}"] = (int(fields[11]), int(fields[12]))
    return out


def run(
    *, visitors: int, agents: int, window: float, profile: set[str], out: Path, db: str | None = None
) -> dict[str, Any]:
    names = agent_names(agents)
    res: dict[str, Any] = {"visitors": visitors, "agents": agents, "window_s": window}
    schema = f"steady_{secrets.token_hex(4)}" if db else None
    try:
        return _run(res, names, visitors, window, profile, out, db, schema)
    finally:
        if db:
            asyncio.run(_pg(db, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _run(
    res: dict[str, Any],
    names: tuple[str, ...],
    visitors: int,
    window: float,
    profile: set[str],
    out: Path,
    db: str | None,
    schema: str | None,
) -> dict[str, Any]:
    agents = len(names)
    tick = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="kefu-steady-") as tmp:
        wd = Path(tmp)
        add_agents(wd / "data", names, capacity=5, db_url=db, db_schema=schema)
        with kefu_process(wd, db_url=db, db_schema=schema) as srv:
            cfg = kefu_load(srv, visitors, names)
            active = min(CHATTING, visitors, agents * 5)
            with Pool(cfg, WORKERS) as pool:
                pool.call("connect_agents", timeout=300)
                pool.call("connect_visitors", timeout=300)
                pool.call("open_sessions", active=active, concurrency=2, wait_s=300, timeout=360)

                def measured(name: str, fn: Callable[[], Any]) -> None:
                    th0, s0, io0 = _threads(srv.pid), srv.sample(), _io(srv.pid)
                    if name in profile:
                        with profiled(srv.pid, out / f"steady-{name}.txt"):
                            fn()
                    else:
                        fn()
                    th1, s1, io1 = _threads(srv.pid), srv.sample(), _io(srv.pid)
                    wall = s1.at - s0.at
                    res[f"{name}_cpu_pct"] = round(s1.cpu_percent_since(s0), 1)
                    res[f"{name}_threads_user_sys_pct"] = {
                        k: (
                            round(100 * (u - th0[k][0]) / tick / wall, 1),
                            round(100 * (s - th0[k][1]) / tick / wall, 1),
                        )
                        for k, (u, s) in th1.items()
                        if k in th0 and (u + s) - sum(th0[k]) > tick * wall / 100
                    }
                    res[f"{name}_io_per_s"] = {k: round((io1[k] - io0[k]) / wall) for k in io1}

                measured("idle", lambda: time.sleep(window))
                measured(
                    "rate",
                    lambda: pool.call(
                        "rate",
                        phase="rate",
                        rate=RATE / WORKERS,
                        duration=window,
                        active=active,
                        timeout=window + 60,
                    ),
                )
                measured(
                    "sat",
                    lambda: pool.call(
                        "saturate", phase="sat", duration=window, active=active, timeout=window + 120
                    ),
                )
                drain(pool, wait_s=10.0, want=lambda c: c["agent_received"] >= c["visitor_acked"])
                reports = pool.call("report", timeout=120)
                pool.call("close", timeout=120)
    lat = [x / 1e6 for r in reports for x in r["latency_ns"].get("rate", [])]
    res["rate_latency_ms"] = {k: (round(v, 2) if v is not None else v) for k, v in percentiles(lat).items()}
    res["rate_cpu_us_per_msg"] = round(res["rate_cpu_pct"] * 1e4 / max(1.0, len(lat) / window))
    sat = sum(len(r["ack_at_ns"].get("sat", [])) for r in reports) / window
    res["sat_acked_per_s"] = round(sat)
    res["sat_cpu_us_per_msg"] = round(res["sat_cpu_pct"] * 1e4 / max(1.0, sat))
    res["loss"] = loss_check(reports)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--visitors", type=int, default=1000)
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--window", type=float, default=15.0, help="seconds of each window")
    p.add_argument("--profile", default="", help="windows py-spy samples: idle,rate,sat")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument(
        "--db", default=None, help="postgresql://… (a schema of its own, dropped after; default SQLite)"
    )
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    res = run(
        visitors=a.visitors,
        agents=a.agents,
        window=a.window,
        profile={w for w in a.profile.split(",") if w},
        out=a.out,
        db=a.db,
    )
    res["loadavg_start_end"] = [load0, os.getloadavg()]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
