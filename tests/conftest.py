"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy  # noqa: F401
from deployments import Deployment, make_deployment

# Imported here, before any in-process pytester run, so that pytester's sys.modules snapshot
# keeps one copy of them (a second import of http.cookiejar breaks requests' cookie jars).
import rollback_harness.checks.database
import rollback_harness.plugins.probes
import rollback_harness.plugins.report
import rollback_harness.rollback.targets.symlink  # noqa: F401
from demo import deployment


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Deployment]:
    """The demo deployment (v1.3.0 live and bad; v1.2.8, v1.2.9 good), running."""
    result = make_deployment(tmp_path / "deploy")
    deployment.start(result.layout)
    try:
        yield result
    finally:
        deployment.stop(result.layout)
