"""Dependencies point one way (issue 19, item 3).

- ``import kefu.sdk`` loads no plugin, no aiortc, no av: a script that only
  talks to the plugin does not pay for (or depend on) the media stack;
- the module-level imports of ``src/kefu`` form no cycle (those under
  ``if TYPE_CHECKING:`` and inside functions do not count: they run later,
  or never).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kefu

SRC = Path(kefu.__file__).resolve().parent.parent
#: What ``import kefu.sdk`` must not load: the plugin, and the media stack.
FORBIDDEN = ("kefu.plugin", "aiortc", "av")


def imported_modules(statement: str) -> list[str]:
    """The modules a fresh interpreter loads for ``statement`` (``-X importtime``)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.append(name)
    return names


def forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]


def test_the_sdk_loads_no_plugin_and_no_media() -> None:
    names = imported_modules("import kefu.sdk")
    assert "kefu.sdk.imclient" in names and "kefu.paths" in names  # the list is real
    assert forbidden(names) == []


def test_the_check_sees_the_plugin_when_it_is_loaded() -> None:
    # the same check on a module that does load the plugin: it would fail
    assert "kefu.plugin.app" in forbidden(imported_modules("import kefu.plugin.app"))


def test_the_plugin_package_loads_its_parts_on_use() -> None:
    names = imported_modules("import kefu.plugin.security")
    assert "kefu.plugin.security" in names
    assert "kefu.plugin.app" not in names and "aiortc" not in names


# --- the import graph


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports run when the module loads: not in functions or classes'
    methods, not under ``if TYPE_CHECKING:`` (its ``else:`` does run)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _module_level_imports(node.body)
            found += _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level_imports(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                found += _module_level_imports(handler.body)
        elif isinstance(node, ast.With):
            found += _module_level_imports(node.body)
        elif isinstance(node, ast.ClassDef):
            found += _module_level_imports(node.body)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` (under ``root``) it imports when it loads.

    ``from a import b`` is an edge to ``a.b`` when that is a module, else to ``a``."""
    files: dict[str, tuple[Path, bool]] = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in files.items():
        here = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in files:
                    edges.add(f"{source}.{alias.name}")
                elif source in files:
                    edges.add(source)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (``[a, b, …, a]``), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_no_import_cycle_in_kefu() -> None:
    graph = import_graph(SRC, "kefu")
    assert "kefu.plugin.connection" in graph["kefu.plugin.app"]  # the graph is real
    assert find_cycle(graph) is None


def test_the_plugin_connection_does_not_know_the_plugin() -> None:
    # not even for typing: the connection depends on a small host Protocol
    source = (SRC / "kefu" / "plugin" / "connection.py").read_text(encoding="utf-8")
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "app" not in imported and "kefu.plugin.app" not in imported


def test_the_graph_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import A\n")
    (pkg / "sub" / "a.py").write_text("from pkg.b import B\nA = 1\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nfrom .sub import a\nB = 2\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n"
        "def f():\n    from . import d\n"
    )
    (pkg / "d.py").write_text("from . import c\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.b"] == {"pkg.sub.a"} and graph["pkg.c"] == set()  # TYPE_CHECKING, functions
    assert find_cycle(graph) == ["pkg.b", "pkg.sub.a", "pkg.b"]
    (pkg / "sub" / "a.py").write_text("A = 1\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


# --- bench/ is a package of the install


def test_bench_is_imported_as_a_package_without_sys_path_edits(tmp_path: Path) -> None:
    # from a folder outside the clone: the install, not the working directory, finds bench
    check = (
        "import sys; before = list(sys.path); from kefu.bench_cli import _import_bench; "
        "assert _import_bench(); import bench.registry; assert sys.path == before, 'sys.path edited'; "
        "print(bench.registry.__file__)"
    )
    r = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == SRC.parent / "bench" / "registry.py"


def test_kefu_bench_lists_its_scenarios_from_anywhere(tmp_path: Path) -> None:
    kefu_cmd = Path(sys.executable).with_name("kefu")
    r = subprocess.run(
        [str(kefu_cmd), "bench", "--list"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signalling" in r.stdout and "media" in r.stdout


#: A module of src/kefu may hold at most this many lines (issue 19; D39).
MAX_LINES = 500

#: Tables (one row per code, state or transition): long by nature, read by lookup.
LONG_TABLES = frozenset({"kefu/protocol/machine.py", "kefu/protocol/errors.py"})


def test_no_module_over_the_line_limit() -> None:
    allowed = LONG_TABLES
    long = {
        path.relative_to(SRC).as_posix(): n
        for path in (SRC / "kefu").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert {name: n for name, n in long.items() if name not in allowed} == {}
    # a table that got short leaves the list
    assert {name for name in LONG_TABLES if name not in long} == set()
