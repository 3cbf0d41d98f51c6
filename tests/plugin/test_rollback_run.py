"""The plugin as users run it: pytest --rollback-to against a real demo deployment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence, run_dir

from demo import deployment
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


@pytest.mark.parametrize("version", ["$(id)", "v1.2.9;id", "v1.2.9 x"])
def test_version_that_is_not_plain_is_refused(pytester: pytest.Pytester, demo: Deployment, version: str) -> None:
    result = rollback(pytester, demo, "--rollback-to", version, "--rollback-yes")

    assert result.ret == 10
    result.stdout.fnmatch_lines(["*is not a plain version*"])
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


# Changed by the core-reliability issue: a path-like version was a preflight refusal (10) after
# pytest had already taken it as a rootdir hint; it is now a usage error before anything runs.
@pytest.mark.parametrize("version", ["../v1.2.9", "v1.2.9;rm -rf /", "v1.2.9/..", "/etc", ".", "~"])
def test_version_that_is_a_path_is_a_usage_error(pytester: pytest.Pytester, demo: Deployment, version: str) -> None:
    result = rollback(pytester, demo, "--rollback-to", version, "--rollback-yes")

    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--rollback-to * looks like a path, not a version*"])
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
    assert not (pytester.path / "reports").exists() or not any((pytester.path / "reports").iterdir())


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
    restart = data["targets"]["app"]["restart"]
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 12
    result.stdout.fnmatch_lines(["*rollback failed: restart command exited 1: false*"])
    # The headline says where things stand, read again, and the ways forward and back.
    result.stdout.fnmatch_lines(
        [
            "demo: rollback failed: restart command exited 1: false. Steps: done: switch-link; failed: restart; "
            "not started: wait-ready. Now: app is on v1.2.9; demo answers v1.3.0. To finish: run "
            "`pytest --rollback-to v1.2.9` again (it resumes from here); to go back to v1.3.0: "
            f"`pytest --rollback-to v1.3.0`, or by hand: `cd {demo.layout.root} && ln -sfn releases/v1.3.0 "
            f"{demo.layout.current_link} && false`"
        ]
    )
    folder = run_dir(pytester.path / "reports")
    journal = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    states = {e["step"]: e["status"] for e in journal}
    assert states["switch-link"] == "done" and states["restart"] == "failed" and states["rollback"] == "failed"
    outcome = read_evidence(pytester.path / "reports")["outcome"]
    assert outcome["now"] == {"platform": "v1.2.9", "service": "v1.3.0", "answers": {"v1.3.0": 5}}
    assert outcome["steps"] == {"switch-link": "done", "restart": "failed", "wait-ready": "not started"}

    # The next run (reports elsewhere) finishes it: restart and wait, the link is not switched again.
    data["targets"]["app"]["restart"] = restart
    demo.write_config(data)
    again = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports2", "--rollback-to", "v1.2.9", "--rollback-yes")
    )
    assert again.ret == 0, again.stdout.str()
    assert demo.live_version() == "v1.2.9" and demo.restarts() == 1
    again.stdout.fnmatch_lines(
        [
            f"*run {folder.name} left this rollback unfinished: done: switch-link; failed: restart; "
            "not started: wait-ready",
            "*1. restart: *",
            "*2. wait until the service answers v1.2.9 3 times in a row*",
            f"demo: finished the rollback from v1.3.0 to v1.2.9 that run {folder.name} left unfinished "
            "(done by it: switch-link; done now: restart, wait-ready); verified (7 passed); "
            "census: every serving process runs v1.2.9: 1 of 1",
        ]
    )
    evidence = read_evidence(pytester.path / "reports2")
    assert evidence["outcome"]["resumed_from"] == folder.name
    assert evidence["outcome"]["steps"] == {"switch-link": "done earlier", "restart": "done", "wait-ready": "done"}


def test_previous_after_a_failed_run_means_the_release_that_run_chose(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    data = demo.config()
    restart = data["targets"]["app"]["restart"]
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)
    assert rollback(pytester, demo, "--rollback-to", "previous", "--rollback-yes").ret == 12
    assert demo.linked_version() == "v1.2.9"
    failed = run_dir(pytester.path / "reports")
    # The failed run's reports are gone (another machine, a cleaned folder): the record still names it.
    import shutil

    shutil.rmtree(pytester.path / "reports")
    data["targets"]["app"]["restart"] = restart
    demo.write_config(data)

    result = rollback(pytester, demo, "--rollback-to", "previous", "--rollback-yes")

    # 'previous' of the moved link would be v1.2.8: it stays what the unfinished run chose.
    assert result.ret == 0, result.stdout.str()
    assert demo.linked_version() == "v1.2.9" and demo.live_version() == "v1.2.9" and demo.restarts() == 1
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["resumed_from"] == failed.name
    summaries = {t["nodeid"].rsplit("-", 2)[-1]: t["check"]["summary"] for t in evidence["tests"] if t["check"]}
    previous = next(t["check"]["summary"] for t in evidence["tests"] if t["nodeid"].endswith("previous-run"))
    assert f"its journal {failed / 'journal.jsonl'} is gone, so the live state decides" in previous
    assert "this run does: restart, wait-ready" in previous
    assert any(f"'previous' as run {failed.name} resolved it" in text for text in summaries.values()), summaries


def test_an_unreadable_record_is_said_and_the_live_state_decides(pytester: pytest.Pytester, demo: Deployment) -> None:
    (demo.layout.root / ".current.rollback.state.json").write_text('{"run_id": "2026')  # cut short by a full disk
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 0, result.stdout.str()
    previous = next(
        t["check"]["summary"]
        for t in read_evidence(pytester.path / "reports")["tests"]
        if t["nodeid"].endswith("previous-run")
    )
    assert "the record of the last run is unreadable" in previous and "is not valid JSON" in previous
    assert json.loads((demo.layout.root / ".current.rollback.state.json").read_text())["completed"]


def test_an_interrupted_verify_gate_is_not_called_passed(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(
        test_stop="""
        import pytest

        @pytest.mark.gate("verify")
        def test_engineer_presses_ctrl_c():
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess(
        *demo.harness_args(
            pytester.path / "reports", "--gate", "verify", "--expect-version", "v1.3.0", "-k", "version or ctrl_c"
        )
    )
    assert result.ret == 2
    result.stdout.fnmatch_lines(["demo: INTERRUPTED: verify gate INTERRUPTED, not passed (1 passed, 1 not finished)"])


