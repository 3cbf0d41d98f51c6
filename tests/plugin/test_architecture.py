"""The plugin's shape (docs/architecture.md): the core never imports a feature; features plug in
through the harness's hooks and are registered in plugins/features.py alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rollback_harness.plugins import features, hookspecs

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
FEATURES = {name.rsplit(".", 1)[1] for name in features.pytest_plugins}


def plugin_imports(path: Path) -> set[str]:
    """The plugins/ modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rollback_harness.plugins."):
            found.add((node.module or "").split(".")[2])
    return found


CORE = sorted(p for p in PLUGINS.glob("*.py") if p.stem not in FEATURES | {"__init__", "features"})


@pytest.mark.parametrize("module", CORE, ids=lambda p: p.stem)
def test_the_core_never_imports_a_feature(module: Path) -> None:
    assert plugin_imports(module) & FEATURES == set()


def test_every_feature_is_a_plugin_that_implements_only_known_hooks() -> None:
    known = {name for name in dir(hookspecs) if name.startswith("pytest_rollback_")}
    assert known, "no hook specs"
    for name in FEATURES:
        source = (PLUGINS / f"{name}.py").read_text(encoding="utf-8")
        implemented = {
            node.name
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("pytest_rollback_")
        }
        assert implemented <= known, (name, implemented - known)
        assert implemented or "def pytest_addoption" in source, f"{name} plugs into nothing"


def test_features_do_not_import_each_other() -> None:
    for name in FEATURES:
        assert plugin_imports(PLUGINS / f"{name}.py") & (FEATURES - {name}) == set(), name


def test_docs_architecture_names_every_hook() -> None:
    """docs/architecture.md's hook table is how a newcomer finds where a feature plugs in: keep it whole."""
    table = (PLUGINS.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    declared = {name for name in dir(hookspecs) if name.startswith("pytest_rollback_")}
    assert {name for name in declared if f"`{name}(" not in table} == set()
