"""Scenario 2, IM load: N visitors and M agents on one ``kefu server`` process.

For each size (issue 8: N = 1,000 / 5,000 / 10,000 visitors, M = 100 / 500
agents) the baseline runs first with the same load (:mod:`bench.baseline`),
then kefu; see :mod:`bench.measure` for the steps. Every agent takes up to
``capacity`` sessions (kefu's default: 5), so ``M × capacity`` visitors chat
and the others stay connected and idle: the connection figures are about all
N, the message figures about the chatting ones.

Figures: connections held, memory per idle connection, messages/s delivered
at a set rate and at saturation (closed loop, the figure compared with the
baseline's echo rate), delivery latency p50 / p99 / max, server CPU and RSS,
lost and duplicated messages.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.baseline import measure_baseline
from bench.common import Result, Row
from bench.kefu_server import AGENT_PASSWORD, SERVER_OPTIONS, add_agents, agent_names, kefu_process, ws_of
from bench.load import LoadConfig
from bench.measure import Load, measure
from bench.procs import profiled

__all__ = ["SIZES", "im_rows", "load_of", "measure_kefu", "measure_server", "run"]

SIZES = [(1000, 100), (5000, 100), (10_000, 100), (1000, 500), (5000, 500), (10_000, 500)]
QUICK_SIZES = [(200, 10)]
CAPACITY = 5  # kefu's default max_sessions of an agent
#: Chatting visitors in a full run. Opening a session costs the server O(agents) pushes
#: (every queue change goes to every agent), about 0.3 s per session with 100 agents on
#: this machine, so M × capacity sessions would take most of an hour at M = 500.
CHATTING = 100
RATE_PER_CHATTING = 1.0  # messages/s from each chatting visitor in the rate phase


def measure_kefu(
    load: Load,
    workdir: Path,
    *,
    db_url: str | None = None,
    db_schema: str | None = None,
    capacity: int = CAPACITY,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The load against one ``kefu server``; with ``profile``, py-spy samples the server
    throughout and writes a flame graph (SVG) there."""
    names = agent_names(load.agents)
    add_agents(workdir / "data", names, capacity=capacity, db_url=db_url, db_schema=db_schema)
    with kefu_process(workdir, db_url=db_url, db_schema=db_schema) as srv:
        if profile is None:
            return measure_server(srv, load, names)
        with profiled(srv.pid, profile):
            return measure_server(srv, load, names)


