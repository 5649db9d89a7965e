"""Scenario 1, the baseline: a minimal ``websockets`` server (``bench.baseline_server``)
under the same load generator, message sizes and concurrency as kefu.

- **echo**: N connections, the ``active`` ones in a closed loop (send, wait
  for the echo, send again): the echo rate that issue 8 compares kefu's IM
  rate with;
- **relay**: N "visitors" and M "agents"; each message goes to an agent and
  back to its sender as the acknowledgement (kefu's path without kefu): the
  delivery latency at the same offered rate, and the closed-loop rate.

:func:`measure_baseline` is what the other scenarios call to get their
"baseline, same run" figures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import Result, Row
from bench.load import LoadConfig
from bench.measure import Load, measure
from bench.procs import baseline_process

__all__ = ["baseline_rows", "measure_baseline", "run"]


def measure_baseline(load: Load, workdir: Path) -> dict[str, Any]:
    """Echo and relay figures of the baseline server at ``load``."""
    out: dict[str, Any] = {"notes": []}
    with baseline_process(workdir / "baseline.log") as srv:
        echo_cfg = LoadConfig(
            target="echo",
            base_url=srv.url,
            visitors=load.visitors,
            msg_size=load.msg_size,
            connect_concurrency=load.connect_concurrency,
        )
        echo = measure(srv, echo_cfg, load, echo_only=True)
        out["echo"] = echo.figures
        out["notes"] += echo.notes
        relay_cfg = LoadConfig(
            target="relay",
            base_url=srv.url,
            visitors=load.visitors,
            agents=load.agents,
            msg_size=load.msg_size,
            connect_concurrency=load.connect_concurrency,
        )
        relay = measure(srv, relay_cfg, load)
        out["relay"] = relay.figures
        out["notes"] += relay.notes
    return out


def _p(d: dict[str, Any] | None, key: str) -> float | None:
    return None if d is None else d.get(key)


def baseline_rows(b: dict[str, Any]) -> list[Row]:
    e, r = b["echo"], b["relay"]
    return [
        Row("connections held", e["visitors_connected"], "", None),
        Row("memory per idle connection", e["kib_per_idle_connection"], "KiB"),
        Row("echo rate, closed loop", e["sat_acked_per_s"], "msg/s"),
        Row("echo round trip p50", _p(e["sat_ack_rtt_ms"], "p50"), "ms"),
        Row("echo round trip p99", _p(e["sat_ack_rtt_ms"], "p99"), "ms"),
        Row("server CPU at echo saturation", e["sat_server_cpu_pct"], "%"),
        Row("load generator CPU at echo saturation", e["sat_load_cpu_pct"], "%"),
        Row("relay delivered, closed loop", r["sat_delivered_per_s"], "msg/s"),
        Row(
            f"relay latency p50 at {r.get('rate_offered', 0):g} msg/s",
            _p(r.get("rate_latency_ms"), "p50"),
            "ms",
        ),
        Row(
            f"relay latency p99 at {r.get('rate_offered', 0):g} msg/s",
            _p(r.get("rate_latency_ms"), "p99"),
            "ms",
        ),
        Row("relay latency max", _p(r.get("rate_latency_ms"), "max"), "ms"),
        Row("relay lost / duplicated", f"{r['loss']['lost']} / {r['loss']['duplicated']}"),
    ]


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("baseline", "a minimal websockets echo / relay server, the reference", quick=quick)
    res.value_label = "baseline"
    load = Load(
        visitors=visitors or (200 if quick else 10_000),
        agents=agents or (10 if quick else 100),
        active=min(visitors or (200 if quick else 10_000), 50 if quick else 500),
        rate=50 if quick else 200,
        duration=1.0 if quick else 10.0,
        workers=workers or 1,
        setup_timeout=20.0 if quick else 300.0,
    )
    res.params = {**load.__dict__}
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        b = measure_baseline(load, Path(tmp))
    res.raw = b
    res.notes += b["notes"][:10]
    res.add(*baseline_rows(b))
    return res