def test_link_and_service_that_disagree_are_not_already_at_target(pytester: pytest.Pytester, demo: Deployment) -> None:
    # Someone ran `ln -sfn releases/v1.2.9 current` and no restart: the link says v1.2.9, the app v1.3.0.
    deployment.switch_release(demo.layout, "v1.2.9")
    assert demo.live_version() == "v1.3.0"

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9" and demo.restarts() == 1
    result.stdout.fnmatch_lines(
        [
            "*1. restart: *",
            "*2. wait until the service answers v1.2.9*",
            "demo: app was on v1.2.9 but the service answered v1.3.0: did restart, wait-ready; verified (7 passed); "
            "census: every serving process runs v1.2.9: 1 of 1",
        ]
    )
    evidence = read_evidence(pytester.path / "reports")
    previous = next(t for t in evidence["tests"] if t["nodeid"].endswith("preflight-previous-run"))
    assert previous["check"]["summary"] == (
        "no earlier run on record for this target; app is on v1.2.9 but demo answers v1.3.0: they disagree; "
        "this run does: restart, wait-ready"
    )


def test_missing_restart_command_is_refused_in_preflight(pytester: pytest.Pytester, demo: Deployment) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["/nonexistent/bin/restart-app", "now"]
    demo.write_config(data)

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 10
    assert demo.linked_version() == "v1.3.0"
    result.stdout.fnmatch_lines(["*restart command not found: /nonexistent/bin/restart-app*"])


def test_any_error_inside_the_rollback_is_a_failed_rollback(pytester: pytest.Pytester, demo: Deployment) -> None:
    # An argument with a NUL byte: subprocess raises ValueError, not OSError, after the link moved.
    data = demo.config()
    data["targets"]["app"]["restart"] = ["true", "a\x00b"]
    demo.write_config(data)

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 12, result.stdout.str()
    result.stdout.fnmatch_lines(["demo: rollback failed: ValueError: embedded null byte*Steps: done: switch-link*"])
    assert "Traceback" not in result.stdout.str()


MOVE_LINK_GATE = """
import os, pytest

@pytest.mark.gate("preflight")
def test_a_deploy_lands_meanwhile():
    # Runs after the runbook's own preflight read the link: a deploy moves it to v1.2.8.
    os.symlink("releases/v1.2.8", {tmp!r})
    os.replace({tmp!r}, {link!r})
"""


def test_a_deploy_between_preflight_and_the_switch_is_a_conflict(pytester: pytest.Pytester, demo: Deployment) -> None:
    link = str(demo.layout.current_link)
    pytester.makepyfile(test_deploy=MOVE_LINK_GATE.format(tmp=link + ".deploy", link=link))

    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 14, result.stdout.str()
    assert demo.linked_version() == "v1.2.8" and demo.restarts() == 0
    result.stdout.fnmatch_lines(
        [
            f"demo: conflict: {link} changed after this run read it: it was releases/v1.3.0, it is now "
            "releases/v1.2.8 (another deploy or run moved it); this run stopped before writing; nothing was changed",
            "exit code 14: conflict*",
        ]
    )
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] == "conflict"
    # Nothing was started, so the next run has nothing to finish.
    assert not (demo.layout.root / ".current.rollback.state.json").exists()