def measure_server(
    srv: Any,
    load: Load,
    names: tuple[str, ...],
    *,
    idle: Callable[[], dict[str, Any]] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The IM load against a running kefu (one process, or nodes behind a balancer);
    ``idle``, ``profile``: see :func:`bench.measure.measure`."""
    cfg = LoadConfig(
        target="kefu",
        base_url=ws_of(srv.url),
        http_url=srv.url,
        visitors=load.visitors,
        agents=load.agents,
        agent_names=names,
        agent_password=AGENT_PASSWORD,
        msg_size=load.msg_size,
        connect_concurrency=load.connect_concurrency,
    )
    m = measure(srv, cfg, load, idle=idle, profile=profile)
    m.figures["server_log_tail"] = srv.tail(1500)
    return {**m.figures, "notes": m.notes}


def load_of(n: int, m: int, *, quick: bool, workers: int | None) -> Load:
    """The IM load of one size: who chats, at what rate, for how long."""
    active = min(n, m * CAPACITY) if quick else min(n, m * CAPACITY, CHATTING)
    return Load(
        visitors=n,
        agents=m,
        active=active,
        rate=RATE_PER_CHATTING * active,
        duration=1.0 if quick else 10.0,
        workers=workers or 1,
        setup_timeout=20.0 if quick else 300.0,
    )


def _p(d: dict[str, Any] | None, key: str) -> float | None:
    return None if not d else d.get(key)


def im_rows(k: dict[str, Any], b: dict[str, Any], load: Load, *, goals: bool = True) -> list[Row]:
    """kefu's figures beside the baseline's: echo for rates, relay for delivery."""
    e, r = b["echo"], b["relay"]
    loss = k.get("loss") or {}
    rows = [
        Row(
            "visitor connections held",
            k["visitors_connected"],
            f"of {load.visitors:,}",
            e["visitors_connected"],
            goal="all held" if goals else "",
            met=k["visitors_connected"] == load.visitors if goals else None,
        ),
        Row(
            "memory per idle connection",
            k["kib_per_idle_connection"],
            "KiB",
            e["kib_per_idle_connection"],
            goal="≤ 30 KiB" if goals else "",
            met=(k["kib_per_idle_connection"] or 1e9) <= 30 if goals else None,
        ),
        Row("visitors connected per second", k["visitors_per_s_connect"], "/s", e["visitors_per_s_connect"]),
        Row("chatting visitors (sessions assigned)", k.get("sessions_assigned"), f"of {load.active:,}"),
        Row("sessions opened per second", _per_s(k.get("sessions_assigned"), k.get("session_open_s")), "/s"),
        Row(
            "messages/s, closed loop (vs echo)",
            k["sat_acked_per_s"],
            "msg/s",
            e["sat_acked_per_s"],
            goal="≥ 0.5× echo" if goals else "",
            met=(k["sat_acked_per_s"] / e["sat_acked_per_s"] >= 0.5)
            if goals and e["sat_acked_per_s"]
            else None,
        ),
        Row(
            "delivered to agents/s, closed loop (vs relay)",
            k["sat_delivered_per_s"],
            "msg/s",
            r["sat_delivered_per_s"],
        ),
        Row(
            f"delivered at {load.rate:g} msg/s offered",
            _per_s(k.get("rate_delivered"), load.duration),
            "msg/s",
            _per_s(r.get("rate_delivered"), load.duration),
        ),
        Row(
            "latency p50 (visitor → agent)",
            _p(k.get("rate_latency_ms"), "p50"),
            "ms",
            _p(r.get("rate_latency_ms"), "p50"),
        ),
        Row("latency p99", _p(k.get("rate_latency_ms"), "p99"), "ms", _p(r.get("rate_latency_ms"), "p99")),
        Row("latency max", _p(k.get("rate_latency_ms"), "max"), "ms", _p(r.get("rate_latency_ms"), "max")),
        Row(
            "latency p99 at saturation",
            _p(k.get("sat_latency_ms"), "p99"),
            "ms",
            _p(r.get("sat_latency_ms"), "p99"),
        ),
        Row(
            f"server CPU at {load.rate:g} msg/s",
            k.get("rate_server_cpu_pct"),
            "%",
            r.get("rate_server_cpu_pct"),
        ),
        Row("server CPU at saturation", k["sat_server_cpu_pct"], "%", r["sat_server_cpu_pct"]),
        Row("load generator CPU at saturation", k["sat_load_cpu_pct"], "%", r["sat_load_cpu_pct"]),
        Row(
            "whole machine busy at saturation",
            k.get("sat_machine_busy_pct"),
            "% of all cores",
            r.get("sat_machine_busy_pct"),
        ),
        Row(
            "server RSS, connections held",
            k["rss_connected_kib"] / 1024,
            "MiB",
            e["rss_connected_kib"] / 1024,
        ),
        Row("server RSS at the end", k["rss_after_kib"] / 1024, "MiB", r["rss_after_kib"] / 1024),
        Row(
            "not delivered 10 s after the end / duplicated",
            f"{loss.get('lost', '?')} / {loss.get('duplicated', '?')}",
            f"of {loss.get('acked', 0):,}",
            goal="0 / 0" if goals else "",
            met=(loss.get("lost") == 0 and loss.get("duplicated") == 0) if goals and loss else None,
        ),
    ]
    if k.get("errors"):
        rows.append(Row("error answers", ", ".join(f"{c}×{n}" for c, n in k["errors"].items())))
    return rows


def _per_s(n: float | None, s: float | None) -> float | None:
    return n / s if n is not None and s else None


def run(
    quick: bool,
    *,
    workers: int | None = None,
    visitors: int | None = None,
    agents: int | None = None,
    profile: Path | None = None,
) -> Result:
    """With ``profile``: py-spy's flame graph of the server (the first size's run; a
    size's file is ``profile`` with ``-NxM`` before its suffix when there are several)."""
    res = Result("im", "IM load: N visitors and M agents on one server process", quick=quick)
    sizes = QUICK_SIZES if quick else SIZES
    if visitors or agents:
        sizes = [(visitors or sizes[0][0], agents or sizes[0][1])]
    res.params = {
        "sizes": sizes,
        "chatting": "M × capacity" if quick else CHATTING,
        "capacity": CAPACITY,
        "rate_per_chatting_visitor": RATE_PER_CHATTING,
        "server_options": list(SERVER_OPTIONS),
    }
    for n, m in sizes:
        load = load_of(n, m, quick=quick, workers=workers)
        active = load.active
        with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
            b = measure_baseline(load, Path(tmp))
            svg = None
            if profile is not None:
                svg = (
                    profile
                    if len(sizes) == 1
                    else profile.with_name(f"{profile.stem}-{n}x{m}{profile.suffix}")
                )
            k = measure_kefu(load, Path(tmp), profile=svg)
            if svg is not None:
                res.notes.append(f"flame graph of the server: {svg}")
                res.raw.setdefault("profiles", []).append(str(svg))
        res.raw[f"{n}x{m}"] = {"kefu": k, "baseline": b, "load": load.__dict__}
        res.add(Row(f"— {n:,} visitors, {m} agents, {active:,} chatting"))
        res.add(*im_rows(k, b, load))
        res.notes += [f"{n}x{m}: {x}" for x in (k["notes"] + b["notes"])[:5]]
    res.notes.append(
        "baseline: echo for the closed-loop rate and memory, relay (visitor → agent + ack) for delivery; "
        "same connections, message size and offered rate, same run"
    )
    return res
