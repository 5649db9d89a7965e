"""Scenario 3, call signalling: A agents call V visitors again and again.

Every agent is a real plugin (``--no-media``) driven by a real ``IMClient``,
several plugins per worker process; every visitor a raw ``/ws/visitor``
client that accepts each invitation at once; the server a ``kefu server``
process (see :mod:`bench.agents_rig`). Agent *k* calls visitor *k*
(``callbackToVisitor``, the spec's call-out API): a visitor is in one call at
a time, so each pair keeps its own. One call:

1. the SDK calls ``callbackToVisitor`` → the server answers ``003001``
   (``inviteSuccess``) and pushes ``call``/``invited`` to the visitor:
   **invite → invitation event** is from the SDK's call to the visitor's
   receipt of that push;
2. the visitor sends ``answerCall {accept}`` → the agent's state becomes
   ``006011`` and reaches the SDK's ``callback(state, payload)`` through the
   plugin: **accept → SDK state callback** is from the visitor's send to that
   callback;
3. the agent hangs up (``videoDisconnect`` → ``005004``, after-call work) and
   gets ready (``setAgentState idle`` → ``002000``) for its next call.

The calls start at a set rate over all agents, evenly spaced (an agent whose
previous call is not over starts the next when it is: "calls/s achieved" and
the start lag say when the server could not keep up). Two phases: a light
one (10 calls/s) and the issue's 100 calls/s with ≥ 1,000 calls. Both ends
of each latency are in one process (pair *k* lives in worker *k mod W*):
two readings of ``time.monotonic_ns``.

**Baseline, same run**: the same message pattern through
``bench.baseline_server``'s relay, with a minimal relay of the worker in
the plugin's place (no JSON parsed in either, no storage): invite = client →
stand-in → relay → visitor, accept = visitor → relay → stand-in → client,
each request acknowledged by the relay's echo through the stand-in (kefu's
reply). The same hops as kefu's SDK → plugin → server → visitor; what kefu
adds is its parsing, validation, state machine, storage and call
orchestration.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from bench.agents_rig import CallPhase, run_calls
from bench.common import Result, Row

__all__ = ["GOAL_MS", "phase_rows", "run"]

AGENTS = 100
CALLS = 1000  # at least, in the phase at the goal's rate
GOAL_RATE = 100.0  # calls/s: the rate of the goal
LIGHT_RATE = 10.0
GOAL_MS = 20.0


def _pct(d: dict[str, Any], key: str, p: str) -> float | None:
    v = d.get(f"{key}_ms")
    return None if not v else v.get(p)


def _errors(d: dict[str, Any]) -> str:
    errs = d.get("call_errors") or {}
    return ", ".join(f"{c}×{n}" for c, n in sorted(errs.items())) if errs else "0"


def phase_rows(k: dict[str, Any], b: dict[str, Any], *, goal: bool, ready_row: bool = True) -> list[Row]:
    """The figures of one phase, kefu beside the baseline."""

    def lat(figure: str, key: str, p: str, goal_text: str = "") -> Row:
        v = _pct(k, key, p)
        return Row(
            figure,
            v,
            "ms",
            _pct(b, key, p),
            goal=goal_text,
            met=(v is not None and v <= GOAL_MS) if goal_text else None,
        )

    g = f"≤ {GOAL_MS:g} ms at {GOAL_RATE:g} calls/s" if goal else ""
    rows = [
        Row("calls completed", k["calls_done"], f"of {k['calls_offered']:,}", b["calls_done"]),
        Row(
            "calls/s achieved",
            k["calls_per_s"],
            f"/s (offered {k['rate_offered']:g})",
            b["calls_per_s"],
            goal=f"{GOAL_RATE:g} /s" if goal else "",
            met=(k["calls_per_s"] or 0) >= 0.95 * GOAL_RATE if goal else None,
        ),
        lat("invite → invitation event p50", "invite", "p50"),
        lat("invite → invitation event p99", "invite", "p99", g),
        lat("invite → invitation event max", "invite", "max"),
        lat("accept → SDK state callback (006011) p50", "accept", "p50"),
        lat("accept → SDK state callback p99", "accept", "p99", g),
        lat("accept → SDK state callback max", "accept", "max"),
        lat("invite → inviteSuccess (003001) p50", "reply", "p50"),
        lat("invite → inviteSuccess p99", "reply", "p99"),
        lat("hang up (videoDisconnect → 005004) p50", "hangup", "p50"),
        lat("hang up p99", "hangup", "p99"),
    ]
    if ready_row:
        rows += [
            lat("ready (setAgentState → 002000) p50", "ready", "p50"),
            lat("ready p99", "ready", "p99"),
        ]
    rows += [
        lat("whole call, invite → ready again p50", "cycle", "p50"),
        lat("call start behind schedule p99", "lag", "p99"),
        Row("server CPU", k["server_cpu_pct"], "%", b["server_cpu_pct"]),
        Row("load generator CPU (all workers)", k["load_cpu_pct"], "%", b["load_cpu_pct"]),
        Row("whole machine busy", k["machine_busy_pct"], "% of all cores", b["machine_busy_pct"]),
        Row("server RSS at the end", k["server_rss_mib"], "MiB", b["server_rss_mib"]),
        Row(
            "failed calls (by error)",
            _errors(k),
            "",
            goal="0" if goal else "",
            met=not k.get("call_errors") if goal else None,
        ),
    ]
    return rows


def sizes(quick: bool, agents: int | None, visitors: int | None) -> tuple[int, list[CallPhase]]:
    """The pairs (agent k calls visitor k) and the phases."""
    pairs = min(agents or (6 if quick else AGENTS), visitors or (6 if quick else AGENTS))
    if quick:
        return pairs, [CallPhase("light", 2, 5.0), CallPhase("goal", 4, 20.0)]
    per_agent = max(1, math.ceil(CALLS / pairs))
    return pairs, [
        CallPhase("light", max(1, math.ceil(100 / pairs)), LIGHT_RATE),
        CallPhase("goal", per_agent, GOAL_RATE),
    ]


def run(
    quick: bool, *, workers: int | None = None, visitors: int | None = None, agents: int | None = None
) -> Result:
    res = Result(
        "signalling", "call signalling: invite → invitation event, accept → SDK state callback", quick=quick
    )
    pairs, phases = sizes(quick, agents, visitors)
    w = workers or 2
    res.params = {
        "agents": pairs,
        "visitors": pairs,
        "workers": w,
        "phases": [p.__dict__ for p in phases],
        "api": "callbackToVisitor",
        "plugin": "kefu.plugin.Plugin, media None (--no-media)",
        "sdk": "kefu.sdk.IMClient on the worker's loop",
    }
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        b = run_calls("baseline", Path(tmp) / "baseline", pairs=pairs, workers=w, phases=phases)
        k = run_calls("kefu", Path(tmp) / "kefu", pairs=pairs, workers=w, phases=phases)
    res.raw = {"kefu": k, "baseline": b}
    if k["setup_errors"] or k["pairs_ready"] < pairs:
        res.notes.append(f"kefu: {k['pairs_ready']} of {pairs} agents set up: {k['setup_errors']}")
    res.add(
        Row("agents ready (plugin + IMClient)", k["pairs_ready"], f"of {pairs}", b["pairs_ready"]),
        Row("setting them up took", k["setup_s"], "s", b["setup_s"]),
    )
    for ph in phases:
        is_goal = ph.name == "goal"
        kp, bp = k["phases"][ph.name], b["phases"][ph.name]
        res.add(Row(f"— {ph.rate:g} calls/s offered: {pairs} agents × {ph.per_agent} calls"))
        res.add(*phase_rows(kp, bp, goal=is_goal and not quick))
    res.notes.append(
        "baseline: the same invite / accept / hang-up / ready messages through bench.baseline_server's "
        "relay, a minimal relay of the worker in the plugin's place and a raw client in the SDK's"
    )
    return res
