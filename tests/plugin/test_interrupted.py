"""A run interrupted mid-rollback says exactly how far each step got."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration


def journal_has(reports: Path, step: str, status: str) -> bool:
    for journal in reports.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            if entry["step"] == step and entry["status"] == status:
                return True
    return False


def test_ctrl_c_during_restart_is_reported(demo: Deployment, tmp_path: Path) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["sleep", "60"]
    demo.write_config(data)
    reports = tmp_path / "reports"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not journal_has(reports, "restart", "started"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the restart step never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 2, output
    evidence = read_evidence(reports)
    assert evidence["exit"]["code"] == 2
    assert "did not finish" in evidence["headline"], evidence["headline"]
    assert "switch-link done" in evidence["headline"] and "restart interrupted" in evidence["headline"]
    assert "did not finish: switch-link done" in output
    # The link did move: the report must not pretend nothing changed.
    assert demo.linked_version() == "v1.2.9"


def test_sigterm_during_restart_is_reported_like_ctrl_c(demo: Deployment, tmp_path: Path) -> None:
    """A CI cancel or `timeout` sends SIGTERM: the evidence is written and the headline says so."""
    data = demo.config()
    data["targets"]["app"]["restart"] = ["sleep", "60"]
    demo.write_config(data)
    reports = tmp_path / "reports"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not journal_has(reports, "restart", "started"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the restart step never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 2, output  # pytest's "interrupted", not 143 and silence
    evidence = read_evidence(reports)
    assert evidence["exit"]["code"] == 2
    assert evidence["headline"].startswith("demo: TERMINATED (SIGTERM): rollback to v1.2.9 did not finish"), evidence
    assert "switch-link done" in evidence["headline"] and "restart interrupted" in evidence["headline"]
    assert "demo: TERMINATED (SIGTERM): rollback to v1.2.9 did not finish: switch-link done" in output
    assert journal_has(reports, "restart", "interrupted")
    assert demo.linked_version() == "v1.2.9"


def test_sigterm_after_the_rollback_never_says_verified(demo: Deployment, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    (tmp_path / "test_slow_gate.py").write_text(SLOW_VERIFY_GATE)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"),
            "test_slow_gate.py",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GATE_STARTED": str(tmp_path / "gate-started")},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "gate-started").exists():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the slow verify gate never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 2, output
    headline = read_evidence(reports)["headline"]
    assert headline.startswith("demo: TERMINATED (SIGTERM): rolled back from v1.3.0 to v1.2.9; NOT verified"), headline
    assert "; verified" not in output


# A verify gate that runs until it is stopped, saying when it has started.
SLOW_VERIFY_GATE = """
import os, time
from pathlib import Path

import pytest


@pytest.mark.gate("verify")
def test_slow_verify_check():
    Path(os.environ["GATE_STARTED"]).touch()
    time.sleep(120)
"""


def blocked_opening_a_fifo(pid: int) -> bool:
    """True while the process's main thread waits in open() for a FIFO's reader."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() == "wait_for_partner"
    except OSError:
        return False


WAIT_FOR_FIFO_GATE = """
import os, time
from pathlib import Path

import pytest


@pytest.mark.gate("verify")
def test_wait_until_the_fifo_is_in_place():
    deadline = time.monotonic() + 60
    while not list(Path(os.environ["REPORTS"]).glob("*/.evidence.json.tmp")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
"""


def test_ctrl_c_while_evidence_json_is_written_keeps_the_run_folder(demo: Deployment, tmp_path: Path) -> None:
    """evidence.json's temporary file is made a FIFO, so its writer blocks in open() until the
    signal comes: the Ctrl-C lands exactly while evidence.json is being written."""
    reports = tmp_path / "reports"
    (tmp_path / "test_wait_gate.py").write_text(WAIT_FOR_FIFO_GATE)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"),
            "test_wait_gate.py",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "REPORTS": str(reports)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (reports.is_dir() and list(reports.iterdir())):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "no run folder appeared"
            time.sleep(0.05)
        [folder] = list(reports.iterdir())
        os.mkfifo(folder / ".evidence.json.tmp")
        while not blocked_opening_a_fifo(process.pid):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "evidence.json was never written"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    # The rollback happened and was verified before the Ctrl-C: that is what the headline says; the
    # evidence is missing, so the exit code is 22, never a plain success.
    assert process.returncode == 22, output
    assert "Traceback" not in output
    assert "demo: rolled back from v1.3.0 to v1.2.9; verified" in output
    assert "not written: evidence.json was not written: interrupted while it was being written" in output
    assert sorted(p.name for p in folder.iterdir()) == ["journal.jsonl", "junit.xml", "manifest.sha256", "report.html"]
    listed = [line.partition("  ")[2] for line in (folder / "manifest.sha256").read_text().splitlines()]
    assert listed == ["journal.jsonl", "junit.xml", "report.html"]
    assert demo.linked_version() == "v1.2.9"


# Holds start-up at the point where the run exists but nothing has been checked or changed yet.
STARTUP_HOLD = """
import os, time
from pathlib import Path


def pytest_rollback_run_made(config, run):
    Path(os.environ["STARTUP_REACHED"]).write_text(run.run_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
"""


def test_sigterm_during_start_up_leaves_nothing_behind(demo: Deployment, tmp_path: Path) -> None:
    """A CI cancel a second into start-up: exit 2 (interrupted), no half-made run folder, nothing changed."""
    reports = tmp_path / "reports"
    (tmp_path / "conftest.py").write_text(STARTUP_HOLD)
    reached = tmp_path / "start-up-reached"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "STARTUP_REACHED": str(reached)},
    )
    try:
        deadline = time.monotonic() + 60
        while not reached.exists():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "start-up never reached the run"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 2, output  # interrupted: not 143 and silence, never 0
    assert "terminated by SIGTERM" in output, output
    assert not (reports / reached.read_text()).exists(), sorted(p.name for p in reports.rglob("*"))
    assert demo.linked_version() == "v1.3.0"  # nothing was changed


def test_the_disk_test_leaves_no_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 256 KB written to prove the run folder takes the evidence goes, even on Ctrl-C mid-write
    (the interrupt is injected into fsync: a real one cannot be timed to land there)."""
    from rollback_harness.plugins import harness

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        harness._write_test(tmp_path)
    assert list(tmp_path.iterdir()) == []
