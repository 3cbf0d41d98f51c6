"""The plugin as users run it: pytest --rollback-to against a real demo deployment."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from deployments import Deployment, read_evidence, run_dir

from rollback_harness.rollback.evidence import verify_manifest

pytestmark = pytest.mark.integration


def rollback(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))


def test_rollback_end_to_end(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 0, result.stdout.str()
    assert demo.linked_version() == "v1.2.9"
    assert demo.live_version() == "v1.2.9"
    assert demo.restarts() == 1
    result.stdout.fnmatch_lines(["*demo: rolled back from v1.3.0 to v1.2.9; verified*", "exit code 0: success"])

    evidence = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] == "rolled-back"
    assert (evidence["from_version"], evidence["to_version"]) == ("v1.3.0", "v1.2.9")
    comparisons = {c["check"]: c for c in evidence["comparisons"]}
    assert comparisons["version"]["before"]["measured"]["version"] == "v1.3.0"
    assert comparisons["version"]["after"]["measured"]["version"] == "v1.2.9"
    assert comparisons["endpoint[/api/orders]"]["before"]["status"] == "failed"
    assert comparisons["endpoint[/api/orders]"]["after"]["status"] == "passed"
    assert comparisons["latency[/]"]["before"]["status"] == "failed"
    assert comparisons["latency[/]"]["after"]["status"] == "passed"
    steps = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    assert steps == ["rollback", "switch-link", "restart", "wait-ready"]
    assert evidence["plan"] and "releases/v1.2.9" in evidence["plan"][0]

    folder = run_dir(pytester.path / "reports")
    assert evidence["artifacts"]["junit"] == "junit.xml"
    junit = (folder / "junit.xml").read_text()
    assert 'name="verify-latency[/]"' in junit and 'failures="0"' in junit
    assert verify_manifest(folder) == []
    (folder / "evidence.json").write_text("{}")
    assert verify_manifest(folder) == ["evidence.json: changed"]


def test_phases_run_in_order_and_rollback_happens_once(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(
        test_user_gates="""
        import pytest

        @pytest.mark.gate("verify")
        def test_verify_sees_target(rollback_http, rollback_base_url):
            assert rollback_http.get(rollback_base_url + "/version").text.strip() == "v1.2.9"

        def test_ungated_runs_last(rollback_http, rollback_base_url):
            assert rollback_http.get(rollback_base_url + "/version").text.strip() == "v1.2.9"

        @pytest.mark.gate("preflight")
        def test_preflight_sees_live(rollback_http, rollback_base_url):
            assert rollback_http.get(rollback_base_url + "/version").text.strip() == "v1.3.0"

        @pytest.mark.gate("verify")
        def test_second_verify(rollback_outcome):
            assert rollback_outcome.to_version == "v1.2.9"
        """
    )
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes", "-v")

    assert result.ret == 0, result.stdout.str()
    assert demo.restarts() == 1
    ran = [r.nodeid for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    phases = [
        "preflight" if "preflight" in n else "baseline" if "baseline" in n else "verify" if "verify" in n else "other"
        for n in ran
    ]
    assert phases == sorted(phases, key=["preflight", "baseline", "verify", "other"].index), ran
    assert ran[-1].endswith("test_ungated_runs_last")


def test_unknown_version_is_refused_before_any_change(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "v9.9.9", "--rollback-yes")

    assert result.ret == 10
    assert demo.linked_version() == "v1.3.0"
    assert demo.restarts() == 0
    result.stdout.fnmatch_lines(["*v9.9.9 is not in history; available: v1.2.8, v1.2.9, v1.3.0*"])
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["exit"]["code"] == 10
    assert evidence["outcome"]["status"] == "preflight-refused"


@pytest.mark.parametrize("version", ["../v1.2.9", "v1.2.9;rm -rf /", "v1.2.9/..", "$(id)"])
def test_version_that_is_not_plain_is_refused(pytester: pytest.Pytester, demo: Deployment, version: str) -> None:
    result = rollback(pytester, demo, "--rollback-to", version, "--rollback-yes")

    assert result.ret == 10
    result.stdout.fnmatch_lines(["*is not a plain version*"])
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


def test_failing_user_preflight_gate_refuses(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(
        test_gate="""
        import pytest

        @pytest.mark.gate("preflight")
        def test_change_freeze_is_off():
            assert False, "change freeze in force"
        """
    )
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 10
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
    result.stdout.fnmatch_lines(["*preflight refused*test_change_freeze_is_off failed*"])


def test_dry_run_changes_nothing(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "previous", "--rollback-dry-run")

    assert result.ret == 0, result.stdout.str()
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
    result.stdout.fnmatch_lines(
        ["*rollback plan for demo: v1.3.0 -> v1.2.9*", "*1. point *current at releases/v1.2.9*"]
    )
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] == "dry-run"
    assert {t["outcome"] for t in evidence["tests"] if t["gate"] == "verify"} == {"skipped"}


def test_without_tty_or_yes_refuses(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = pytester.runpytest_subprocess(*demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9"))

    assert result.ret == 11
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
    result.stdout.fnmatch_lines(["*no TTY to ask on: pass --rollback-yes*"])


def test_already_at_target_changes_nothing(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "v1.3.0", "--rollback-yes")

    assert demo.restarts() == 0
    result.stdout.fnmatch_lines(["*already at target v1.3.0: nothing changed*"])
    # v1.3.0 is the bad release: verify runs and fails on it.
    assert result.ret == 13


def test_failed_restart_is_a_failed_rollback_with_the_state_reported(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 12
    result.stdout.fnmatch_lines(["*rollback failed: restart command exited 1: false*"])
    journal = [
        json.loads(line) for line in (run_dir(pytester.path / "reports") / "journal.jsonl").read_text().splitlines()
    ]
    states = {e["step"]: e["status"] for e in journal}
    assert states["switch-link"] == "done" and states["restart"] == "failed" and states["rollback"] == "failed"


def test_verify_failure_after_rollback(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes", "--expect-version", "x")
    assert result.ret == 4  # --expect-version belongs to --gate verify

    result = rollback(pytester, demo, "--gate", "verify", "--expect-version", "v1.3.0")
    assert result.ret == 13
    result.stdout.fnmatch_lines(
        ["*_ verify-endpoint[[]/api/orders[]] _*", "GET /api/orders answered 500, expected 200"]
    )
    assert demo.restarts() == 0


def test_gate_verify_passes_on_a_good_version(pytester: pytest.Pytester, demo: Deployment) -> None:
    assert rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes").ret == 0
    result = rollback(pytester, demo, "--gate", "verify", "--expect-version", "v1.2.9")
    assert result.ret == 0
    result.assert_outcomes(passed=6)


def test_gate_preflight_changes_nothing(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--gate", "preflight", "--rollback-to", "v1.2.9")
    assert result.ret == 0
    result.assert_outcomes(passed=5)
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


def test_with_xdist_the_rollback_happens_once(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.gate("verify")
        @pytest.mark.parametrize("n", range(6))
        def test_verify(n, rollback_outcome):
            assert rollback_outcome.to_version == "v1.2.9"

        @pytest.mark.parametrize("n", range(6))
        def test_plain(n):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        *demo.harness_args(pytester.path / "reports", "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes")
    )
    assert result.ret == 0, result.stdout.str()
    assert demo.restarts() == 1
    evidence = read_evidence(pytester.path / "reports")
    assert len(evidence["tests"]) == 5 + 6 + 6 + 6 + 6
    # Every gate ran on one worker, in runbook order; plain tests spread over both.
    gates = [t for t in evidence["tests"] if t["gate"]]
    assert len({t["worker"] for t in gates}) == 1, {t["nodeid"]: t["worker"] for t in gates}
    order = [t["gate"] for t in sorted(gates, key=lambda t: t["start"])]
    assert order == sorted(order, key=["preflight", "baseline", "verify"].index)
    assert {t["worker"] for t in evidence["tests"]} == {"gw0", "gw1"}
    assert (run_dir(pytester.path / "reports") / "report.html").is_file()


def test_deselected_checks_do_not_run(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--gate", "verify", "--expect-version", "v1.3.0", "-k", "version or health")

    assert result.ret == 0, result.stdout.str()
    evidence = read_evidence(pytester.path / "reports")
    assert sorted(t["check"]["name"] for t in evidence["tests"]) == ["health", "version"]
    # The app's own access log: no latency samples, no endpoint probes were sent.
    served = demo.served(until='"GET /health ')
    assert '"GET /health ' in served and '"GET / ' not in served and '"GET /api/orders' not in served


def test_gate_verify_with_xdist_probes_each_check_once(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(test_plain="import pytest\n@pytest.mark.parametrize('n', range(4))\ndef test_plain(n): pass\n")
    result = pytester.runpytest_subprocess(
        *demo.harness_args(pytester.path / "reports", "-n", "2", "--gate", "verify", "--expect-version", "v1.2.9")
    )

    assert result.ret == 13  # v1.3.0 is live
    evidence = read_evidence(pytester.path / "reports")
    gates = [t for t in evidence["tests"] if t["gate"]]
    assert len(gates) == 6 and len({t["worker"] for t in gates}) == 1
    # Each check probed once, by the one worker that ran the gates.
    # health: consecutive = 2, then once more after verify's settle time (the log lags: poll).
    deadline = time.monotonic() + 10
    while (served := demo.served(until='"GET /api/orders ')).count('"GET /health ') < 3:
        assert time.monotonic() < deadline, served
        time.sleep(0.05)
    assert served.count('"GET /api/orders ') == 1 and served.count('"GET /health ') == 3


def test_a_version_without_its_v_finds_the_release(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "1.2.9", "--rollback-yes")

    assert result.ret == 0, result.stdout.str()
    assert demo.linked_version() == "v1.2.9"
    result.stdout.fnmatch_lines(["*rolled back from v1.3.0 to v1.2.9*"])


def test_without_pytest_html_the_evidence_is_still_written(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "-p", "no:html", "-p", "no:junitxml", "--gate", "verify", "-k", "version")

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    assert sorted(p.name for p in folder.iterdir()) == ["evidence.json", "manifest.sha256"]  # a gate journals nothing
    assert read_evidence(pytester.path / "reports")["artifacts"]["html"] is None


def test_a_service_that_is_down_is_still_rolled_back(pytester: pytest.Pytester, demo: Deployment) -> None:
    # The usual incident: the bad release crashed. Baseline records it; nothing in preflight needs it up.
    stop = [*demo.layout.restart_command[:-2], "stop", "app"]
    subprocess.run(stop, check=True, capture_output=True)

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9"
    comparisons = {c["check"]: c for c in read_evidence(pytester.path / "reports")["comparisons"]}
    assert "connection refused" in comparisons["version"]["before"]["summary"]
    assert comparisons["latency[/]"]["before"]["status"] == "inconclusive"
    assert comparisons["latency[/]"]["after"]["status"] == "passed"
