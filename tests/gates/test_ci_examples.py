"""The example CI files in docs/ci/ parse, and every harness command in them is one pytest accepts."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CI = Path(__file__).resolve().parents[2] / "docs" / "ci"
EXAMPLES = sorted(path.name for path in CI.glob("*.yml"))


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def pytest_commands(document: Any) -> list[list[str]]:
    """Every ``python -m pytest ...`` / ``pytest ...`` command line, as its arguments after pytest."""
    commands = []
    for text in strings(document):
        words = shlex.split(text, comments=True)
        for start, word in enumerate(words):
            if word == "pytest" and (start == 0 or words[start - 1] == "-m"):
                commands.append(words[start + 1 :])
    return commands


def test_both_ci_systems_have_an_example() -> None:
    assert EXAMPLES == ["github-actions.yml", "gitlab-ci.yml"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_runs_a_deploy_gate_that_pytest_accepts(name: str, pytester: pytest.Pytester) -> None:
    document = yaml.safe_load((CI / name).read_text())
    commands = pytest_commands(document)
    assert len(commands) == 1, commands
    (args,) = commands

    # pytest's own parser: an unknown option or a bad choice fails here, as it would in CI.
    config = pytester.parseconfig(*args)

    option = config.option
    assert option.rollback_gate == "verify"
    assert option.rollback_expect_version == "$VERSION"
    assert option.rollback_on_failure == "previous"
    assert option.rollback_watch == "5m" and option.rollback_watch_interval == "30s"
    assert option.rollback_report_dir == "reports"


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_keeps_the_report_whatever_happened(name: str) -> None:
    document = yaml.safe_load((CI / name).read_text())
    if name == "github-actions.yml":
        steps = document["jobs"]["deploy"]["steps"]
        upload = next(step for step in steps if str(step.get("uses", "")).startswith("actions/upload-artifact"))
        assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    else:
        artifacts = document["deploy-gate"]["artifacts"]
        assert artifacts["when"] == "always" and artifacts["paths"] == ["reports/"]
