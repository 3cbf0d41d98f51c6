"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import Path

import jsonschema
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
from rollback_harness.rollback.evidence import evidence_schema

EVIDENCE_VALIDATOR = jsonschema.Draft202012Validator(evidence_schema())


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Deployment]:
    """The demo deployment (v1.3.0 live and bad; v1.2.8, v1.2.9 good), running."""
    result = make_deployment(tmp_path / "deploy")
    deployment.start(result.layout)
    try:
        yield result
    finally:
        deployment.stop(result.layout)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Every evidence.json a passing test wrote (under its tmp_path or pytester folder) matches the schema."""
    result = yield
    problems = [problem for folder in _test_folders(item) for problem in _evidence_problems(folder)]
    if problems:
        pytest.fail("evidence.json does not match rollback/evidence.schema.json:\n" + "\n".join(problems), False)
    return result


def _test_folders(item: pytest.Item) -> list[Path]:
    # Only the folders of this test's own fixtures: funcargs holds those it used, directly or not.
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    tmp_path, tester = funcargs.get("tmp_path"), funcargs.get("pytester")
    folders = [tmp_path] if isinstance(tmp_path, Path) else []
    return folders + ([tester.path] if isinstance(tester, pytest.Pytester) else [])


def _evidence_problems(folder: Path) -> list[str]:
    problems = []
    for path in sorted(folder.rglob("evidence.json")):
        try:
            evidence = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a test's own broken stand-in (the harness writes atomically)
        if not _written_by_the_harness(evidence):
            continue
        error = jsonschema.exceptions.best_match(EVIDENCE_VALIDATOR.iter_errors(evidence))
        if error is not None:
            problems.append(f"{path}: at /{'/'.join(map(str, error.absolute_path))}: {error.message}")
    return problems


def _written_by_the_harness(evidence: object) -> bool:
    """Stand-ins for older runs that tests write by hand (retention, manifest, history) carry no run id."""
    return isinstance(evidence, dict) and evidence.get("schema") == "rollback-evidence/1" and "run_id" in evidence
