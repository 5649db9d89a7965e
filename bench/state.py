"""Scenario 4, state propagation: a state change made by the server → the SDK's callback.

**The change**: the end of after-call work by the server's wrap-up timer
(``kefu server --wrap-up-timeout``; ``005004`` → ``002000``, event
``wrapUpTimeout``). It is the one state change in kefu that no client
message causes — the server decides it alone, at a time of its own — so
what is measured is the push and nothing else: the server's change, its
commit, the ``state`` push on the agent's socket, the plugin, the SDK's
``initInnerCallBack`` ``stateChange(state, payload)``. (Changes a client
causes — the visitor's answer, the agent's own requests — are in scenario 3.)

The agents and visitors are those of scenario 3 (:mod:`bench.agents_rig`):
real plugins without media, real ``IMClient``\\ s, raw visitors that accept.
Each agent calls its visitor, the visitor accepts, the agent hangs up
(after-call work), and the server ends the after-call work
``wrap_up`` seconds later; the agent does not ``setAgentState``. The calls
start at a set rate, as in scenario 3 (10 calls/s, then the issue's 100).

**Timing**: the push carries ``payload.at``, the server's time of the
change (its transaction's clock, wall time); the SDK's callback reads
``time.time_ns()`` in another process of the same machine (one clock). Two
figures: *server's change → SDK callback* (the push), and *timer due → SDK
callback*, which adds how late the server's timer fired (also shown alone).

**Baseline, same run**: the same call messages through
``bench.baseline_server``'s relay (see :mod:`bench.signalling`), and at the
same moment (``wrap_up`` after the hang-up) a "state" message sent from the
visitor's side through the relay and the worker's stand-in plugin to the
SDK-like client, timed from its send: the same push, with one loopback hop
more (client → relay) than kefu's, which starts inside the server.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from bench.agents_rig import CallPhase, run_calls
from bench.common import Result, Row

__all__ = ["run"]

AGENTS = 100
CHANGES = 1000
WRAP_UP = 0.5  # seconds of after-call work before the server makes the agent ready
GOAL_MS = 20.0
GOAL_RATE = 100.0


def _pct(d: dict[str, Any], key: str, p: str) -> float | None:
    v = d.get(f"{key}_ms")
    return None if not v else v.get(p)


def _rows(k: dict[str, Any], b: dict[str, Any], *, goal: bool) -> list[Row]:
    g = f"≤ {GOAL_MS:g} ms at {GOAL_RATE:g} calls/s" if goal else ""
    p99 = _pct(k, "push", "p99")
    errs = k.get("call_errors") or {}
    return [
        Row(
            "state changes measured",
            (k.get("push_ms") or {}).get("count", 0),
            f"of {k['calls_offered']:,}",
            (b.get("push_ms") or {}).get("count", 0),
        ),
        Row("calls/s achieved", k["calls_per_s"], f"/s (offered {k['rate_offered']:g})", b["calls_per_s"]),
        Row("server's change → SDK stateChange p50", _pct(k, "push", "p50"), "ms", _pct(b, "push", "p50")),
        Row(
            "server's change → SDK stateChange p99",
            p99,
            "ms",
            _pct(b, "push", "p99"),
            goal=g,
            met=(p99 is not None and p99 <= GOAL_MS) if goal else None,
        ),
        Row("server's change → SDK stateChange max", _pct(k, "push", "max"), "ms", _pct(b, "push", "max")),
        Row("wrap-up timer due → SDK stateChange p50", _pct(k, "due", "p50"), "ms", _pct(b, "push", "p50")),
        Row("wrap-up timer due → SDK stateChange p99", _pct(k, "due", "p99"), "ms", _pct(b, "push", "p99")),
        Row("the server's timer late by, p50", _pct(k, "late", "p50"), "ms"),
        Row("the server's timer late by, p99", _pct(k, "late", "p99"), "ms"),
        Row("server CPU", k["server_cpu_pct"], "%", b["server_cpu_pct"]),
        Row("load generator CPU (all workers)", k["load_cpu_pct"], "%", b["load_cpu_pct"]),
        Row("whole machine busy", k["machine_busy_pct"], "% of all cores", b["machine_busy_pct"]),
        Row(
            "failed calls (by error)",
            ", ".join(f"{c}×{n}" for c, n in sorted(errs.items())) if errs else "0",
            goal="0" if goal else "",
            met=not errs if goal else None,
        ),
    ]


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result("state", "state propagation: a change made by the server → the SDK's callback", quick=quick)
    pairs = min(agents or (6 if quick else AGENTS), visitors or (6 if quick else AGENTS))
    wrap_up = 0.2 if quick else WRAP_UP
    if quick:
        phases = [CallPhase("light", 2, 5.0), CallPhase("goal", 6, 20.0)]
    else:
        phases = [
            CallPhase("light", max(1, math.ceil(100 / pairs)), 10.0),
            CallPhase("goal", max(1, math.ceil(CHANGES / pairs)), GOAL_RATE),
        ]
    w = workers or 2
    res.params = {
        "agents": pairs,
        "workers": w,
        "wrap_up_timeout_s": wrap_up,
        "phases": [p.__dict__ for p in phases],
        "change": "after-call work ended by the server's wrap-up timer (005004 → 002000, wrapUpTimeout)",
    }
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        b = run_calls(
            "baseline", Path(tmp) / "baseline", pairs=pairs, workers=w, phases=phases, wrap_up=wrap_up
        )
        k = run_calls("kefu", Path(tmp) / "kefu", pairs=pairs, workers=w, phases=phases, wrap_up=wrap_up)
    res.raw = {"kefu": k, "baseline": b}
    if k["setup_errors"] or k["pairs_ready"] < pairs:
        res.notes.append(f"kefu: {k['pairs_ready']} of {pairs} agents set up: {k['setup_errors']}")
    res.add(Row("agents ready (plugin + IMClient)", k["pairs_ready"], f"of {pairs}", b["pairs_ready"]))
    for ph in phases:
        kp, bp = k["phases"][ph.name], b["phases"][ph.name]
        res.add(Row(f"— {ph.rate:g} calls/s offered: {pairs} agents × {ph.per_agent} wrap-ups"))
        res.add(*_rows(kp, bp, goal=ph.name == "goal" and not quick))
    res.notes.append(
        f"the change: the server's wrap-up timer ({wrap_up:g} s) ends after-call work; timed from the "
        "push's payload.at (the server's clock) to the SDK's stateChange (time.time_ns, same machine)"
    )
    res.notes.append(
        "baseline: a message from the visitor's side through bench.baseline_server's relay and a minimal "
        "stand-in plugin to a raw client, at the same moments, with the same call messages around it"
    )
    return res
