"""``kefu bench [SCENARIO] [--quick]``: the benchmarks of issue 8 (``bench/`` in the repo).

Each scenario prints a table (kefu's figure, the baseline's, their ratio, the
goal) and writes ``bench/results/<scenario>-<timestamp>.json``. The
benchmarks live beside the package in a clone (``bench/``); the editable
install (``pip install -e .``, bin/setup) makes them the package ``bench``
(pyproject's ``packages.find``), imported as any other: no ``sys.path`` edit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["bench", "main", "register"]

console = Console(width=None if sys.stdout.isatty() else 130)


def _import_bench() -> bool:
    try:
        return importlib.util.find_spec("bench.registry") is not None
    except ModuleNotFoundError:  # no package bench at all
        return False


def bench(
    scenario: str = typer.Argument("all", help="a scenario name, or 'all' (see --list)"),
    quick: bool = typer.Option(False, "--quick", help="a small smoke run (< 1 min), not counted as a result"),
    workers: int = typer.Option(None, "--workers", min=1, max=8, help="load-generator processes"),
    visitors: int = typer.Option(
        None, "--visitors", min=1, help="visitors (one size instead of the issue's)"
    ),
    agents: int = typer.Option(None, "--agents", min=1, help="agents (one size instead of the issue's)"),
    out: Path = typer.Option(None, "--out", help="folder for the JSON results (default bench/results)"),
    list_: bool = typer.Option(False, "--list", help="list the scenarios and exit"),
    profile: Path = typer.Option(
        None, "--profile", help="im: py-spy's flame graph of the server written to this SVG file"
    ),
    node_cpu: float = typer.Option(
        None,
        "--node-cpu",
        min=0.01,
        max=64.0,
        help="scaling: hold every node to this share of a core (a cgroup; needs root), as on a host "
        "of its own: the ratios then say what a node adds (D90)",
    ),
) -> None:
    """Run the benchmarks: figures, the baseline of the same run, and their ratios."""
    if not _import_bench():
        console.print(
            "[red]bench/ is not next to this kefu install.[/red] Run `kefu bench` from a clone of the "
            "repository, installed with `pip install -e .` (bin/kefu does that)."
        )
        raise typer.Exit(2)
    from bench.common import RESULTS_DIR, render, save
    from bench.registry import SCENARIOS, run_scenario

    if list_:
        for s in SCENARIOS.values():
            state = "" if s.module else f"  (not built yet: needs {s.waits_for})"
            console.print(f"{s.item:>2}  [cyan]{s.name:<11}[/cyan] {s.title}{state}")
        return
    names = list(SCENARIOS) if scenario == "all" else [scenario]
    if profile is not None and names != ["im"]:
        console.print("[red]--profile goes with the scenario im[/red]: `kefu bench im --profile FILE.svg`.")
        raise typer.Exit(2)
    if node_cpu is not None and names != ["scaling"]:
        console.print(
            "[red]--node-cpu goes with the scenario scaling[/red]: `kefu bench scaling --node-cpu 0.3`."
        )
        raise typer.Exit(2)
    for name in names:
        if name not in SCENARIOS:
            console.print(f"[red]no scenario {name!r}[/red]; `kefu bench --list` names them.")
            raise typer.Exit(2)
    failed = []
    for name in names:
        console.print(f"[bold]▶ {name}[/bold]: {SCENARIOS[name].title}")
        result = run_scenario(
            name, quick, workers=workers, visitors=visitors, agents=agents, profile=profile, node_cpu=node_cpu
        )
        render(result, console)
        for svg in result.raw.get("profiles", []):
            console.print(f"  flame graph of the server: [cyan]{svg}[/cyan]")
        path = save(result, out or RESULTS_DIR)
        console.print(f"  [dim]→ {path}[/dim]\n")
        if result.status == "failed":
            failed.append(name)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red] (the notes above say why)")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench …``: the command without the rest of the CLI."""
    app = typer.Typer(add_completion=False)
    register(app)

    @app.callback()
    def _root() -> None:
        """kefu benchmarks."""

    try:
        app(["bench", *(argv or [])], standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    return 0
