"""The package's modules import one another without a circle.

A circle is a module that, through its imports, ends up importing itself: it works only in the
order Python happens to load the files, and is usually held together by imports tucked inside
functions. Every import statement counts, inside functions too, so moving one into a function
does not hide a circle from this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import img2imu_jax

PACKAGE = Path(img2imu_jax.__file__).resolve().parent
ROOT = PACKAGE.name


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules `module` imports (each with the packages above it, which Python
    runs first)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    targets = set()
    for name in names:
        parts = name.split(".")
        targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1)
                       if ".".join(parts[:i]) in modules)
    # A submodule's own packages run before it: they are not imports that can close a circle.
    return {t for t in targets if t != module and not module.startswith(t + ".")}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle `[a, b, ..., a]` of `graph`, or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert ROOT + ".config" in graph and graph[ROOT + ".cli"], "the walk found no imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b", "c"}, "b": set(), "c": {"c2"}, "c2": {"c"}}, ["c", "c2", "c"]),
])
def test_the_cycle_search_finds_what_a_hand_drawn_graph_has(graph, expected):
    assert find_cycle(graph) == expected


def test_an_import_inside_a_function_counts(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(f"def f():\n    from {ROOT}.config import load_config\n")
    assert _imported(ROOT + ".other", path, _modules()) == {ROOT + ".config"}
