"""The scenarios of issue 8, by name, in the issue's order.

A scenario is a function ``run(quick) -> Result``, imported only when it runs
(so one whose module is missing, like ``media`` until it lands, cannot break
the others). Scenarios that need parts not built yet answer ``not built
yet`` in their table instead of a figure.
"""

from __future__ import annotations

import importlib
import importlib.util
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import Result, Row

__all__ = ["SCENARIOS", "Scenario", "run_scenario"]


@dataclass(frozen=True)
class Scenario:
    name: str
    item: str  # the numbering
    title: str
    module: str | None  # "bench.im": its run(quick, **options) -> Result; None: not built yet
    waits_for: str = ""  # what it needs, when not built
    raw_dict: bool = False  # run() returns a plain dict (bench/media.py), not a Result


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("baseline", "1", "baseline: minimal websockets echo / relay server", "bench.baseline"),
        Scenario("im", "2", "IM load: N visitors, M agents, one server process", "bench.im"),
        Scenario(
            "signalling",
            "3",
            "call signalling: invite → invitation event, accept → SDK state callback",
            "bench.signalling",
        ),
        Scenario(
            "state",
            "4",
            "state propagation: server state change → SDK callback",
            "bench.state",
        ),
        Scenario(
            "plugin",
            "5",
            "plugin overhead: SDK → plugin → server against a direct client",
            "bench.plugin_overhead",
        ),
        Scenario("reconnect", "6", "reconnect storm: visitors drop and reconnect at once", "bench.reconnect"),
        Scenario("storage", "7", "storage: the same IM load on SQLite and PostgreSQL", "bench.storage"),
        Scenario("media", "-", "media: WebRTC between plugin and visitors", "bench.media", raw_dict=True),
        Scenario(
            "supervise",
            "-",
            "a supervisor in a call: monitor, whisper, barge → media, against the call's own setup",
            "bench.supervise",
            raw_dict=True,
        ),
        Scenario(
            "multinode", "-", "several nodes: the IM load on 1, 2 and 3 nodes behind nginx", "bench.multinode"
        ),
        Scenario(
            "scaling",
            "-",
            "scaling table: stored msg/s, latency, CPU per node, idle DB statements on 1, 2, 3 nodes",
            "bench.scaling",
        ),
    )
}


def _from_dict(s: Scenario, quick: bool, d: dict[str, Any]) -> Result:
    """A scenario that reports a plain dict: its figures become rows."""
    res = Result(s.name, s.title, quick=quick)
    res.raw = d
    for key, value in d.items():
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            res.add(Row(key, value))
        elif isinstance(value, bool):
            res.add(Row(key, "yes" if value else "no"))
    return res


def run_scenario(name: str, quick: bool, **options: Any) -> Result:
    """Run one scenario; never raises for a scenario's own failure (its status says it)."""
    s = SCENARIOS[name]
    if s.module is None:
        res = Result(s.name, s.title, status="not built", quick=quick)
        res.add(Row("not built yet", f"needs {s.waits_for}"))
        res.notes.append(f"scenario {s.item} of issue 8 lands with {s.waits_for}")
        return res
    if importlib.util.find_spec(s.module) is None:
        res = Result(s.name, s.title, status="not built", quick=quick)
        res.add(Row("not built yet", f"{s.module.replace('.', '/')}.py is missing"))
        return res
    try:
        module = importlib.import_module(s.module)
        runner: Callable[..., Any] = module.run
        if s.raw_dict:
            return _from_dict(s, quick, runner(quick))
        accepted = {k: v for k, v in options.items() if v is not None and k in runner.__code__.co_varnames}
        result: Result = runner(quick, **accepted)
        return result
    except Exception as exc:
        res = Result(s.name, s.title, status="failed", quick=quick)
        res.add(Row("failed", f"{type(exc).__name__}: {str(exc)[:200]}"))
        res.notes.append(traceback.format_exc()[-4000:])
        return res
