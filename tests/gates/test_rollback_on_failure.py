"""A deploy gate that rolls back on its own: pytest --gate verify --rollback-on-failure."""

from __future__ import annotations

from typing import Any

import pytest
from deployments import Deployment, read_evidence, run_dir

from rollback_harness.rollback.evidence import verify_manifest

pytestmark = pytest.mark.integration


def gate(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*demo.harness_args(pytester.path / "reports", "--gate", "verify", *args))


def rows(evidence: dict[str, Any], gate_name: str) -> dict[str, str]:
    return {t["nodeid"].rpartition("::")[2]: t["outcome"] for t in evidence["tests"] if t["gate"] == gate_name}


def test_a_failed_deploy_gate_rolls_back_and_verifies_again(pytester: pytest.Pytester, demo: Deployment) -> None:
    # v1.3.0 was just deployed; /api/orders answers 500 there.
    result = gate(pytester, demo, "--expect-version", "v1.3.0", "--rollback-on-failure")

    assert result.ret == 17, result.stdout.str()
    assert demo.linked_version() == "v1.2.9"
    assert demo.live_version() == "v1.2.9"
    result.stdout.fnmatch_lines(
        [
            "*deploy gate FAILED for v1.3.0; rolled back from v1.3.0 to v1.2.9 automatically and verified*",
            "exit code 17: deploy failed its verify gate: rolled back automatically and verified",
        ]
    )
    evidence = read_evidence(pytester.path / "reports")
    # Both verify rounds are in the evidence: the deploy's, and the one after the rollback.
    assert rows(evidence, "verify")["verify-endpoint[/api/orders]"] == "failed"
    assert rows(evidence, "reverify")["reverify-endpoint[/api/orders]"] == "passed"
    assert set(rows(evidence, "reverify").values()) == {"passed"}
    assert rows(evidence, "rollback-on-failure") == {"rollback-on-failure": "passed"}
    auto = evidence["rollback_on_failure"]
    assert auto["requested"] == "previous"
    assert auto["deploy_verify"][0]["name"] == "verify-version"
    reversion = next(r for r in auto["reverify"] if r["name"] == "reverify-version")
    assert reversion["measured"]["version"] == "v1.2.9" and reversion["measured"]["expected"] == "v1.2.9"
    assert evidence["outcome"]["status"] == "rolled-back"
    assert (evidence["from_version"], evidence["to_version"]) == ("v1.3.0", "v1.2.9")
    assert evidence["exit"]["code"] == 17
    folder = run_dir(pytester.path / "reports")
    assert verify_manifest(folder) == []
    html = (folder / "report.html").read_text()
    assert 'id="rollback-deploy-verify"' in html and 'id="rollback-reverify"' in html


def test_a_passing_deploy_gate_changes_nothing(pytester: pytest.Pytester, healthy: Deployment) -> None:
    result = gate(pytester, healthy, "--expect-version", "v1.2.9", "--rollback-on-failure")

    assert result.ret == 0, result.stdout.str()
    assert healthy.restarts() == 0
    evidence = read_evidence(pytester.path / "reports")
    assert rows(evidence, "rollback-on-failure") == {"rollback-on-failure": "skipped"}
    assert set(rows(evidence, "reverify").values()) == {"skipped"}
    assert evidence["outcome"] is None
