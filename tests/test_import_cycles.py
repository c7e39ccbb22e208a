"""No import cycle anywhere in asgikit/: not at top level, under TYPE_CHECKING or in a function.

Every ``import`` statement of every module is read with `ast` (wherever it sits), each
names an asgikit module, and the graph of "module A imports module B" must be acyclic.
A package's ``__init__`` importing its own submodules is how packages work, not an edge
back: a submodule's parent package is always imported first.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asgikit"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The asgikit modules ``path`` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif source in known:
                    found.add(source)
    found.discard(name)
    # A package importing its own submodules is not a cycle (see the module docstring).
    return {target for target in found if not (is_package and target.startswith(name + "."))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_reader_sees_every_import(tmp_path: Path) -> None:
    source = tmp_path / "asgikit" / "mod.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from asgikit.a import X\n"
        "def f():\n    import asgikit.b\n    from asgikit import c\n"
        "from .d import Y\n"
    )
    known = {"asgikit", "asgikit.a", "asgikit.b", "asgikit.c", "asgikit.d", "asgikit.mod"}
    imported = imported_modules("asgikit.mod", source, known)
    assert imported == {"asgikit.a", "asgikit.b", "asgikit.c", "asgikit.d"}


def test_no_import_cycle_in_asgikit() -> None:
    found = modules()
    known = set(found)
    graph = {name: imported_modules(name, path, known) for name, path in found.items()}
    assert "asgikit.forms" in graph["asgikit.requests"]  # the reader sees real imports
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"
