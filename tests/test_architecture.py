"""The rules of the house (DESIGN.md, section 3), checked on the source: folders by role whose imports point down,
no import cycle, modules a reader can hold in their head, and few modules loose at the top of the package.

Imports are read from the source (``ast``), function-level and ``TYPE_CHECKING`` ones included: an import inside a
function is still an arrow between two modules, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "lit_cs201"
#: Each top-level part of the package and its layer: a module may import its own layer and the layers below.
#: ``course`` (the course's side programs) sits on the side, above everything but the command; nothing imports it.
LAYERS = {
    "errors": 0,
    "private_api": 0,
    "data": 1,
    "models": 2,
    "runs": 3,
    "report": 4,
    "deploy": 5,
    "cli": 6,
    "course": 6,
}
#: The package itself (its version, `lit_cs201.predict`, the aliases of 0.1's module names) and ``python -m``.
FACADE = {"lit_cs201", "lit_cs201.__main__"}
MAX_LINES = 350
MAX_LOOSE = 4


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its source."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def part(name: str) -> str:
    return name.split(".")[1]


def test_imports_point_down_the_layers():
    upward = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if name not in FACADE
        for target in targets
        if target not in FACADE and LAYERS[part(target)] > LAYERS[part(name)]
    ]
    assert not upward, "imports up the layers (" + " < ".join(LAYERS) + "):\n" + "\n".join(sorted(upward))


def test_nothing_imports_the_course_programs_but_themselves():
    into = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        for target in targets
        if target not in FACADE and part(target) == "course" and name not in FACADE and part(name) != "course"
    ]
    assert not into, "\n".join(sorted(into))


def test_every_part_of_the_package_has_a_layer():
    assert {part(name) for name in modules() if name not in FACADE} <= set(LAYERS)


def test_no_import_cycle():
    arrows = {name: targets - FACADE for name, targets in graph().items() if name not in FACADE}
    cycles = _cycles(arrows)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles)


def _cycles(arrows: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan), each as a list of its modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in sorted(arrows.get(name, ())):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            part_ = []
            while True:
                top = stack.pop()
                part_.append(top)
                if top == name:
                    break
            if len(part_) > 1:
                found.append(sorted(part_))

    for name in sorted(arrows):
        if name not in index:
            visit(name)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("folder", ["src", "scripts"])
def test_every_module_fits_in_a_readers_head(folder):
    long = {
        str(path.relative_to(REPO)): lines
        for path in sorted((REPO / folder).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_few_modules_loose_at_the_top_of_the_package():
    loose = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(loose) <= MAX_LOOSE, loose
