"""The package's layout: imports only go down the layers, with no cycle anywhere.

Every ``import`` and ``from ... import`` of the package's own modules counts, including
those inside functions and under ``TYPE_CHECKING``: a lazy import hides a cycle, it does
not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "unet_hub"

#: Each subpackage (or top-level module) and its layer: a module may import from its own
#: subpackage and from lower layers only. Two subpackages on the same layer are
#: independent of each other. ``unet_hub/__init__.py`` (the public API) is above all.
LAYERS = {
    "errors": 0,
    "metric_names": 0,
    "version": 0,
    "files": 0,
    "limits": 0,
    "model": 1,
    "data": 2,
    "hub": 2,
    "infer": 3,
    "evaluate": 4,
    "train": 5,
    "app": 6,
    "space": 6,
    # The command line composes the layers below, Spaces included.
    "cli": 7,
}
MAX_FUNCTION_LINES = 100


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's own modules that ``path`` (module ``name``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import module" imports the module; "from module import name" the module
            modules = [f"{base}.{alias.name}" for alias in node.names]
            targets = [m for m in modules if m in known] or [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(path, name, set(mods)) for name, path in mods.items()}


def layer(module: str) -> tuple[str, int] | None:
    """The subpackage (or top-level module) of ``module`` and its layer; None for the
    package's ``__init__``."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return parts[1], LAYERS[parts[1]]


def test_every_subpackage_has_a_layer():
    unplaced = {m.split(".")[1] for m in modules() if "." in m} - set(LAYERS)
    assert not unplaced, f"give these a layer in LAYERS: {sorted(unplaced)}"


def test_imports_only_go_down_the_layers():
    wrong = []
    for module, targets in import_graph().items():
        here = layer(module)
        if here is None:
            continue
        for target in targets:
            there = layer(target)
            if there is None:
                wrong.append(f"{module} imports the package's __init__ ({target})")
            elif there[0] != here[0] and there[1] >= here[1]:
                wrong.append(f"{module} (layer {here[1]}) imports {target} (layer {there[1]})")
    assert not wrong, "\n".join(sorted(wrong))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_there_is_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_a_lazy_upward_import_is_caught(tmp_path):
    source = tmp_path / "unet_hub" / "model" / "unet.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from unet_hub.train.loop import train\n")
    known = {"unet_hub.model.unet", "unet_hub.train.loop", "unet_hub.train"}
    assert imported_modules(source, "unet_hub.model.unet", known) == {"unet_hub.train.loop"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=module_name)
def test_no_function_is_longer_than_a_screenful_or_two(path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: split these: {', '.join(long)}"
