"""A deploy gate that rolls back on its own: pytest --gate verify --rollback-on-failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, make_deployment, read_evidence, run_dir

from demo import deployment
from demo.deployment import Release
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


def test_a_deploy_that_did_not_land_is_not_rolled_back_past(pytester: pytest.Pytester, healthy: Deployment) -> None:
    # The pipeline says v1.3.0 was deployed, but the platform still runs v1.2.9: 'previous' of
    # that would be v1.2.8, one release too far back.
    result = gate(pytester, healthy, "--expect-version", "v1.3.0", "--rollback-on-failure")

    assert result.ret == 18, result.stdout.str()
    assert healthy.live_version() == "v1.2.9" and healthy.restarts() == 0
    result.stdout.fnmatch_lines(
        [
            "*deploy gate FAILED for v1.3.0; the automatic rollback did NOT happen or failed: preflight refused the "
            "rollback: deploy-landed: the platform runs v1.2.9, not the deployed v1.3.0*",
            "exit code 18: *",
        ]
    )
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] == "preflight-refused"
    assert set(rows(evidence, "reverify").values()) == {"skipped"}


def test_a_rollback_to_a_version_that_fails_verify_too(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad_too = (
        Release("v1.2.8"),
        Release("v1.2.9", failing_paths=("/api/orders",)),
        Release("v1.3.0", failing_paths=("/api/orders",)),
    )
    demo = make_deployment(tmp_path / "deploy", releases=bad_too)
    deployment.start(demo.layout)
    try:
        result = gate(pytester, demo, "--expect-version", "v1.3.0", "--rollback-on-failure", "-k", "not latency")
        assert demo.live_version() == "v1.2.9"
    finally:
        deployment.stop(demo.layout)

    assert result.ret == 20, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*deploy gate FAILED for v1.3.0; rolled back from v1.3.0 to v1.2.9 automatically, but verify after the "
            "rollback FAILED",
            "exit code 20: *",
        ]
    )
    evidence = read_evidence(pytester.path / "reports")
    assert rows(evidence, "reverify")["reverify-endpoint[/api/orders]"] == "failed"
    comparison = {c["check"]: c for c in evidence["comparisons"]}["version"]
    assert comparison["before"]["measured"]["version"] == "v1.3.0"
    assert comparison["after"]["measured"]["version"] == "v1.2.9"


def test_the_rollback_version_can_be_named_and_runs_under_xdist(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = gate(pytester, demo, "--expect-version", "v1.3.0", "--rollback-on-failure", "v1.2.8", "-n", "2")

    assert result.ret == 17, result.stdout.str()
    assert demo.live_version() == "v1.2.8"
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["rollback_on_failure"]["requested"] == "v1.2.8"
    assert set(rows(evidence, "reverify").values()) == {"passed"}
    order = [t["nodeid"].rpartition("::")[2] for t in evidence["tests"]]
    assert order.index("verify-version") < order.index("rollback-on-failure") < order.index("reverify-version")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rollback-to", "v1.2.9", "--rollback-on-failure"), "*--rollback-on-failure belongs to a deploy gate*"),
        (("--gate", "verify", "--rollback-on-failure", "tests/"), "*--rollback-on-failure 'tests/' is not a version*"),
        (("--gate", "verify", "--rollback-watch", "1m"), "*--rollback-watch watches a rollback*"),
        (("--rollback-to", "v1.2.9", "--rollback-watch", "soon"), "*--rollback-watch 'soon': expected a duration*"),
        (("--rollback-to", "v1.2.9", "--rollback-watch-interval", "1s"), "*--rollback-watch-interval needs*"),
        (
            ("--rollback-to", "v1.2.9", "--rollback-watch", "10s", "--rollback-watch-interval", "1m"),
            "*--rollback-watch-interval 1m is longer than the watch*",
        ),
        (
            ("--rollback-to", "v1.2.9", "--rollback-dry-run", "--rollback-watch", "1m"),
            "*--rollback-watch watches a rollback, which --rollback-dry-run never does*",
        ),
    ],
    ids=[
        "on-failure-without-gate",
        "on-failure-path",
        "watch-without-rollback",
        "bad-duration",
        "interval-alone",
        "interval-too-long",
        "watch-dry-run",
    ],
)
def test_options_that_would_do_nothing_are_usage_errors(
    pytester: pytest.Pytester, demo: Deployment, args: tuple[str, ...], message: str
) -> None:
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()
    assert demo.restarts() == 0
