"""The package's layers: imports flow one way, no module imports itself back, and ``import tractable`` stays light.

The imports are read from the source (every ``import`` statement, including those inside functions, so a cycle
cannot hide behind a function-level import), resolved to modules of ``tractable``, and checked against the layers
of docs/architecture.md: cli → app → training → the mathematics; plots are used only by the application.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tractable"

#: The mathematics: what a user of the library builds and evaluates flows with.
MATHS = ("transforms", "nn", "distributions", "flow", "models", "dequantization", "objectives", "targets", "utils",
         "diagnostics", "testing", "preprocessing")
#: Top-level parts each layer must not import.
FORBIDDEN = {
    **{part: ("app", "training", "plots", "cli", "presets", "__main__") for part in MATHS},
    "training": ("app", "plots", "cli", "presets", "__main__"),
    "plots": ("app", "cli", "presets", "__main__"),
    "presets": ("app", "cli", "__main__"),
    "app": ("cli", "__main__"),
}


def module_name(path: Path) -> str:
    parts = ("tractable", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The longest known module that ``name`` (a module or ``module.attribute``) names, or ``None``."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The ``tractable`` modules that ``module`` imports anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_the_graph_was_read():
    assert len(MODULES) > 40
    assert "tractable.flow" in GRAPH["tractable.models.nsf"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_forbidden_direction(module):
    bad = sorted(t for t in GRAPH[module] if part(t) in FORBIDDEN.get(part(module), ()))
    assert not bad, f"{module} ({part(module)}) must not import {bad}"


def _cycle_from(start: str) -> list[str] | None:
    """A shortest import cycle through ``start`` (breadth-first), or ``None``."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(GRAPH[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return None


def _is_package_init(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _is_package_init(m)))
def test_no_import_cycle(module):
    """A module never reaches itself through imports. Package ``__init__`` files only re-export their own modules, so
    an edge into a package means its ``__init__`` and is followed like any other."""
    cycle = _cycle_from(module)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_import_tractable_is_light():
    """Only what ``import torch`` loads by itself may be there (torch 2.13's ``torch.hub`` imports tqdm)."""
    code = (
        "import sys, torch\n"
        "before = set(sys.modules)\n"
        "import tractable, tractable.transforms, tractable.models, tractable.flow, tractable.distributions\n"
        "new = set(sys.modules) - before\n"
        "heavy = ('tractable.training', 'tractable.plots', 'tractable.app', 'tractable.cli', 'tqdm', 'matplotlib')\n"
        "print(','.join(sorted(m for m in new if m.split('.')[0] in heavy or m.startswith(heavy))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", f"import tractable loaded {out.stdout.strip()}"
    bare_code = "import sys, tractable; print(sorted(m for m in sys.modules if m.startswith('tractable')))"
    bare = subprocess.run([sys.executable, "-c", bare_code], capture_output=True, text=True, check=True, timeout=120)
    assert bare.stdout.strip() == "['tractable']", bare.stdout


def test_lazy_names_resolve():
    import tractable

    missing = [name for name in tractable.__all__ if not hasattr(tractable, name)]
    assert not missing, f"tractable.__all__ names that do not resolve: {missing}"
    assert sorted(dir(tractable)) == sorted(set(dir(tractable)))
