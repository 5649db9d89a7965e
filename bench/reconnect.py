"""Scenario 6, the reconnect storm: 5,000 visitors drop and reconnect at once.

Setup as in the IM load: M agents ready, N visitors connected, ``M ×
capacity`` of them chatting. Then messages flow both ways (visitors with a
``clientMsgId``, agents to their sessions); after ``before`` seconds every
visitor aborts its TCP connection at the same moment and reconnects with
``hello {name, visitorKey, lastSeq}`` (a few hundred handshakes in flight at
a time, retries with jittered back-off). A visitor resends what was not
acknowledged with the same ``clientMsgId``; messages typed while it was
away wait in its outbox. Traffic goes on for ``after`` seconds, stops, and
the run drains.

The proof, from the numbers in every text:

- every visitor message acknowledged by the server reached an agent exactly once;
- every agent message acknowledged reached its visitor exactly once (live or replayed
  from ``lastSeq``), with no gap in the visitor's ``seq``;
- no message was left unacknowledged.

The baseline is the same storm against the echo server (TCP + WebSocket
handshakes only): the time until all are back.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import Result, Row, kib
from bench.kefu_server import SERVER_OPTIONS, add_agents, agent_names, kefu_load, kefu_process
from bench.load import LoadConfig, Pool
from bench.measure import drain
from bench.procs import ServerProcess, baseline_process

__all__ = ["run", "storm"]

CAPACITY = 5
CHATTING = 100  # see bench.im.CHATTING


def _check(reports: list[dict[str, Any]]) -> dict[str, int]:
    acked: set[tuple[int, int]] = set()
    received: Counter[tuple[int, int]] = Counter()
    agent_acked: set[tuple[int, int]] = set()
    got: Counter[tuple[int, int]] = Counter()
    outbox = 0
    for r in reports:
        for v, ns in r["visitor_acked"].items():
            acked.update((int(v), n) for n in ns)
        outbox += sum(len(ns) for ns in r["visitor_outbox"].values())
        received.update(r["agent_received"])
        for k, ns in r["agent_acked"].items():
            agent_acked.update((int(k), n) for n in ns)
        for key, c in r["visitor_got"].items():
            k, n = key.split("/")
            got[(int(k), int(n))] += c
    return {
        "visitor_acked": len(acked),
        "visitor_lost": sum(1 for x in acked if x not in received),
        "visitor_duplicated": sum(c - 1 for c in received.values() if c > 1),
        "visitor_unacked": outbox,
        "agent_acked": len(agent_acked),
        "agent_lost": sum(1 for x in agent_acked if x not in got),
        "agent_duplicated": sum(c - 1 for c in got.values() if c > 1),
        "seq_gaps": sum(r["visitor_gaps"] for r in reports),
        "replayed_ignored": sum(r["visitor_overlap"] for r in reports),
    }


def storm(
    srv: ServerProcess,
    cfg: LoadConfig,
    *,
    active: int,
    workers: int,
    before: float,
    after: float,
    visitor_rate: float,
    agent_rate: float,
    reconnect_concurrency: int,
    reconnect_timeout: float,
    setup_timeout: float = 600.0,
) -> dict[str, Any]:
    f: dict[str, Any] = {"notes": []}
    with Pool(cfg, workers) as pool:
        ag = pool.call("connect_agents", timeout=setup_timeout)
        vis = pool.call("connect_visitors", timeout=setup_timeout)
        f["visitors_connected"] = sum(v["visitors"] - v["failed"] for v in vis)
        f["agents_connected"] = sum(a["agents"] - a["failed"] for a in ag)
        for x in ag + vis:
            f["notes"] += x["errors"]
        if cfg.target == "kefu":
            opened = pool.call(
                "open_sessions",
                active=active,
                concurrency=max(1, 4 // workers),
                wait_s=setup_timeout,
                timeout=setup_timeout + 60,
            )
            f["sessions_assigned"] = sum(o["assigned"] for o in opened)
        s0 = srv.sample()
        out = pool.call(
            "storm",
            before=before,
            after=after,
            visitor_rate=visitor_rate / workers,
            agent_rate=agent_rate / workers,
            reconnect_concurrency=max(1, reconnect_concurrency // workers),
            reconnect_timeout=reconnect_timeout,
            active=active,
            timeout=before + after + reconnect_timeout + 120,
        )
        s1 = srv.sample()
        t_drop = min(o["t_drop_ns"] for o in out)
        backs = [o["t_last_back_ns"] for o in out if o["t_last_back_ns"] is not None]
        f["dropped"] = sum(o["dropped"] for o in out)
        f["back"] = sum(o["back"] for o in out)
        f["all_back_s"] = (max(backs) - t_drop) / 1e9 if backs and f["back"] == f["dropped"] else None
        f["last_back_s"] = (max(backs) - t_drop) / 1e9 if backs else None
        retry: Counter[str] = Counter()
        for o in out:
            retry.update(o["retry_reasons"])
        f["retries"] = dict(retry)
        f["storm_server_cpu_pct"] = s1.cpu_percent_since(s0)
        f["rss_after_kib"] = kib(s1.rss_bytes)

        def settled(c: dict[str, int]) -> bool:
            if cfg.target != "kefu":  # the echo has no agents: its acknowledgements are all there is
                return c["visitor_outbox"] == 0
            return (
                c["visitor_outbox"] == 0
                and c["agent_received"] >= c["visitor_acked"]
                and c["visitor_got"] >= c["agent_acked"]
            )

        counts = drain(pool, wait_s=20.0, want=settled)
        if counts["visitor_outbox"]:
            pool.call("resend_outbox")
            counts = drain(pool, wait_s=10.0, want=settled)
        f["drained"] = counts
        reports = pool.call("report", timeout=120)
        f["check"] = _check(reports) if cfg.target == "kefu" else {}
        errors: Counter[str] = Counter()
        for r in reports:
            errors.update(r["visitor_errors"])
            errors.update(r["agent_errors"])
        f["errors"] = dict(errors)
        pool.call("close", timeout=120)
    return f


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("reconnect", "reconnect storm: every visitor drops and reconnects at once", quick=quick)
    n = visitors or (200 if quick else 5000)
    m = agents or (10 if quick else 100)
    active = min(n, m * CAPACITY) if quick else min(n, m * CAPACITY, CHATTING)
    w = workers or 1
    p: dict[str, Any] = {
        "visitors": n,
        "agents": m,
        "chatting": active,
        "workers": w,
        "before_s": 0.5 if quick else 3.0,
        "after_s": 1.0 if quick else 5.0,
        "visitor_rate": 0.5 * active,
        "agent_rate": 1.0 * m,
        "reconnect_concurrency": 500,
        "reconnect_timeout_s": 30.0 if quick else 180.0,
        "server_options": list(SERVER_OPTIONS),
    }
    res.params = p
    kw = {
        "active": active,
        "workers": w,
        "before": p["before_s"],
        "after": p["after_s"],
        "visitor_rate": p["visitor_rate"],
        "agent_rate": p["agent_rate"],
        "reconnect_concurrency": p["reconnect_concurrency"],
        "reconnect_timeout": p["reconnect_timeout_s"],
        "setup_timeout": 20.0 if quick else 600.0,
    }
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        workdir = Path(tmp)
        with baseline_process(workdir / "baseline.log") as bsrv:
            bcfg = LoadConfig(target="echo", base_url=bsrv.url, visitors=n)
            b = storm(bsrv, bcfg, **{**kw, "agent_rate": 0.0})
        names = agent_names(m)
        add_agents(workdir / "data", names, capacity=CAPACITY)
        t0 = time.monotonic()
        with kefu_process(workdir) as ksrv:
            kcfg = kefu_load(ksrv, n, names)
            k = storm(ksrv, kcfg, **kw)
            k["server_log_tail"] = ksrv.tail(1500)
        k["total_s"] = time.monotonic() - t0
    res.raw = {"kefu": k, "baseline": b}
    c = k["check"]
    res.add(
        Row("visitors dropped", k["dropped"], f"of {n:,}", b["dropped"]),
        Row("visitors back", k["back"], "", b["back"], goal="all", met=k["back"] == n),
        Row(
            "time until all are back",
            k["all_back_s"],
            "s",
            b["all_back_s"],
            goal="≤ 10 s",
            met=k["all_back_s"] is not None and k["all_back_s"] <= 10,
        ),
        Row("server CPU during the storm", k["storm_server_cpu_pct"], "%", b["storm_server_cpu_pct"]),
        Row("— messages across the storm"),
        Row("chatting visitors", k.get("sessions_assigned"), f"of {active:,}"),
        Row("visitor → agent acknowledged", c.get("visitor_acked")),
        Row("  lost", c.get("visitor_lost"), goal="0", met=c.get("visitor_lost") == 0),
        Row("  duplicated", c.get("visitor_duplicated"), goal="0", met=c.get("visitor_duplicated") == 0),
        Row("  never acknowledged", c.get("visitor_unacked"), goal="0", met=c.get("visitor_unacked") == 0),
        Row("agent → visitor acknowledged", c.get("agent_acked")),
        Row("  lost", c.get("agent_lost"), goal="0", met=c.get("agent_lost") == 0),
        Row("  duplicated", c.get("agent_duplicated"), goal="0", met=c.get("agent_duplicated") == 0),
        Row("  gaps in the visitors' seq", c.get("seq_gaps"), goal="0", met=c.get("seq_gaps") == 0),
        Row("  replayed pushes the client skipped (seq ≤ lastSeq)", c.get("replayed_ignored")),
    )
    if k["retries"]:
        res.notes.append(f"kefu reconnect retries: {k['retries']}")
    if k["errors"]:
        res.notes.append(f"error answers: {k['errors']}")
    res.notes += [str(x) for x in k["notes"][:5]]
    return res
