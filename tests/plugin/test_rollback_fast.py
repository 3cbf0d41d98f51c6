"""--rollback-fast on a driver without an emergency mode of its own (release folders): the baseline
is one probe per check and says so, preflight and verify run in full, the report says what was traded."""

from __future__ import annotations

import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration


def test_fast_rollback_measures_the_baseline_once_and_verifies_in_full(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    config = demo.config()
    config["latency"][0]["compare_to_baseline"] = True
    demo.write_config(config)
    args = demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "--rollback-fast")
    result = pytester.runpytest(*args)

    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9"
    evidence = read_evidence(pytester.path / "reports")
    checks = {(t["gate"], t["check"]["name"]): t["check"] for t in evidence["tests"] if t.get("check")}

    before = checks[("baseline", "version")]
    assert before["measured"]["attempts"] == 1 and before["measured"]["version"] == "v1.3.0"
    assert "--rollback-fast" in before["summary"] and "rules out" not in before["summary"]
    assert checks[("baseline", "health")]["measured"]["attempts"] == 1
    latency_before = checks[("baseline", "latency[/]")]
    assert latency_before["measured"]["samples"] == 1
    # the demo's v1.3.0 answers / in about 400 ms: one sample records it, judges no percentile
    assert latency_before["status"] == "inconclusive" and "one sample" in latency_before["summary"]

    after = checks[("verify", "version")]
    assert after["status"] == "passed" and after["measured"]["attempts"] == after["measured"]["needed"] > 1
    latency_after = checks[("verify", "latency[/]")]
    assert latency_after["measured"]["samples"] >= 10
    assert "not compared with a baseline: --rollback-fast took one sample" in latency_after["summary"]
    relaxed = {entry["setting"]: entry["effect"] for entry in evidence["relaxed_safety"]}
    assert "one probe per check" in relaxed["--rollback-fast"]
    result.stdout.fnmatch_lines(["*relaxed safety: --rollback-fast: emergency mode: the baseline was one probe*"])
