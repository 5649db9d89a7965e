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
import time
from pathlib import Path
from typing import Any

from bench.common import Result, Row, percentiles
from bench.load import LoadConfig, Pool
from bench.measure import Load, measure
from bench.procs import baseline_process

__all__ = ["baseline_rows", "measure_baseline", "measure_broadcast", "run"]


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


def measure_broadcast(
    n: int, workdir: Path, *, duration: float, workers: int, msg_size: int = 100
) -> dict[str, Any]:
    """N clients on ``/broadcast``; one publishes; each message reaches all N.

    The rate is chosen for about 20,000 deliveries/s (what the load generator can read),
    so the figure is the fan-out latency at that load, not a maximum."""
    rate = max(1.0, 20_000 / n)
    with baseline_process(workdir / "broadcast.log") as srv:
        cfg = LoadConfig(target="broadcast", base_url=srv.url, visitors=n, msg_size=msg_size)
        with Pool(cfg, workers) as pool:
            vis = pool.call("connect_visitors", timeout=600)
            s0 = srv.sample()
            start_ns = time.monotonic_ns()
            sent = sum(x["sent"] for x in pool.call("broadcast", phase="bc", rate=rate, duration=duration))
            s1 = srv.sample()
            time.sleep(0.5)  # the last fan-out is on its way: bounded, then counted
            reports = pool.call("report", timeout=120)
            pool.call("close", timeout=120)
    lat = [x / 1e6 for r in reports for x in r["latency_ns"].get("bc", [])]
    end = start_ns + int(duration * 1e9)
    in_window = sum(1 for r in reports for t in r["recv_at_ns"].get("bc", []) if t <= end)
    return {
        "clients": sum(v["visitors"] - v["failed"] for v in vis),
        "rate": rate,
        "sent": sent,
        "delivered": len(lat),
        "expected": sent * n,
        "deliveries_per_s": in_window / duration,
        "latency_ms": percentiles(lat),
        "server_cpu_pct": s1.cpu_percent_since(s0),
    }


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
        bc = measure_broadcast(load.visitors, Path(tmp), duration=load.duration, workers=load.workers)
    res.raw = {**b, "broadcast": bc}
    res.notes += b["notes"][:10]
    res.add(*baseline_rows(b))
    lat = bc["latency_ms"]
    res.add(
        Row(f"— broadcast: 1 publisher, {bc['clients']:,} clients, {bc['rate']:g} msg/s"),
        Row("deliveries per second", bc["deliveries_per_s"], "msg/s"),
        Row("delivered / expected", f"{bc['delivered']:,} / {bc['expected']:,}"),
        Row("fan-out latency p50", lat["p50"], "ms"),
        Row("fan-out latency p99", lat["p99"], "ms"),
        Row("server CPU", bc["server_cpu_pct"], "%"),
    )
    return res
