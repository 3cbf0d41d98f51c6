"""Each runbook item reports its own time: a check's call is the check itself, not its wait for the
phase's other checks, and the setup that ran the rollback does not carry it (its steps are rows of
their own in the timeline)."""

from __future__ import annotations

import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration


def test_items_report_their_own_durations(pytester: pytest.Pytester, demo: Deployment) -> None:
    reports = pytester.path / "reports"
    recorder = pytester.inline_run(*demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert recorder.ret == 0
    evidence = read_evidence(reports)
    rollback_s = evidence["outcome"]["duration_s"]
    assert rollback_s > 0
    phases = {
        (report.nodeid.rpartition("::")[2], report.when): report.duration
        for report in recorder.getreports("pytest_runtest_logreport")
    }
    # The first verify item's setup ran the rollback (a real restart and readiness wait): not any more.
    assert phases[("verify-version", "setup")] < rollback_s, phases[("verify-version", "setup")]
    for name in ("baseline-latency[/]", "verify-latency[/]"):
        # Was 0.000 s: the check had finished while its item waited for the others. Now its own
        # work: dozens of real HTTP answers.
        assert phases[(name, "call")] > 0.01, phases[(name, "call")]
    rows = {event["what"]: event for event in evidence["timeline"]}
    for step in ("switch-link", "restart", "wait-ready"):  # the rollback's steps: rows of their own, timed
        assert rows[step]["duration_s"] is not None, rows[step]
