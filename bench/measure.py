"""One IM load measurement, the same steps for kefu and for the baseline.

Steps (each bounded in time):

1. the server process is up; sample its memory (``rss_idle``);
2. the agents connect (kefu: log in, ``auth``, ready ``idle``);
3. the visitors connect (kefu: ``hello``) a few hundred at a time; the
   memory growth divided by their number is the cost of an idle connection;
4. kefu: each of the first ``active`` visitors sends one message, which opens
   its session; the rest stay connected and idle (a contact centre's agents
   chat with ``M × capacity`` visitors at a time, not with everyone online);
5. **rate**: the active visitors send ``rate`` messages/s in all, open loop,
   for ``duration`` s: delivery latency (visitor send → agent receives it);
6. **saturation**: each active visitor sends, waits for the server's
   acknowledgement, sends again (closed loop) for ``duration`` s:
   acknowledged messages/s and delivered messages/s;
7. drain, then every acknowledged message must have been received exactly once.

Server CPU is the process's user+system time over each phase's wall time
(100 % = one core); the load workers' CPU is recorded beside it, to show
whether the load generator or the server was the limit. Over the saturation phase,
``sat_cpu_pct_by_part`` is every process's CPU on the machine summed per part (each
node, the load workers, nginx, Redis, PostgreSQL's backends per database, the rest):
divided by the stored rate, what a message costs each part.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    ProcSample,
    all_cpu,
    cpu_by_part,
    kib,
    machine_busy_pct,
    percentiles,
    proc_sample,
    system_cpu,
)
from bench.load import LoadConfig, Pool
from bench.procs import ServerProcess, profiled

__all__ = ["Load", "Measured", "drain", "loss_check", "measure"]

_MS = 1e6  # ns per ms


@dataclass(frozen=True)
class Load:
    visitors: int
    agents: int
    active: int  # visitors that chat (sessions); ≤ visitors
    rate: float  # messages/s in all during the rate phase
    duration: float  # seconds of each measured phase
    workers: int = 1
    msg_size: int = 100
    connect_concurrency: int = 200
    open_concurrency: int = 4  # sessions being opened at a time (see Worker.open_sessions)
    setup_timeout: float = 300.0


@dataclass
class Measured:
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _cpu(server: list[ProcSample], workers: list[list[ProcSample]]) -> dict[str, Any]:
    out: dict[str, Any] = {"server_cpu_pct": server[1].cpu_percent_since(server[0])}
    out["load_cpu_pct"] = sum(w[1].cpu_percent_since(w[0]) for w in workers)
    if server[0].parts and len(server[0].parts) == len(server[1].parts):
        out["server_cpu_pct_per_process"] = [
            b.cpu_percent_since(a) for a, b in zip(server[0].parts, server[1].parts, strict=True)
        ]
    return out


def _named(server: Any, workers: list[int]) -> dict[int, str]:
    """The run's own processes by pid: ``node 1`` … (or ``server``), ``load``."""
    nodes = getattr(server, "nodes", None)
    named = {int(n.pid): f"node {i}" for i, n in enumerate(nodes, 1)} if nodes else {}
    if not nodes and hasattr(server, "pid"):
        named[int(server.pid)] = "server"
    return {**named, **{int(w): "load" for w in workers}}


def _samples(pids: list[int]) -> list[ProcSample]:
    return [proc_sample(p) for p in pids]


