"""Gates never pass by not checking: what the verify gate expects, and what the baseline measured."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration

# A symlink deployment whose service does not answer (nothing listens on port 9).
DOWN = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"
timeout = "1s"

[targets.web]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""


def down_deployment(path: Path) -> None:
    path.joinpath("rollback.toml").write_text(DOWN)
    for version in ("v1.2.9", "v1.3.0"):
        path.joinpath("releases", version).mkdir(parents=True)
    os.symlink("releases/v1.3.0", path / "current")


def evidence_in(folder: Path) -> dict[str, Any]:
    runs = list(folder.glob("*/evidence.json"))
    assert len(runs) == 1, runs
    data: dict[str, Any] = json.loads(runs[0].read_text())
    return data


def version_check(evidence: dict[str, Any]) -> dict[str, Any]:
    check: dict[str, Any] = next(t["check"] for t in evidence["tests"] if t["nodeid"].endswith("verify-version"))
    return check


def test_verify_gate_expects_what_the_platform_says_is_deployed(pytester: pytest.Pytester, demo: Deployment) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-gate", "verify", "-k", "version"))

    assert result.ret == 0, result.stdout.str()
    evidence = read_evidence(reports)
    assert evidence["expect_version"] is None  # the command line's intent: none given
    check = version_check(evidence)
    assert check["measured"]["expected"] == "v1.3.0"  # the `current` link, read by the symlink driver
    assert check["measured"]["expected_from"] == "target app (symlink): the version the platform says is deployed"


def test_verify_gate_fails_when_the_service_is_not_what_the_platform_deployed(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    # A deploy that did not take: the link moved, the process still serves the old release.
    os.unlink(demo.layout.current_link)
    os.symlink(demo.layout.releases_dir / "v1.2.9", demo.layout.current_link)

    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-gate", "verify", "-k", "version"))

    assert result.ret == 13
    result.stdout.fnmatch_lines(["*live version v1.3.0, expected v1.2.9*"])


def test_verify_gate_is_inconclusive_when_the_platform_cannot_say(pytester: pytest.Pytester, demo: Deployment) -> None:
    os.unlink(demo.layout.current_link)

    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-gate", "verify", "-k", "version"))

    assert result.ret == 13
    result.stdout.fnmatch_lines(["*inconclusive (not passed)*cannot say which version is deployed*does not exist*"])
    check = version_check(read_evidence(reports))
    assert check["status"] == "inconclusive" and check["measured"]["expected_from"] is None


def test_expect_version_on_the_command_line_is_recorded_as_the_source(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    reports = pytester.path / "reports"
    args = demo.harness_args(
        reports, "--rollback-gate", "verify", "--rollback-expect-version", "v1.3.0", "-k", "version"
    )
    assert pytester.runpytest(*args).ret == 0
    assert version_check(read_evidence(reports))["measured"]["expected_from"] == "--rollback-expect-version"


def test_failed_baseline_checks_are_expected_failures_everywhere(pytester: pytest.Pytester) -> None:
    down_deployment(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "--rollback-to", "v1.2.9", "--rollback-dry-run", "-rxX")

    assert result.ret == 0, result.stdout.str()  # the baseline never blocks: as before
    result.assert_outcomes(passed=7, skipped=2, xfailed=1)  # baseline-replicas passed; verify items skipped
    result.stdout.fnmatch_lines(["XFAIL rollback.toml::baseline-version - baseline measured: failed: *refused*"])

    folder = next(pytester.path.glob("reports/*"))
    junit = (folder / "junit.xml").read_text()
    case = junit[junit.index('name="baseline-version"') :]
    case = case[: case.index("</testcase>")]
    assert '<skipped type="pytest.xfail" message="baseline measured: failed' in case

    html = (folder / "report.html").read_text()
    blob = json.loads(html.split('data-jsonblob="')[1].split('"></div>')[0].replace("&#34;", '"').replace("&amp;", "&"))
    rows = [row for key, rows in blob["tests"].items() if key.endswith("baseline-version") for row in rows]
    assert [row["result"] for row in rows] == ["XFailed"]
    # The row says what was measured, not the harness's own source code.
    assert "baseline measured: failed" in rows[0]["log"] and "_run_baseline" not in html

    entry = next(t for t in evidence_in(pytester.path / "reports")["tests"] if t["nodeid"].endswith("baseline-version"))
    assert entry["outcome"] == "xfailed" and entry["message"].startswith("baseline measured: failed: ")
