"""Markdown tables from result files, for ``docs/benchmarks.md``::

    python -m bench.report bench/results/im-2026….json [...]

Each file becomes a heading with the date, machine and parameters, and its
table (figure, kefu, unit, baseline, ratio, goal) in Markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import fmt

__all__ = ["markdown", "table_md"]


def _fmt(v: Any) -> str:
    """A table cell: :func:`bench.common.fmt`, with ``|`` escaped for Markdown."""
    return fmt(v).replace("|", "\\|")


def table_md(data: dict[str, Any]) -> str:
    label = data.get("value_label", "kefu")
    lines = [
        f"| figure | {label} | unit | baseline | ratio | goal |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in data["rows"]:
        if r["figure"].startswith("—"):
            lines.append(f"| **{r['figure'].strip('— ')}** | | | | | |")
            continue
        goal = r.get("goal") or ""
        if r.get("met") is True:
            goal = f"✓ {goal}"
        elif r.get("met") is False:
            goal = f"✗ {goal}"
        ratio = "—" if r.get("ratio") is None else f"{r['ratio']:.2f}×"
        lines.append(
            f"| {r['figure']} | {_fmt(r['value'])} | {r.get('unit', '')} | {_fmt(r.get('baseline'))} | {ratio} | {goal} |"
        )
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    head = (
        f"### {data['scenario']}: {data['title']}\n\n"
        f"{data['date']} · {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, "
        f"Python {m['python']} · load average at start {m.get('load_avg_at_start')}"
    )
    if data.get("quick"):
        head += " · **--quick (a smoke run, not a result)**"
    out = [head, "", table_md(data)]
    if data.get("notes"):
        out.append("")
        out += [f"- {n}" for n in data["notes"] if len(n) < 400]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    for name in argv:
        print(markdown(json.loads(Path(name).read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
