"""The package's layout: imports run downward only, and no module imports itself in a circle.

Every ``import`` of ``src/gradinv`` is read with ``ast`` (those inside functions and under
``TYPE_CHECKING`` too, since a lazy import is still a dependency) and checked against the
layers below, from the ground floor up. A folder may import its own modules and any folder of
a lower layer; folders of one layer may not import each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gradinv

PACKAGE = Path(gradinv.__file__).resolve().parent
GROUND = "ground floor"
# Lowest first. The ground floor holds the top-level modules (types, checks, ...); the package
# face, gradinv/__init__.py, sits above everything and nothing imports it.
LAYERS: list[set[str]] = [
    {GROUND},
    {"data", "models"},
    {"report"},
    {"defenses", "priors"},
    {"record"},
    {"fl"},
    {"attacks"},
    {"audit"},
    {"cli"},
]
LEVEL = {folder: level for level, folders in enumerate(LAYERS) for folder in folders}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether ``name`` (gradinv.x.y) is a module or package of the source tree."""
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return ((PACKAGE / relative).with_suffix(".py").is_file()
            or (PACKAGE / relative / "__init__.py").is_file())


def imported_modules(path: Path) -> set[str]:
    """The gradinv modules ``path`` imports (``from pkg import submodule`` names the
    submodule)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gradinv"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "gradinv":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if is_module(sub) else source)
    return found


def folder_of(module: str) -> str:
    """The folder a module lives in (its first name under gradinv), or the ground floor."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package face"
    return parts[1] if is_module(".".join(parts[:2])) and (PACKAGE / parts[1]).is_dir() else GROUND


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_folder_has_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(LEVEL) - {GROUND}


def test_no_import_runs_upward_or_sideways():
    wrong = []
    for module, imports in import_graph().items():
        mine = folder_of(module)
        if mine == "package face":
            continue
        for target in imports:
            theirs = folder_of(target)
            if theirs == mine:
                continue
            if theirs == "package face" or LEVEL[theirs] >= LEVEL[mine]:
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_walk_sees_relative_lazy_and_submodule_imports():
    imports = import_graph()
    assert "gradinv.audit.batch" in imports["gradinv.audit.sweep"]  # imported inside a function
    assert "gradinv.attacks" in imports["gradinv.audit.engine"]  # from .. import attacks
    assert "gradinv.version" in imports["gradinv.report.run_folder"]
