"""Scenario 5, plugin overhead: SDK → plugin → server against a client on the server directly.

The request is ``getState``: the plugin forwards it to the server unchanged
(``FORWARDED_MARKS``), the server reads the agent's state and answers, the
plugin maps the answer back to the SDK's id. Three paths, each with its own
client per agent, against the same ``kefu server`` process (agents as in
:mod:`bench.agents_rig`):

- **sdk**: a real ``IMClient`` → a real plugin (``--no-media``) → server;
  timed from the API call to its ``callback(state, payload)``;
- **plugin**: a raw WebSocket client of the same plugin (paired with its
  token; the plugin runs with ``--allow-many`` so it may sit beside the
  SDK) → server: the plugin's own cost without the SDK's;
- **direct** (the baseline column): an SDK-like raw client on the server's
  ``/ws/agent`` (another agent account: ``POST /api/login``, ``auth``)
  sending the same ``getState``.

Phases, after a short warm-up that is not counted:

1. **open loop**: ``rate`` requests/s over all agents, evenly spaced, the
   three paths **interleaved** (request *j* of agent *k* goes by path
   ``(j + k) mod 3``), so each path is measured under the same server load
   and the same noise of a shared machine: round trip p50 / p99 / max;
2. **closed loop**, each path alone in turn (every client sends its next
   request when the last is answered): requests/s, and the CPU of the
   server and of the client side (plugins and SDKs run on the same two
   cores as the server).

The ratio column is path ÷ direct: the overhead. The plugin's flood guard
(100 messages / 10 s per SDK connection) is lifted, as the server's is
(``--rate-limit-messages``): what is measured is the path, not the guard.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agents_rig import RigConfig, RigPool, latency_ms, merge
from bench.common import Result, Row, machine_busy_pct, percentiles, proc_sample, system_cpu
from bench.kefu_server import AGENT_PASSWORD, add_agents, agent_names, kefu_process, ws_of

__all__ = ["PATHS", "measure", "run"]

PATHS = ("direct", "plugin", "sdk")
LABELS = {"sdk": "IMClient → plugin → server", "plugin": "raw client → plugin → server", "direct": "direct"}
MARK = "getState"
AGENTS = 100
RATE = 100.0  # requests/s over all agents in the open loop


def _phase(
    pool: RigPool, srv: Any, paths: list[str], *, rate: float | None, duration: float
) -> dict[str, Any]:
    s0, l0, m0 = srv.sample(), [proc_sample(p) for p in pool.pids], system_cpu()
    start_ns = time.monotonic_ns() + 300_000_000
    m = merge(
        pool.call(
            "requests",
            timeout=duration + 120,
            paths=paths,
            mark=MARK,
            start_ns=start_ns,
            duration=duration,
            rate=rate,
        )
    )
    s1, l1, m1 = srv.sample(), [proc_sample(p) for p in pool.pids], system_cpu()
    span = (m["end_ns"] - m["start_ns"]) / 1e9
    out: dict[str, Any] = {
        "errors": m["errors"],
        "server_cpu_pct": s1.cpu_percent_since(s0),
        "load_cpu_pct": sum(b.cpu_percent_since(a) for a, b in zip(l0, l1, strict=True)),
        "machine_busy_pct": machine_busy_pct(m0, m1),
    }
    for path in paths:
        recs = [r for r in m["records"] if r["path"] == path]
        out[path] = {
            "requests": len(recs),
            "per_s": len(recs) / span if span > 0 else None,
            "rtt_ms": percentiles(latency_ms(recs, "rtt_ns")),
            "errors": {c: n for c, n in m["errors"].items() if c.startswith(f"{path}:")},
        }
    return out


def measure(
    workdir: Path, *, agents: int, workers: int, rate: float, duration: float, closed: float, warmup: float
) -> dict[str, Any]:
    names = agent_names(agents)
    direct = tuple(f"bench-direct-{k}" for k in range(agents))
    add_agents(workdir / "data", names + direct, capacity=5)
    out: dict[str, Any] = {"agents": agents, "rate": rate, "open_s": duration, "closed_s": closed}
    with kefu_process(workdir) as srv:
        cfg = RigConfig(
            target="kefu",
            http_url=srv.url,
            ws_url=ws_of(srv.url),
            pairs=agents,
            agent_names=names,
            direct_names=direct,
            password=AGENT_PASSWORD,
            workdir=str(workdir),
            visitors=False,
            raw_plugin_client=True,
        )
        with RigPool(cfg, workers) as pool:
            setup = pool.call("setup", timeout=300)
            out["ready"] = sum(r["pairs"] - r["failed"] for r in setup)
            out["setup_s"] = max(r["s"] for r in setup)
            out["setup_errors"] = [e for r in setup for e in r["errors"]][:5]
            out["warmup"] = _phase(pool, srv, list(PATHS), rate=rate, duration=warmup)  # not shown
            out["open"] = _phase(pool, srv, list(PATHS), rate=rate, duration=duration)
            out["closed"] = {path: _phase(pool, srv, [path], rate=None, duration=closed) for path in PATHS}
            pool.call("close", timeout=120)
        out["server_log_tail"] = srv.tail(1500)
    return out


def _errors(errs: dict[str, int]) -> str:
    return ", ".join(f"{c}×{n}" for c, n in errs.items()) if errs else "0"


def _open_rows(k: dict[str, Any]) -> list[Row]:
    o = k["open"]
    d = o["direct"]["rtt_ms"]
    rows: list[Row] = []
    for path in ("sdk", "plugin"):
        x = o[path]["rtt_ms"]
        rows += [
            Row(f"{LABELS[path]}: round trip p50", x["p50"], "ms", d["p50"]),
            Row(f"{LABELS[path]}: round trip p99", x["p99"], "ms", d["p99"]),
            Row(f"{LABELS[path]}: round trip max", x["max"], "ms", d["max"]),
        ]
        if x["p50"] is not None and d["p50"] is not None:
            rows.append(Row(f"{LABELS[path]}: added to the p50", x["p50"] - d["p50"], "ms"))
    rows += [
        Row("requests answered (sdk / plugin / direct)", " / ".join(f"{o[p]['requests']:,}" for p in PATHS)),
        Row("server CPU (the three paths together)", o["server_cpu_pct"], "%"),
        Row("client side CPU: plugins, SDKs, clients", o["load_cpu_pct"], "%"),
        Row("error answers", _errors(o["errors"])),
    ]
    return rows


def _closed_rows(k: dict[str, Any]) -> list[Row]:
    c = k["closed"]
    d = c["direct"]
    rows: list[Row] = []
    for path in ("sdk", "plugin"):
        x = c[path]
        rows += [
            Row(f"{LABELS[path]}: requests/s", x[path]["per_s"], "/s", d["direct"]["per_s"]),
            Row(
                f"{LABELS[path]}: round trip p50",
                x[path]["rtt_ms"]["p50"],
                "ms",
                d["direct"]["rtt_ms"]["p50"],
            ),
            Row(
                f"{LABELS[path]}: round trip p99",
                x[path]["rtt_ms"]["p99"],
                "ms",
                d["direct"]["rtt_ms"]["p99"],
            ),
            Row(f"{LABELS[path]}: server CPU", x["server_cpu_pct"], "%", d["server_cpu_pct"]),
            Row(f"{LABELS[path]}: client side CPU", x["load_cpu_pct"], "%", d["load_cpu_pct"]),
        ]
    rows.append(Row("error answers", _errors({e: n for p in PATHS for e, n in c[p]["errors"].items()})))
    return rows


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("plugin", "plugin overhead: SDK → plugin → server against a direct client", quick=quick)
    res.value_label = "via the plugin"
    n = agents or (6 if quick else AGENTS)
    w = workers or 2
    rate = 30.0 if quick else RATE
    duration, closed, warmup = (2.0, 1.0, 0.5) if quick else (15.0, 5.0, 2.0)
    res.params = {
        "agents": n,
        "workers": w,
        "request": MARK,
        "rate": rate,
        "open_s": duration,
        "closed_s": closed,
        "warmup_s": warmup,
    }
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        k = measure(
            Path(tmp), agents=n, workers=w, rate=rate, duration=duration, closed=closed, warmup=warmup
        )
    res.raw = k
    if k["setup_errors"] or k["ready"] < n:
        res.notes.append(f"{k['ready']} of {n} agents set up: {k['setup_errors']}")
    res.add(Row("agents ready (plugin + IMClient + raw + direct)", k["ready"], f"of {n}"))
    res.add(
        Row(f"— open loop: {rate:g} {MARK}/s over {n} agents, the three paths interleaved, {duration:g} s")
    )
    res.add(*_open_rows(k))
    res.add(Row(f"— closed loop: {n} clients, each path alone for {closed:g} s"))
    res.add(*_closed_rows(k))
    res.notes.append(
        f"baseline column: an SDK-like raw client on the server's /ws/agent sending the same {MARK}; "
        "ratio = via the plugin ÷ direct"
    )
    return res
