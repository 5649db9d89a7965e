"""What every scenario shares: the machine, a process's CPU and memory, percentiles,
the result record (JSON under ``bench/results/``) and its table.

A result is a plain dict so that it goes to JSON as it is::

    {"scenario": "im", "title": ..., "status": "ok" | "not built" | "skipped" | "failed",
     "quick": false, "date": "2026-11-25T01:30:00+00:00", "machine": {...},
     "params": {...}, "rows": [Row, ...], "notes": [...], "raw": {...}}

Each row is one figure of kefu beside the same figure of the baseline (a
minimal ``websockets`` server doing the same traffic in the same run) and
their ratio, and the goal of issue 8 when it has one.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from rich.console import Console
from rich.table import Table

__all__ = [
    "RESULTS_DIR",
    "Log",
    "ProcSample",
    "Result",
    "Row",
    "kib",
    "machine_busy_pct",
    "machine_info",
    "percentiles",
    "proc_sample",
    "raise_fd_limit",
    "render",
    "save",
    "system_cpu",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python: what a reader needs to compare figures."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": model,
        "cores": os.cpu_count() or 1,
        "ram_gib": round(ram / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "load_avg_at_start": [round(x, 2) for x in load],
    }


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds used and resident memory of one process at one moment."""

    at: float  # time.monotonic()
    cpu_s: float  # user + system
    rss_bytes: int
    threads: int
    #: the processes summed in this sample, one each (several nodes as one server); else ()
    parts: tuple[ProcSample, ...] = ()

    def cpu_percent_since(self, earlier: ProcSample) -> float:
        wall = self.at - earlier.at
        return 100.0 * (self.cpu_s - earlier.cpu_s) / wall if wall > 0 else 0.0


def proc_sample(pid: int) -> ProcSample:
    """Read ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` (no psutil needed)."""
    now = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    # the command name is in parentheses and may hold spaces: split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss = 0
    threads = 1
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return ProcSample(at=now, cpu_s=(utime + stime) / _CLK_TCK, rss_bytes=rss, threads=threads)


def system_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from ``/proc/stat``."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return (0, 0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle, sum(fields))


def machine_busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """How busy all cores were between two :func:`system_cpu` readings (100 = every core)."""
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total > 0 else None


def percentiles(values: Sequence[float], ps: Iterable[float] = (50, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles and the max of ``values`` (None when there are none)."""
    out: dict[str, float | None] = {}
    data = sorted(values)
    for p in ps:
        if not data:
            out[f"p{p:g}"] = None
            continue
        rank = max(1, math.ceil(p / 100 * len(data)))
        out[f"p{p:g}"] = data[rank - 1]
    out["max"] = data[-1] if data else None
    out["count"] = len(data)
    return out


def kib(n_bytes: float) -> float:
    return n_bytes / 1024


@dataclass
class Row:
    """One figure: kefu's value, the baseline's, their ratio, and the goal if any."""

    figure: str
    value: float | int | str | None = None
    unit: str = ""
    baseline: float | int | None = None
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None  # None: no goal, or not measurable

    def __post_init__(self) -> None:
        if (
            self.ratio is None
            and isinstance(self.value, int | float)
            and isinstance(self.baseline, int | float)
            and self.baseline
        ):
            self.ratio = self.value / self.baseline


@dataclass
class Result:
    scenario: str
    title: str
    status: str = "ok"  # ok | not built | skipped | failed
    quick: bool = False
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=machine_info)
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    value_label: str = "kefu"  # the heading of the figures' column

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def save(result: Result, folder: Path = RESULTS_DIR) -> Path:
    """Write ``<folder>/<scenario>-<UTC timestamp>.json`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{result.scenario}-{'quick-' if result.quick else ''}{stamp}.json"
    path.write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False, default=str) + "\n")
    return path


def fmt(v: object) -> str:
    """A figure as the tables print it: thousands separated, two significant decimals below 10."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(result: Result, console: Console | None = None) -> Table:
    """The result as a rich table (printed when a console is given)."""
    title = f"{result.scenario}: {result.title}"
    if result.quick:
        title += " (--quick: a smoke run, not a result)"
    if result.status != "ok":
        title += f" — {result.status.upper()}"
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column(result.value_label, justify="right")
    table.add_column("unit")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("goal")
    for r in result.rows:
        if r.figure.startswith("—"):
            table.add_section()
            table.add_row(f"[bold]{r.figure.strip('— ')}[/bold]", "", "", "", "", "")
            continue
        goal = r.goal
        if r.met is True:
            goal = f"[green]✓ {goal}[/green]"
        elif r.met is False:
            goal = f"[red]✗ {goal}[/red]"
        table.add_row(
            r.figure,
            fmt(r.value),
            r.unit,
            fmt(r.baseline),
            "—" if r.ratio is None else f"{r.ratio:.2f}×",
            goal,
        )
    if console is not None:
        console.print(table)
        for note in result.notes:
            console.print(f"  [dim]• {note}[/dim]")
    return table


T = TypeVar("T")


class Log(Generic[T]):
    """Things that happen, in order, and a bounded wait for one (no polling): the
    benchmark rig's events, and the end-to-end tests' callbacks."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._grown = asyncio.Event()

    def add(self, item: T) -> None:
        self.items.append(item)
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def find(self, test: Callable[[T], bool], within: float, *, start: int = 0) -> T:
        """The first item from ``start`` on that passes ``test``, waiting at most ``within`` s."""

        async def scan() -> T:
            i = start
            while True:
                while i < len(self.items):
                    if test(self.items[i]):
                        return self.items[i]
                    i += 1
                await self._grown.wait()

        return await asyncio.wait_for(scan(), within)

    def count(self, test: Callable[[T], bool]) -> int:
        return sum(1 for item in self.items if test(item))
