"""pytest-rollback-harness: the one import name the package installs.

Its three parts live at the top of the repository, where the product brief puts them, and are
mapped in here by pyproject.toml (``[tool.setuptools.package-dir]``):

- ``rollback_harness.rollback``: the engine, plain Python (config, versions, drivers, journal)
- ``rollback_harness.checks``: the checks, plain functions returning results
- ``rollback_harness.plugins``: the pytest plugin that wires both into pytest

In a checkout the links beside this file make the same names importable without installing.
"""

from __future__ import annotations

__version__ = "0.1.0"
