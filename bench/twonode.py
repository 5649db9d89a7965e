"""One node against two behind nginx, several codes in one run (issue 18, D70).

``python -m bench.twonode VARIANT[,VARIANT…] [--python NAME=PYTHON] [--options NAME="--opt v"]``

``bench.scaling``'s load (1,000 visitors, 100 agents, two load workers) on 1
node (``--fronted-one``: also 1 node behind nginx + Redis, the two nodes' setup
with one node), then on 2 nodes behind nginx + Redis, in one PostgreSQL database made for
the run, for each variant in the order given (``main,w2,main,w2``: alternating
rounds). A variant names the Python that starts its nodes (``--python
main=/work/wt-main/.venv/bin/python``: that worktree's code; default this
Python) and extra ``kefu server`` options (``--options w2="--db-writers 2"``).
Prints one JSON line per variant: stored msg/s, p50 / p99 at 100 msg/s, the
machine's busy share, lost / duplicated, and every process's CPU at saturation
per part (``bench.measure``'s ``sat_cpu_pct_by_part``) in % of a core and in
µs per stored message. ``--profile DIR``: py-spy's raw stacks of each node and
each load worker over the saturation phase, in
``DIR/<variant><round>-<n1|n1f|n2>/sat-node<i>.txt`` and ``sat-load<i>.txt``.
``--node-cpu 0.3``: every node may use 0.3 of a core (:mod:`bench.cpucap`), so
that one node against two measures what a node adds at the same budget, apart
from what the machine's cores leave it. ``--sandwich``: the one-node runs again
after the two nodes' (``n1b``, ``n1fb``), and the ratios against their mean: a
machine whose speed drifts within a round (the shared 2-core machine of
2026-12-06 moved 30 % in minutes) biases a ratio of runs made one after the
other; the mean of one node before and after cancels a steady drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench.multinode as mn
from bench.im import load_of
from bench.scaling import with_database
from bench.storage import _pg, postgres_url

__all__ = ["main"]


def figures(k: dict[str, Any]) -> dict[str, Any]:
    rate = k["sat_acked_per_s"]
    parts = k.get("sat_cpu_pct_by_part", {})
    lat = k.get("rate_latency_ms") or {}
    loss = k.get("loss") or {}
    return {
        "rate": round(rate),
        "p50": lat.get("p50"),
        "p99": lat.get("p99"),
        "busy": k.get("sat_machine_busy_pct"),
        "acked_lost_dup": [loss.get("acked"), loss.get("lost"), loss.get("duplicated")],
        "cpu_pct": {p: round(v, 1) for p, v in parts.items()},
        "us_per_msg": {p: round(v / 100 / rate * 1e6) for p, v in parts.items()} if rate else {},
    }


def _pairs(items: list[str]) -> dict[str, str]:
    return dict(i.split("=", 1) for i in items)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.twonode", description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", help="variants in the order run, comma-separated")
    ap.add_argument("--python", action="append", default=[], help="NAME=PYTHON starting that variant's nodes")
    ap.add_argument("--options", action="append", default=[], help='NAME="kefu server options"')
    ap.add_argument("--visitors", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument(
        "--node-cpu",
        type=float,
        default=None,
        help="each node may use this share of a core (a cgroup; needs root): one node against two "
        "at the same budget a node",
    )
    ap.add_argument(
        "--fronted-one",
        action="store_true",
        help="also one node behind nginx with Redis (two nodes' setup with one node): ratio_fronted",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="a folder for py-spy's raw stacks of every node and load worker at saturation",
    )
    ap.add_argument(
        "--sandwich",
        action="store_true",
        help="one node again after the two nodes; the ratios against the mean of before and after",
    )
    a = ap.parse_args(argv)
    pythons, options = _pairs(a.python), _pairs(a.options)
    load = load_of(a.visitors, a.agents, quick=False, workers=2)
    db, redis, nginx = postgres_url(), mn.redis_url(), mn.nginx_path()
    run_name = f"kefu_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg(db, f'CREATE DATABASE "{run_name}"'))
    run_db = with_database(db, run_name)
    rounds: dict[str, int] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="kefu-bench-twonode-") as tmp:
            for v in a.plan.split(","):
                rounds[v] = r = rounds.get(v, 0) + 1
                python, extra = pythons.get(v, sys.executable), shlex.split(options.get(v, ""))
                out: dict[str, Any] = {
                    "variant": v,
                    "round": r,
                    "node_cpu": a.node_cpu,
                    "start": time.strftime("%H:%M:%S", time.gmtime()),
                }
                load0 = os.getloadavg()[0]
                ones = [("n1", 1), *([("n1f", 1)] if a.fronted_one else [])]
                after = [(f"{k}b", n) for k, n in ones] if a.sandwich else []
                for key, n in [*ones, ("n2", 2), *after]:
                    out[key] = figures(
                        mn._measure(
                            load,
                            Path(tmp) / f"{v}{r}-{key}",
                            n,
                            run_db,
                            redis,
                            nginx,
                            python=python,
                            extra=extra,
                            profile=a.profile / f"{v}{r}-{key}" if a.profile else None,
                            node_cpu=a.node_cpu,
                            fronted=key.startswith("n1f"),
                        )
                    )
                out["load"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                for figure, one in (("ratio", "n1"), ("ratio_fronted", "n1f")):
                    rates = [out[k]["rate"] for k in (one, f"{one}b") if k in out]
                    if rates and all(rates):
                        out[figure] = round(out["n2"]["rate"] * len(rates) / sum(rates), 3)
                print(json.dumps(out), flush=True)
    finally:
        asyncio.run(_pg(db, f'DROP DATABASE IF EXISTS "{run_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
