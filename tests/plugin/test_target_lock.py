"""Two runs against one target: the second changes nothing and names the first."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration


def wait_for_step(reports: Path, step: str, status: str, process: subprocess.Popen[str]) -> str:
    """Poll the first run's journal until ``step`` reaches ``status``; return the run id."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for journal in reports.glob("*/journal.jsonl"):
            for line in journal.read_text().splitlines():
                entry = json.loads(line)
                if (entry["step"], entry["status"]) == (step, status):
                    return journal.parent.name
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.05)
    raise AssertionError(f"{step} never became {status}")


def test_a_second_run_is_refused_while_the_first_holds_the_target(
    pytester: pytest.Pytester, demo: Deployment, tmp_path: Path
) -> None:
    data = demo.config()
    slow_restart = data["targets"]["app"]["restart"]
    data["targets"]["app"]["restart"] = ["sleep", "60"]
    demo.write_config(data)
    first_reports = tmp_path / "first"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            *demo.harness_args(first_reports, "--rollback-to", "v1.2.9", "--rollback-yes"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first_run = wait_for_step(first_reports, "restart", "started", first)
        data["targets"]["app"]["restart"] = slow_restart
        demo.write_config(data)

        second = pytester.runpytest(
            *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.8", "--rollback-yes")
        )

        assert second.ret == 10
        second.stdout.fnmatch_lines(
            [f"*another run holds the lock *.current.rollback.lock: run {first_run} (pid {first.pid}*"]
        )
        assert demo.restarts() == 0
        assert demo.linked_version() == "v1.2.9"  # what the first run did, untouched by the second
        evidence = read_evidence(pytester.path / "reports")
        assert evidence["outcome"]["status"] == "preflight-refused"
        # No baseline measured while the other run restarts the service: it is not our "before".
        baseline = [t for t in evidence["tests"] if t["gate"] == "baseline"]
        assert baseline and all(t["outcome"] == "skipped" for t in baseline), baseline
        assert all(t["message"].startswith("not measured: another run holds the lock") for t in baseline)
        assert all(c["before"] is None for c in evidence["comparisons"])
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)

    # The kernel released the dead run's lock: nothing stale to break by hand.
    third = pytester.runpytest(
        *demo.harness_args(pytester.path / "third", "--gate", "preflight", "--rollback-to", "v1.2.8")
    )
    assert third.ret == 0, third.stdout.str()
    # ... and the run that took over says from whom.
    [journal] = (pytester.path / "third").glob("*/journal.jsonl")
    [takeover] = [json.loads(line) for line in journal.read_text().splitlines() if '"lock-takeover"' in line]
    assert (takeover["run_id"], takeover["pid"], takeover["pid_alive"]) == (first_run, first.pid, False)
    third_evidence = read_evidence(pytester.path / "third")
    [lock_check] = [t["check"] for t in third_evidence["tests"] if t["nodeid"].endswith("preflight-target-lock")]
    assert f"; taken over from run {first_run} (pid {first.pid} on " in lock_check["summary"]
    assert any(event["what"] == "lock-takeover" for event in third_evidence["timeline"])
