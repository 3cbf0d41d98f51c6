"""-n N changes how fast, never what: the runbook runs once, in order, and tests see the same system."""

from __future__ import annotations

from pathlib import Path

import pytest
from deployments import Deployment, read_evidence

from rollback_harness.plugins.progress import PROGRESS_FILE, WorkerProgress
from rollback_harness.rollback.evidence import Redactor

USER_TESTS = {
    "test_gates": """
        import pytest

        def version(http, base):
            return http.get(base + "/version").text.strip()

        @pytest.mark.gate("preflight")
        def test_before_any_change(rollback_http, rollback_base_url):
            assert version(rollback_http, rollback_base_url) == "v1.3.0"

        @pytest.mark.gate("verify")
        @pytest.mark.parametrize("n", range(3))
        def test_after_the_rollback(n, rollback_http, rollback_base_url):
            assert version(rollback_http, rollback_base_url) == "v1.2.9"
        """,
    # Tests without a gate run after the verify gate: they see the rolled-back service.
    "test_smoke_a": """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_a(n, rollback_http, rollback_base_url):
            assert rollback_http.get(rollback_base_url + "/version").text.strip() == "v1.2.9"
        """,
    "test_smoke_b": """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_b(n, rollback_http, rollback_base_url):
            assert rollback_http.get(rollback_base_url + "/version").text.strip() == "v1.2.9"
        """,
}


@pytest.mark.integration
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_same_outcome_with_and_without_xdist(pytester: pytest.Pytester, demo: Deployment, xdist: list[str]) -> None:
    pytester.makepyfile(**USER_TESTS)
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        *demo.harness_args(reports, *xdist, "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 0, result.stdout.str()
    # 5 preflight findings + 1 user preflight, 7 baseline (2 measured failures), 7 + 3 verify, 8 others.
    result.assert_outcomes(passed=30, xfailed=2)
    assert demo.restarts() == 1
    # The plan and the rollback's progress reach the terminal, also when a worker runs the runbook.
    result.stdout.fnmatch_lines(["*rollback plan for demo: v1.3.0 -> v1.2.9*", "*verify: running 7 checks*"])
    evidence = read_evidence(reports)
    gates = sorted((t for t in evidence["tests"] if t["gate"]), key=lambda t: t["start"])
    assert len({t["worker"] for t in gates}) == 1
    order = [t["gate"] for t in gates]
    assert order == sorted(order, key=["preflight", "baseline", "verify"].index)
    # No scheduling detail leaks into the names.
    assert all("@" not in t["nodeid"] for t in evidence["tests"])
    # The run folder holds evidence only: the scheduler's and the progress relay's files are gone.
    assert not [p.name for p in next(reports.iterdir()).iterdir() if p.name.startswith(".")]


@pytest.mark.integration
def test_the_users_dist_mode_is_kept_for_other_tests(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(**USER_TESTS)
    reports = pytester.path / "reports"
    args = demo.harness_args(reports, "-n", "2", "--dist", "loadfile", "--rollback-to", "v1.2.9", "--rollback-yes")
    result = pytester.runpytest_subprocess(*args)

    assert result.ret == 0, result.stdout.str()
    tests = read_evidence(reports)["tests"]
    for name in ("test_smoke_a.py", "test_smoke_b.py"):
        workers = {t["worker"] for t in tests if t["nodeid"].startswith(name)}
        assert len(workers) == 1, (name, workers)  # --dist loadfile: one file, one worker


@pytest.mark.integration
def test_a_worker_lost_mid_runbook_hands_the_rest_of_the_gates_on(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(
        test_crash="""
        import os
        import pytest

        @pytest.mark.gate("verify")
        def test_a_crash_after_the_rollback(rollback_outcome):
            os._exit(3)

        @pytest.mark.gate("verify")
        def test_still_runs(rollback_outcome):
            assert rollback_outcome.to_version == "v1.2.9"

        def test_plain():
            pass
        """
    )
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        *demo.harness_args(reports, "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 13, result.stdout.str()  # the crashed gate is a failed verify gate
    result.stdout.fnmatch_lines(["*crashed while running*test_a_crash_after_the_rollback*"])
    assert demo.restarts() == 1  # the rollback is journaled: the next worker does not do it again
    outcomes = {t["nodeid"]: t["outcome"] for t in read_evidence(reports)["tests"]}
    assert outcomes["test_crash.py::test_still_runs"] == "passed"
    assert outcomes["test_crash.py::test_plain"] == "passed"


def test_the_workers_progress_file_holds_no_secret(tmp_path: Path) -> None:
    # It sits in the run folder while the run lasts (and stays there if the controller is killed).
    progress = WorkerProgress(tmp_path, "gw0", Redactor(["hunter2-token"]).text)
    progress.write("calling https://deploy.example/hook?token=hunter2-token")

    written = (tmp_path / PROGRESS_FILE).read_text()
    assert "hunter2-token" not in written and "hook?token=" in written