def drain(pool: Pool, *, wait_s: float, want: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """Poll the workers' counters until ``want`` holds or ``wait_s`` passes."""
    deadline = time.monotonic() + wait_s
    while True:
        totals: Counter[str] = Counter()
        for c in pool.call("counts"):
            totals.update(c)
        if want(dict(totals)) or time.monotonic() >= deadline:
            return dict(totals)
        time.sleep(0.05)


def loss_check(reports: list[dict[str, Any]]) -> dict[str, int]:
    """Acknowledged visitor messages that no agent received, and deliveries past the first."""
    acked: set[tuple[int, int]] = set()
    received: Counter[tuple[int, int]] = Counter()
    for r in reports:
        for v, ns in r["visitor_acked"].items():
            acked.update((int(v), n) for n in ns)
        for key, count in r["agent_received"].items():
            received[key] += count
    return {
        "acked": len(acked),
        "lost": sum(1 for k in acked if k not in received),
        "duplicated": sum(c - 1 for c in received.values() if c > 1),
        "unacked_received": sum(1 for k in received if k not in acked),
    }


def _lat(reports: list[dict[str, Any]], key: str, phase: str) -> dict[str, float | None]:
    vals = [x / _MS for r in reports for x in r[key].get(phase, [])]
    return percentiles(vals)


def _window_rate(reports: list[dict[str, Any]], key: str, phase: str, start_ns: int, seconds: float) -> float:
    end = start_ns + int(seconds * 1e9)
    n = sum(1 for r in reports for t in r[key].get(phase, []) if start_ns <= t <= end)
    return n / seconds if seconds > 0 else 0.0


@contextlib.contextmanager
def _profiled(server: Any, workers: list[int], folder: Path | None) -> Iterator[None]:
    """py-spy on each of ``server``'s processes (a node list's ``nodes``, else itself) and
    on each load worker (``workers``' pids)."""
    if folder is None:
        yield
        return
    procs = getattr(server, "nodes", None) or [server]
    with contextlib.ExitStack() as stack:
        for i, p in enumerate(procs, 1):
            stack.enter_context(profiled(p.pid, folder / f"sat-node{i}.txt"))
        for i, pid in enumerate(workers, 1):
            stack.enter_context(profiled(pid, folder / f"sat-load{i}.txt"))
        yield


def measure(
    server: ServerProcess,
    cfg: LoadConfig,
    load: Load,
    *,
    echo_only: bool = False,
    idle: Callable[[], dict[str, Any]] | None = None,
    profile: Path | None = None,
) -> Measured:
    """Run the steps of the module's docstring against a started ``server``. ``idle``, when
    given, runs twice, each a quiet window: once the agents are connected (figure
    ``idle_agents_only``), and once the visitors are too, before anyone chats (``idle``).
    ``profile``: py-spy samples every server process over the saturation phase, its raw
    stacks in the folder ``profile``, one file a process (``sat-node<i>.txt``, the load
    workers' ``sat-load<i>.txt``)."""
    m = Measured()
    f = m.figures
    f["rss_idle_kib"] = kib(server.sample().rss_bytes)
    with Pool(cfg, load.workers) as pool:
        wpids = pool.pids
        t0 = time.monotonic()
        agents = pool.call("connect_agents", timeout=load.setup_timeout)
        f["agents_connected"] = sum(a["agents"] - a["failed"] for a in agents)
        f["agent_connect_s"] = time.monotonic() - t0
        for a in agents:
            m.notes.extend(f"agent: {e}" for e in a["errors"])
        rss_agents = server.sample().rss_bytes
        if idle is not None:
            f["idle_agents_only"] = idle()
        s0 = server.sample()
        t0 = time.monotonic()
        vis = pool.call("connect_visitors", timeout=load.setup_timeout)
        connect_s = time.monotonic() - t0
        s1 = server.sample()
        held = sum(v["visitors"] - v["failed"] for v in vis)
        for v in vis:
            m.notes.extend(f"visitor: {e}" for e in v["errors"])
        f["visitors_connected"] = held
        f["visitor_connect_s"] = connect_s
        f["visitors_per_s_connect"] = held / connect_s if connect_s else None
        f["connect_cpu_pct"] = s1.cpu_percent_since(s0)
        f["rss_connected_kib"] = kib(s1.rss_bytes)
        f["kib_per_idle_connection"] = kib(s1.rss_bytes - rss_agents) / held if held else None
        if idle is not None:
            f["idle"] = idle()
        # 4. sessions: only the first `active` visitors chat
        if cfg.target == "kefu":
            t0 = time.monotonic()
            opened = pool.call(
                "open_sessions",
                active=load.active,
                concurrency=max(1, load.open_concurrency // load.workers),
                wait_s=load.setup_timeout,
                timeout=load.setup_timeout + 60,
            )
            f["sessions_assigned"] = sum(o["assigned"] for o in opened)
            f["session_open_retries"] = sum(o["retried"] for o in opened)
            f["session_open_s"] = time.monotonic() - t0
        # 5. rate
        if not echo_only and load.rate > 0:
            srv = [server.sample()]
            wk = [_samples(wpids)]
            pool.call(
                "rate",
                phase="rate",
                rate=load.rate / load.workers,
                duration=load.duration,
                active=load.active,
                timeout=load.duration + 60,
            )
            srv.append(server.sample())
            wk.append(_samples(wpids))
            f["rate_offered"] = load.rate
            f.update({f"rate_{k}": v for k, v in _cpu(srv, [list(x) for x in zip(*wk, strict=True)]).items()})
            counts = drain(pool, wait_s=10.0, want=lambda c: c["agent_received"] >= c["visitor_acked"])
            f["rate_drained"] = counts
        # 6. saturation (closed loop)
        srv = [server.sample()]
        wk = [_samples(wpids)]
        busy0 = system_cpu()
        every0, t_every0 = all_cpu(), time.monotonic()
        start_ns = time.monotonic_ns()
        with _profiled(server, wpids, profile):
            sat = pool.call(
                "saturate",
                phase="sat",
                duration=load.duration,
                active=load.active,
                timeout=load.duration + 120,
            )
        srv.append(server.sample())
        wk.append(_samples(wpids))
        f["sat_machine_busy_pct"] = machine_busy_pct(busy0, system_cpu())
        f["sat_cpu_pct_by_part"] = cpu_by_part(
            every0, all_cpu(), time.monotonic() - t_every0, _named(server, wpids)
        )
        f["sat_concurrency"] = sum(s["visitors"] for s in sat)
        f["sat_stalled"] = sum(s["stalled"] for s in sat)
        f.update({f"sat_{k}": v for k, v in _cpu(srv, [list(x) for x in zip(*wk, strict=True)]).items()})
        f["rss_after_kib"] = kib(server.sample().rss_bytes)
        if not echo_only:
            drain(pool, wait_s=10.0, want=lambda c: c["agent_received"] >= c["visitor_acked"])
        reports = pool.call("report", timeout=120)
        f["sat_acked_per_s"] = _window_rate(reports, "ack_at_ns", "sat", start_ns, load.duration)
        f["sat_ack_rtt_ms"] = _lat(reports, "ack_latency_ns", "sat")
        if not echo_only:
            f["sat_delivered_per_s"] = _window_rate(reports, "recv_at_ns", "sat", start_ns, load.duration)
            f["sat_latency_ms"] = _lat(reports, "latency_ns", "sat")
            if load.rate > 0:
                f["rate_latency_ms"] = _lat(reports, "latency_ns", "rate")
                f["rate_ack_rtt_ms"] = _lat(reports, "ack_latency_ns", "rate")
                f["rate_delivered"] = len([x for r in reports for x in r["latency_ns"].get("rate", [])])
            f["loss"] = loss_check(reports)
        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r["visitor_errors"])
            errors.update(r["agent_errors"])
        f["errors"] = dict(errors)
        pool.call("close", timeout=120)
    return m