def test_a_deploy_while_the_prompt_waits_is_a_conflict(demo: Deployment, tmp_path: Path) -> None:
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        ["-m", "pytest", *demo.harness_args(tmp_path / "reports", "--rollback-to", "v1.2.9")],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=120,
    )
    child.expect_exact("Proceed with rollback of demo from v1.3.0 to v1.2.9? (yes/no)")
    deployment.switch_release(demo.layout, "v1.2.8")  # the deploy lands while the engineer reads
    child.sendline("yes")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 14, child.before
    assert demo.linked_version() == "v1.2.8" and demo.restarts() == 0
    assert read_evidence(tmp_path / "reports")["outcome"]["status"] == "conflict"


def test_an_empty_version_is_a_usage_error(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to=", "--rollback-yes")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--rollback-to needs a version*"])
    assert demo.linked_version() == "v1.3.0"


def test_deselecting_every_verify_gate_is_refused(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes", "-k", "not verify")

    assert result.ret == 4
    result.stderr.fnmatch_lines(["*deselected every verify gate: a rollback must be verified, nothing was changed*"])
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


@pytest.mark.parametrize(
    "selection",
    [
        ["-k", "not verify-version"],
        ["-k", "not replicas"],
        ["--deselect", "rollback.toml::verify-replicas"],
    ],
    ids=["k-version", "k-replicas", "deselect-replicas"],
)
def test_deselecting_the_answers_or_the_census_is_refused_before_any_change(
    pytester: pytest.Pytester, demo: Deployment, selection: list[str]
) -> None:
    """Scenario 35: a rollback is verified by the service's answers and the platform's census; a
    user test in verify checks neither, so neither can be left out."""
    pytester.makepyfile(test_user="import pytest\n\n@pytest.mark.gate('verify')\ndef test_user_gate():\n    pass\n")
    result = rollback(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes", *selection)

    assert result.ret == 4, result.stdout.str()
    result.stderr.fnmatch_lines(["*deselected verify-*: a rollback is verified only when*nothing was changed*"])
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


def test_with_xdist_deselecting_the_census_is_never_a_success(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = pytester.runpytest_subprocess(
        *demo.harness_args(
            pytester.path / "reports", "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes", "-k", "not replicas"
        )
    )
    assert result.ret == 13, result.stdout.str()  # rolled back, but not verified: verify failed


def test_with_xdist_a_rollback_nobody_asked_for_is_not_a_success(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = pytester.runpytest_subprocess(
        *demo.harness_args(
            pytester.path / "reports", "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes", "-k", "not verify"
        )
    )
    assert result.ret == 12
    result.stdout.fnmatch_lines(["demo: rollback to v1.2.9 was NOT attempted (no selected test needed it)"])
    assert demo.linked_version() == "v1.3.0"


def test_a_rollback_with_no_verify_gate_run_is_not_verified(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makepyfile(test_user="def test_needs_outcome(rollback_outcome):\n    assert rollback_outcome\n")
    result = pytester.runpytest_subprocess(
        *demo.harness_args(
            pytester.path / "reports", "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes", "-k", "needs_outcome"
        )
    )
    assert result.ret == 13
    assert demo.linked_version() == "v1.2.9"
    result.stdout.fnmatch_lines(
        ["demo: rolled back from v1.3.0 to v1.2.9; NOT verified: the verify gate was deselected or skipped*"]
    )


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
    result.assert_outcomes(passed=7)


def test_gate_preflight_changes_nothing(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--gate", "preflight", "--rollback-to", "v1.2.9")
    assert result.ret == 0
    result.assert_outcomes(passed=6)  # five findings, and previous-run (added by the resume work)
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
    assert len(evidence["tests"]) == 6 + 7 + 7 + 6 + 6  # preflight, baseline and verify (with the census), users' tests
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
    assert len(gates) == 7 and len({t["worker"] for t in gates}) == 1
    # Each check run once, by the one worker that ran the gates: health gathers its 59 answers,
    # then 59 more after verify's settle time (the log lags: poll).
    deadline = time.monotonic() + 10
    while (served := demo.served(until='"GET /api/orders ')).count('"GET /health ') < 118:
        assert time.monotonic() < deadline, served.count('"GET /health ')
        time.sleep(0.05)
    # /api/orders answers 500: its check stops at the first wrong answer (1 or 2 asked, 2 in flight at once).
    orders = next(t for t in gates if t["check"]["name"] == "endpoint[/api/orders]")["check"]["measured"]
    assert served.count('"GET /api/orders ') == orders["attempts"] <= 2 and served.count('"GET /health ') == 118


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


def test_a_revision_number_is_refused_for_a_symlink_target(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to", "revision:2", "--rollback-yes")

    assert result.ret == 10
    result.stdout.fnmatch_lines(
        [
            "*'revision:2' names a revision number, which a 'symlink' target does not have: "
            "use a plain version (e.g. v1.2.9) or 'previous'*"
        ]
    )
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
