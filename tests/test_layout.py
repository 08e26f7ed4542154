"""Imports run one way: command line on top, then the HTTP service, services, jobs, state,
the shared gateway modules, limits, and below the gateway the builder and the runtime.

Every import in the tree, at module level or inside a function, is checked against that
order, so a layer stays importable without the ones above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["runtime", "builder", "gateway", "cli"]
# Lower rank = lower layer. A module may import only modules of its own rank or lower.
RANKS = {
    "runtime": 0,
    "builder": 1,
    "gateway": 2,  # the package itself (a docstring)
    "gateway.limits": 2,
    "gateway.settings": 3,
    "gateway.errors": 3,
    "gateway.responses": 3,
    "gateway.metrics": 3,
    "gateway.state": 4,
    "gateway.jobs": 5,
    "gateway.services": 6,
    "gateway.http": 7,
    "cli": 8,
}


def rank(module: str) -> int | None:
    """The layer of a project module (longest matching prefix), or None for anything else."""
    best = None
    for prefix, value in RANKS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, value)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)  # `from gateway import x`
    return names


def project_modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_every_project_module_has_a_layer() -> None:
    unranked = [module_name(path) for path in project_modules() if rank(module_name(path)) is None]
    assert unranked == [], "give these modules a layer in RANKS (or move them): " + ", ".join(unranked)


@pytest.mark.parametrize("path", project_modules(), ids=lambda path: module_name(path))
def test_imports_only_its_own_layer_or_lower(path: Path) -> None:
    own = module_name(path)
    upward = [
        name
        for name in imported_modules(ast.parse(path.read_text()))
        if (other := rank(name)) is not None and other > rank(own)
    ]
    assert upward == [], f"{own} imports a layer above it"


def test_the_rule_catches_an_upward_import() -> None:
    tree = ast.parse("from gateway.http.app import create_app\nfrom gateway import services\n")
    names = imported_modules(tree)
    assert [name for name in names if rank(name) > rank("gateway.state.deployments")] == [
        "gateway.http.app",
        "gateway.http.app.create_app",
        "gateway.services",
    ]
