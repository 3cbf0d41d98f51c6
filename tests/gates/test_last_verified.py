"""--rollback-to last-verified: the newest version a verify gate proved good, from earlier evidence."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from deployments import Deployment

from demo import deployment

pytestmark = pytest.mark.integration


def deploy(demo: Deployment, version: str) -> None:
    """What a deploy pipeline does: move the link, restart, wait until the new version answers."""
    deployment.switch_release(demo.layout, version)
    subprocess.run(demo.layout.restart_command, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            if deployment.live_version(demo.layout) == version:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{version} never answered"
        time.sleep(0.1)


def evidence_of(folder: Path) -> dict[str, dict[str, object]]:
    return {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/evidence.json")}


def test_last_verified_rolls_back_to_the_version_a_gate_proved(pytester: pytest.Pytester, healthy: Deployment) -> None:
    reports = pytester.path / "reports"
    proving = pytester.runpytest(*healthy.harness_args(reports, "--gate", "verify"))
    assert proving.ret == 0, proving.stdout.str()
    (proving_run,) = evidence_of(reports)
    deploy(healthy, "v1.3.0")  # the next deploy: the bad one

    result = pytester.runpytest(*healthy.harness_args(reports, "--rollback-to", "last-verified", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    assert healthy.live_version() == "v1.2.9"
    result.stdout.fnmatch_lines(
        [f"*--rollback-to last-verified: v1.2.9, verified by run {proving_run} at 20*evidence matches its manifest*"]
    )
    runs = evidence_of(reports)
    latest = runs[max(runs)]
    assert latest["requested"] == "v1.2.9"
    assert latest["last_verified"]["run_id"] == proving_run
    proof = next(t for t in latest["tests"] if t["nodeid"].endswith("::preflight-last-verified"))
    assert proof["outcome"] == "passed" and proof["gate"] == "preflight"


def test_last_verified_skips_runs_whose_evidence_was_changed(pytester: pytest.Pytester, healthy: Deployment) -> None:
    reports = pytester.path / "reports"
    assert pytester.runpytest(*healthy.harness_args(reports, "--gate", "verify")).ret == 0
    (proving_run,) = evidence_of(reports)
    junit = reports / proving_run / "junit.xml"
    junit.write_text(junit.read_text().replace('failures="0"', 'failures="0" edited="yes"'))
    deploy(healthy, "v1.3.0")

    result = pytester.runpytest(*healthy.harness_args(reports, "--rollback-to", "last-verified", "--rollback-yes"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--rollback-to last-verified: no earlier run in * proved a version of demo on target app good "
            f"(1 run folder examined; not trusted: {proving_run}: its evidence does not match its manifest "
            "(junit.xml: changed)); nothing was changed*"
        ]
    )
    assert healthy.live_version() == "v1.3.0"


def test_last_verified_without_history_is_refused(pytester: pytest.Pytester, demo: Deployment) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-to", "last-verified", "--rollback-yes"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rollback-to last-verified: no earlier run in * proved a version*"])
    assert demo.live_version() == "v1.3.0" and demo.restarts() == 0


def test_a_run_whose_watch_failed_proved_nothing(tmp_path: Path) -> None:
    from rollback_harness.rollback.history import proven_version

    passed = {"nodeid": "rollback.toml::verify-version", "outcome": "passed", "check": {"measured": {"version": "v2"}}}
    assert proven_version({"exit": {"code": 0}, "mode": "rollback", "tests": [passed]}) == (
        "v2",
        "rollback, exit code 0",
    )
    assert proven_version({"exit": {"code": 19}, "tests": [passed]}) is None
    assert proven_version({"exit": {"code": 13}, "tests": [passed]}) is None
