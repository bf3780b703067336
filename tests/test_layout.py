"""The shape of the code base: no import circles, lower layers never reach up, small files.

The imports of every module under ``src/slimdepth`` are read with ``ast`` (those inside
functions too: a lazy import is still a dependency), so a circle or an upward arrow fails here
before it confuses a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "slimdepth"
#: modules every layer may use: they import nothing of slimdepth but each other
FOUNDATION = {"slimdepth.errors", "slimdepth.options", "slimdepth.registry", "slimdepth.version",
              "slimdepth.labels", "slimdepth.geometry", "slimdepth.fileio", "slimdepth.colormap", "slimdepth.prediction"}
#: the lowest floors and what each may import besides itself and the foundation
FLOORS = {"slimdepth.data": set(), "slimdepth.models": {"slimdepth.data"}}
MAX_LINES = 700


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The slimdepth modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif source in modules:
                    found.add(source)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above could pass by never finding anything: it must see a planted circle."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_lower_floors_do_not_import_higher_ones(floor: str) -> None:
    allowed = {floor, *FLOORS[floor]}
    upward = sorted(f"{module} -> {target}" for module, targets in _graph().items() if _within(module, floor)
                    for target in targets
                    if target not in FOUNDATION and not any(_within(target, a) for a in allowed))
    assert upward == []


def test_the_foundation_imports_only_itself() -> None:
    graph = _graph()
    assert {m: sorted(graph[m] - FOUNDATION) for m in FOUNDATION if graph[m] - FOUNDATION} == {}


def test_the_import_reader_resolves_every_form(tmp_path: Path) -> None:
    """Absolute, ``from pkg import module``, relative and lazy imports are all seen."""
    modules = {"p": tmp_path, "p.a": tmp_path, "p.b": tmp_path, "p.c": tmp_path, "p.d": tmp_path}
    path = tmp_path / "a.py"
    path.write_text("import p.b\nfrom p import c\nfrom .d import x\n\ndef f():\n    from p import b\n")
    assert _imports("p.a", path, modules) == {"p.b", "p.c", "p.d"}


def test_no_source_file_is_too_long() -> None:
    long = {str(p.relative_to(SRC)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
