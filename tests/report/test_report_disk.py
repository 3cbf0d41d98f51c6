"""Evidence that survives: a report folder that cannot be written is refused before any change,
and one that fills up or turns read-only after the rollback keeps the journal, the true headline
and the true exit code, and says which file could not be written and why.

The file systems are real: a small tmpfs mounted for the test (skipped, with the reason, where
mounting is not permitted), filled up or remounted read-only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence
from mounts import fill, remount_read_only, small_tmpfs

pytestmark = pytest.mark.integration

# A verify gate that does to the report disk what a log burst or an ops mistake would do.
DISK_GATE = """
import errno, os, subprocess
from pathlib import Path

import pytest


@pytest.mark.gate("verify")
def test_the_report_disk_changes_under_us():
    mount = Path(os.environ["REPORT_MOUNT"])
    if os.environ["REPORT_DISK"] == "full":
        with (mount / "filler").open("wb", buffering=0) as handle:
            while True:
                try:
                    handle.write(bytes(4096))
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, timeout=30)
"""


@pytest.fixture
def report_mount(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "report-disk", size="1m") as mountpoint:
        yield mountpoint


def run_folders(mount: Path) -> list[Path]:
    return [p for p in mount.iterdir() if p.is_dir()]


def test_a_full_report_disk_is_refused_before_any_change(
    pytester: pytest.Pytester, demo: Deployment, report_mount: Path
) -> None:
    fill(report_mount)

    result = pytester.runpytest(*demo.harness_args(report_mount, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --rollback-report-dir: cannot write in {report_mount}/*: "
            "No space left on device (ENOSPC); nothing was changed*"
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
    assert run_folders(report_mount) == []  # no empty run folder left behind


def test_a_read_only_report_disk_is_refused_before_any_change(
    pytester: pytest.Pytester, demo: Deployment, report_mount: Path
) -> None:
    remount_read_only(report_mount)

    result = pytester.runpytest(*demo.harness_args(report_mount, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --rollback-report-dir: cannot create {report_mount}/*: "
            "Read-only file system (EROFS); nothing was changed*"
        ]
    )
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


@pytest.mark.parametrize(
    ("disk", "reason"), [("full", "No space left on device (ENOSPC)"), ("read-only", "Read-only file system (EROFS)")]
)
def test_a_report_disk_that_fails_after_the_rollback_keeps_the_journal_and_the_truth(
    pytester: pytest.Pytester,
    demo: Deployment,
    report_mount: Path,
    monkeypatch: pytest.MonkeyPatch,
    disk: str,
    reason: str,
) -> None:
    monkeypatch.setenv("REPORT_MOUNT", str(report_mount))
    monkeypatch.setenv("REPORT_DISK", disk)
    pytester.makepyfile(test_disk_gate=DISK_GATE)

    result = pytester.runpytest(*demo.harness_args(report_mount, "--rollback-to", "v1.2.9", "--rollback-yes"))

    output = result.stdout.str() + result.stderr.str()
    # The rollback happened and was verified: the headline says so; the evidence is missing: the
    # exit code says that, never a plain success (issue 17, E1).
    assert result.ret == 22, output
    assert demo.live_version() == "v1.2.9"
    assert "Traceback" not in output and "INTERNALERROR" not in output
    result.stdout.fnmatch_lines(
        [
            "*= rollback =*",
            "demo: rolled back from v1.3.0 to v1.2.9; verified (*)*",  # the census follows when verify passed
            "*",
            "exit code 22: done and verified, but evidence could not be written*",
            f"not written: evidence.json was not written: {reason}",
            f"not written: junit.xml was not written: {reason}",
            "not written: report.html was not written: *",
            "evidence: */evidence.json was NOT written",
        ]
    )
    result.stdout.fnmatch_lines([f"[[]rollback[]] manifest.sha256 was not written: {reason}"])
    assert "Generated html report" not in output  # pytest-html would announce a report that is not there
    # The run folder and its journal survive; no half-written file passes for evidence.
    [folder] = run_folders(report_mount)
    steps = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    assert {"step": "outcome", "status": "rolled-back"}.items() <= steps[-1].items()
    leftovers = {p.name for p in folder.iterdir()}
    # run.lock is removed at the end when the folder can still change (not when read-only).
    assert leftovers - {"run.lock"} == {"journal.jsonl"}, leftovers


def test_a_report_disk_that_fills_during_the_restart_stops_the_rollback_truthfully(
    pytester: pytest.Pytester, demo: Deployment, report_mount: Path
) -> None:
    """The journal's disk fills while the app restarts: the restart's end is kept in memory, the
    next step is not started unjournaled, and the run says the rollback stopped there (exit 12)."""
    data = demo.config()
    restart = data["targets"]["app"]["restart"]
    filler = f'head -c 4000000 /dev/zero > {report_mount / "filler"} 2>/dev/null; exec "$@"'
    data["targets"]["app"]["restart"] = ["sh", "-c", filler, "sh", *restart]
    demo.write_config(data)

    result = pytester.runpytest(*demo.harness_args(report_mount, "--rollback-to", "v1.2.9", "--rollback-yes"))

    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 12, output  # the rollback did not finish: not 13 (a harness error), never 0
    assert "Traceback" not in output and "INTERNALERROR" not in output
    assert demo.linked_version() == "v1.2.9"  # the link did move: the report must not say nothing changed
    result.stdout.fnmatch_lines(
        [
            "demo: rollback failed: cannot write the journal */journal.jsonl: No space left on device (ENOSPC). "
            "Steps: done: switch-link, restart; not started: wait-ready. Now: app is on v1.2.9;*"
        ]
    )
    [folder] = run_folders(report_mount)
    # The disk may have taken part of the last line: the journal's reader skips it, so does this.
    lines = (folder / "journal.jsonl").read_text().splitlines()
    steps = [json.loads(line) for line in lines if line.endswith("}")]
    assert len(steps) >= len(lines) - 1
    states = {(s["step"], s["status"]) for s in steps}
    assert ("switch-link", "done") in states and ("restart", "started") in states
    assert ("wait-ready", "started") not in states  # nothing started that the journal could not record


def test_evidence_json_gives_the_exit_code_the_run_ends_with_when_a_later_file_fails(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    """evidence.json is written first; JUnit XML then fails (a path no one can write): the run exits
    22, and evidence.json says 22 and why, not the 0 it held a moment before."""
    reports = pytester.path / "reports"
    junit = "/proc/no-such-folder/junit.xml"  # /proc takes no new folders, even from root

    result = pytester.runpytest(
        *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes", f"--junitxml={junit}")
    )

    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 22, output
    assert "Traceback" not in output and "INTERNALERROR" not in output
    evidence = read_evidence(reports)
    assert evidence["exit"]["code"] == 22, evidence["exit"]
    assert any("junit.xml was not written" in line for line in evidence["not_written"]), evidence["not_written"]
    assert evidence["headline"].startswith("demo: rolled back from v1.3.0 to v1.2.9; verified")


# A preflight gate that passes after turning the report disk read-only: the plan is the next thing
# written. (A full disk cannot stand in here: the journal's last block keeps room for a few lines.)
LOSE_THE_DISK_AT_PREFLIGHT = """
import os, subprocess

import pytest


@pytest.mark.rollback_gate("preflight")
def test_the_report_disk_turns_read_only():
    subprocess.run(["mount", "-o", "remount,ro", os.environ["REPORT_MOUNT"]], check=True, timeout=30)
"""


def test_a_report_disk_lost_before_the_plan_is_written_changes_nothing(
    pytester: pytest.Pytester, demo: Deployment, report_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing can be recorded any more (the run's lock, the plan, the consent): nothing is started, and
    the run says so (exit 12) instead of a traceback per verify item."""
    monkeypatch.setenv("REPORT_MOUNT", str(report_mount))
    pytester.makepyfile(test_disk=LOSE_THE_DISK_AT_PREFLIGHT)

    result = pytester.runpytest(*demo.harness_args(report_mount, "--rollback-to", "v1.2.9", "--rollback-yes"))

    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 12, output
    assert "Traceback" not in output and "INTERNALERROR" not in output
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0  # nothing was changed
    result.stdout.fnmatch_lines(
        [
            # The run's own lock is the first thing written after preflight; the plan comes next.
            "demo: rollback not attempted: cannot take the run's lock */run.lock: Read-only file system "
            "(EROFS); nothing was changed*"
        ]
    )
