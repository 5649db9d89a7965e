"""Scenario 5, plugin overhead: SDK → plugin → server against a client on the server directly.

The request is ``getState``: the plugin forwards it to the server unchanged
(``FORWARDED_MARKS``), the server reads the agent's state and answers, the
plugin maps the answer back to the SDK's id. Three paths, each with its own
client per agent, measured one after the other against the same
``kefu server`` process (agents as in :mod:`bench.agents_rig`):

- **sdk**: a real ``IMClient`` → a real plugin (``--no-media``) → server;
  timed from the API call to its ``callback(state, payload)``;
- **plugin**: a raw WebSocket client of the same plugin (paired with its
  token; the plugin runs with ``--allow-many`` so it may sit beside the
  SDK) → server: the plugin's own cost without the SDK's;
- **direct** (the baseline column): an SDK-like raw client on the server's
  ``/ws/agent`` (another agent account: ``POST /api/login``, ``auth``)
  sending the same ``getState``.

Phases: an open loop at a set rate over all agents (latency: p50 / p99 /
max), then a closed loop (each client sends its next request when the last
is answered: requests/s). The ratio column is path ÷ direct: the overhead.
The plugin's flood guard (100 messages / 10 s per SDK connection) is lifted,
as the server's is (``--rate-limit-messages``): what is measured is the path.
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
MARK = "getState"
AGENTS = 100
RATE = 100.0  # requests/s over all agents in the open loop


def measure(
    workdir: Path, *, agents: int, workers: int, rate: float, duration: float, closed: float
) -> dict[str, Any]:
    names = agent_names(agents)
    direct = tuple(f"bench-direct-{k}" for k in range(agents))
    add_agents(workdir / "data", names + direct, capacity=5)
    out: dict[str, Any] = {"agents": agents, "rate": rate, "duration_s": duration, "closed_s": closed}
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
            for loop, r, d in (("open", rate, duration), ("closed", None, closed)):
                for path in PATHS:
                    s0, l0, m0 = srv.sample(), [proc_sample(p) for p in pool.pids], system_cpu()
                    start_ns = time.monotonic_ns() + 300_000_000
                    m = merge(
                        pool.call(
                            "requests",
                            timeout=d + 120,
                            path=path,
                            mark=MARK,
                            start_ns=start_ns,
                            duration=d,
                            rate=r,
                        )
                    )
                    s1, l1, m1 = srv.sample(), [proc_sample(p) for p in pool.pids], system_cpu()
                    span = (m["end_ns"] - m["start_ns"]) / 1e9
                    out[f"{loop}_{path}"] = {
                        "requests": len(m["records"]),
                        "errors": m["errors"],
                        "per_s": len(m["records"]) / span if span > 0 else None,
                        "rtt_ms": percentiles(latency_ms(m["records"], "rtt_ns")),
                        "server_cpu_pct": s1.cpu_percent_since(s0),
                        "load_cpu_pct": sum(b.cpu_percent_since(a) for a, b in zip(l0, l1, strict=True)),
                        "machine_busy_pct": machine_busy_pct(m0, m1),
                    }
            pool.call("close", timeout=120)
        out["server_log_tail"] = srv.tail(1500)
    return out


def _rows(k: dict[str, Any], loop: str) -> list[Row]:
    d = k[f"{loop}_direct"]
    rows: list[Row] = []
    for path, label in (("sdk", "IMClient → plugin → server"), ("plugin", "raw client → plugin → server")):
        x = k[f"{loop}_{path}"]
        rows += [
            Row(f"{label}: round trip p50", x["rtt_ms"]["p50"], "ms", d["rtt_ms"]["p50"]),
            Row(f"{label}: round trip p99", x["rtt_ms"]["p99"], "ms", d["rtt_ms"]["p99"]),
            Row(f"{label}: round trip max", x["rtt_ms"]["max"], "ms", d["rtt_ms"]["max"]),
        ]
        if x["rtt_ms"]["p50"] is not None and d["rtt_ms"]["p50"] is not None:
            rows.append(
                Row(f"{label}: added to the p50", x["rtt_ms"]["p50"] - d["rtt_ms"]["p50"], "ms", ratio=None)
            )
        rows += [
            Row(f"{label}: requests/s", x["per_s"], "/s", d["per_s"]),
            Row(f"{label}: server CPU", x["server_cpu_pct"], "%", d["server_cpu_pct"]),
            Row(f"{label}: client side CPU (workers)", x["load_cpu_pct"], "%", d["load_cpu_pct"]),
        ]
    errs = {f"{p}: {c}": n for p in PATHS for c, n in k[f"{loop}_{p}"]["errors"].items()}
    rows.append(
        Row(
            "requests / error answers",
            f"{sum(k[f'{loop}_{p}']['requests'] for p in PATHS):,} / {sum(errs.values())}",
            ", ".join(f"{c}×{n}" for c, n in errs.items()),
        )
    )
    return rows


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("plugin", "plugin overhead: SDK → plugin → server against a direct client", quick=quick)
    res.value_label = "via the plugin"
    n = agents or (6 if quick else AGENTS)
    w = workers or 2
    rate = 30.0 if quick else RATE
    duration, closed = (2.0, 1.0) if quick else (10.0, 5.0)
    res.params = {
        "agents": n,
        "workers": w,
        "request": MARK,
        "rate": rate,
        "open_s": duration,
        "closed_s": closed,
    }
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        k = measure(Path(tmp), agents=n, workers=w, rate=rate, duration=duration, closed=closed)
    res.raw = k
    if k["setup_errors"] or k["ready"] < n:
        res.notes.append(f"{k['ready']} of {n} agents set up: {k['setup_errors']}")
    res.add(Row("agents ready (plugin + IMClient + raw + direct)", k["ready"], f"of {n}"))
    res.add(Row(f"— open loop: {rate:g} {MARK}/s over {n} agents, {duration:g} s each path"))
    res.add(*_rows(k, "open"))
    res.add(Row(f"— closed loop: {n} clients, {closed:g} s each path"))
    res.add(*_rows(k, "closed"))
    res.notes.append(
        f"baseline column: an SDK-like raw client on the server's /ws/agent sending the same {MARK}; "
        "ratio = via the plugin ÷ direct"
    )
    return res
