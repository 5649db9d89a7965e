"""`kefu …` — the command line. Each part adds its commands from its own
``cli.py`` (``kefu.server.cli``, ``kefu.plugin.cli`` …) through :data:`PARTS`."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kefu.protocol import CODE_INFO, Code, parse_code
from kefu.protocol.docs import embed_js_messages, errors_md, explain_code, states_md
from kefu.protocol.integrations import integrations_md

app = typer.Typer(
    name="kefu",
    help="kefu (客服): video customer service — server, plugin, SDK, visitor.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

#: The commands each part adds with its ``register(app)``. A command's part is
#: imported only when that command runs (``kefu server`` never loads the media
#: stack, ``kefu visitor`` never loads the web framework); ``kefu --help`` loads all.
PARTS: dict[str, str] = {
    "server": "kefu.server.cli",
    "agent": "kefu.server.cli",
    "plugin": "kefu.plugin.cli",
    "visitor": "kefu.visitor.cli",
    "demo": "kefu.demo",
    "bench": "kefu.bench_cli",
}


@app.command()
def states(
    code: str = typer.Argument(None, help="explain one code, e.g. 006011"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The agent's state codes (SPEC §5), or one code explained."""
    if code is not None:
        try:
            c = parse_code(code)
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]; `kefu states` lists every code.")
            raise typer.Exit(2) from None
        info = explain_code(c)
        if as_json:
            typer.echo(json.dumps(info, ensure_ascii=False, indent=2))
            return
        console.print(f"[bold]{info['code']}[/bold]  [cyan]{info['name']}[/cyan]")
        console.print(f"meaning:   {info['meaning']}  ({info['meaning_zh']})")
        console.print(f"top-level: {info['state']} — {info['state_meaning']}")
        if info["addition"]:
            console.print("[yellow]an addition of this project (not in the spec's list)[/yellow]")
        t = Table("from", "flow", "event", "API", "callback", "source", title="reached by")
        for r in info["reached_by"]:  # type: ignore[attr-defined]
            t.add_row(r["from"], r["flow"], r["event"], r["api"], r["callback"] or "", r["ref"])
        console.print(t)
        return
    if as_json:
        rows = [
            {
                "code": c.value,
                "name": c.name,
                "state": c.top.value,
                "meaning": CODE_INFO[c].meaning,
                "meaning_zh": CODE_INFO[c].meaning_zh,
                "addition": CODE_INFO[c].addition,
            }
            for c in Code
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    table = Table(title="kefu agent state codes (* = this project's addition)")
    table.add_column("code", no_wrap=True)
    table.add_column("name", no_wrap=True, style="cyan")
    table.add_column("top", no_wrap=True)
    table.add_column("meaning")
    table.add_column("中文")
    last_top = None
    for c in Code:
        i = CODE_INFO[c]
        if c.top is not last_top:
            table.add_section()
            last_top = c.top
        table.add_row(c.value + ("*" if i.addition else ""), c.name, c.top.value, i.meaning, i.meaning_zh)
    console.print(table)


@app.command()
def docs(
    out: Path = typer.Option(Path("docs"), help="folder to write states.md, errors.md, integrations.md in"),
) -> None:
    """Write docs/states.md, docs/errors.md and docs/integrations.md from the code, and
    imclient.js's table of error messages (from the catalogue)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "states.md").write_text(states_md(), encoding="utf-8")
    (out / "errors.md").write_text(errors_md(), encoding="utf-8")
    (out / "integrations.md").write_text(integrations_md(), encoding="utf-8")
    from kefu.plugin.app import IMCLIENT_JS  # the file the plugin serves

    js = IMCLIENT_JS.read_text(encoding="utf-8")
    if (fresh := embed_js_messages(js)) != js:
        IMCLIENT_JS.write_text(fresh, encoding="utf-8")
    console.print(
        f"wrote {out / 'states.md'}, {out / 'errors.md'}, {out / 'integrations.md'} "
        f"and the error messages in {IMCLIENT_JS}"
    )


_registered: set[str] = set()


def register_parts(only: str | None = None) -> None:
    """Add the parts' commands to :data:`app`: the one ``only`` names, or all (once each)."""
    names = [PARTS[only]] if only in PARTS else list(dict.fromkeys(PARTS.values()))
    for name in names:
        if name not in _registered:
            _registered.add(name)
            importlib.import_module(name).register(app)


def main() -> None:
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if first not in ("states", "docs"):
        register_parts(first if first in PARTS else None)
    app()


if __name__ == "__main__":
    main()
