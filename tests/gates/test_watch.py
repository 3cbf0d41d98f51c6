"""--rollback-watch: verify repeated after a verified rollback; a late crash fails the watch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, read_evidence, run_dir

pytestmark = pytest.mark.integration

# How a process that dies between answers looks from outside (checks/http.py's words, the census's).
CRASH_SEEN = re.compile(r"connection (refused|reset|aborted|closed)|closed the connection|no process is serving")


def rollback(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", *args)
    )


def rounds(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["name"], r["outcome"]) for r in evidence["watch"]["rounds"]]


def test_a_watch_of_a_steady_version_passes_every_round(pytester: pytest.Pytester, demo: Deployment) -> None:
    # Latency on a shared test machine is noise; the watch repeats the verify checks kept selected.
    result = rollback(pytester, demo, "--rollback-watch", "3s", "--rollback-watch-interval", "1s", "-k", "not latency")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*rolled back from v1.3.0 to v1.2.9; verified*; watched 3 rounds over 3 s: all passed"]
    )
    evidence = read_evidence(pytester.path / "reports")
    assert rounds(evidence) == [("watch-01", "passed"), ("watch-02", "passed"), ("watch-03", "passed")]
    first = evidence["watch"]["rounds"][0]["measured"]
    assert first["round"] == 1 and first["of"] == 3
    assert first["checks"]["version"]["status"] == "passed"
    assert "latency[/]" not in first["checks"]  # deselected from verify: not watched either
    html = (run_dir(pytester.path / "reports") / "report.html").read_text()
    assert 'id="rollback-watch"' in html and "watch-03" in html


def test_a_watch_catches_a_version_that_crashes_seconds_in(pytester: pytest.Pytester, late_crash: Deployment) -> None:
    # v1.2.9 answers well, passes verify, then exits 8 s after it started (and crash-loops).
    # Latency left out as above: on a loaded machine a slow round would fail the watch before the crash does.
    result = rollback(
        pytester, late_crash, "--rollback-watch", "40s", "--rollback-watch-interval", "1s", "-k", "not latency"
    )

    assert result.ret == 19, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*rolled back from v1.3.0 to v1.2.9; verified*; watch FAILED: round */40: *",
            "exit code 19: rolled back and verified, but the watch after it failed*",
        ]
    )
    evidence = read_evidence(pytester.path / "reports")
    outcomes = [outcome for _, outcome in rounds(evidence)]
    failed_at = outcomes.index("failed")
    # The round's checks run side by side, so the crash is seen by whichever looks first and however it
    # meets them: a probe refused or cut off mid-answer, or the census finding the crash-looping process
    # not serving. Each is the crash, never a wrong version or status.
    assert (late_crash.layout.releases_dir / "v1.2.9" / "crashed").is_file()  # the app's own mark
    failures = [
        check["summary"]
        for check in evidence["watch"]["rounds"][failed_at]["measured"]["checks"].values()
        if check["status"] == "failed"
    ]
    assert failures and all(CRASH_SEEN.search(f) for f in failures), failures
    assert failed_at >= 1 and set(outcomes[:failed_at]) == {"passed"}  # it was fine for a while
    assert set(outcomes[failed_at + 1 :]) == {"skipped"}  # and the watch stopped at the crash
    verify = [t for t in evidence["tests"] if t["gate"] == "verify"]
    assert verify and {t["outcome"] for t in verify} == {"passed"}
    assert evidence["exit"]["code"] == 19


def test_ctrl_c_during_the_watch_ends_it_cleanly(tmp_path: Path, demo: Deployment) -> None:
    reports = tmp_path / "reports"
    args = demo.harness_args(
        reports,
        "--rollback-to",
        "v1.2.9",
        "--rollback-yes",
        "--rollback-watch",
        "5m",
        "--rollback-watch-interval",
        "1s",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    try:
        for line in process.stdout:
            seen.append(line)
            if "watch: round 2/300" in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + rest
    assert process.returncode == 2, output
    assert "INTERRUPTED during the watch: rolled back and verified before it; watch INTERRUPTED after " in output
    evidence = read_evidence(reports)
    assert evidence["exit"]["code"] == 2
    assert [name for name, outcome in rounds(evidence) if outcome == "passed"][:2] == ["watch-01", "watch-02"]
