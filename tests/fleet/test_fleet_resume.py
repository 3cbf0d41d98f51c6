"""A fleet run killed mid-fleet is finished by the next run: nothing done twice, nothing left out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fleet_support import HELPERS, Fleet, evidence, journal, linked, restart_counter, restarts

pytestmark = pytest.mark.integration


def test_a_fleet_killed_mid_rollout_is_finished_by_the_next_run(fleet: Fleet, tmp_path: Path) -> None:
    gate = tmp_path / "release-b"
    held = [sys.executable, str(HELPERS / "hold_restart.py"), "before", str(gate), *restart_counter(fleet.roots["b"])]
    fleet.write(b={"restart": held})
    first, second = tmp_path / "reports1", tmp_path / "reports2"

    def command(reports: Path) -> list[str]:
        options = ["--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-parallel", "1", "--rollback-yes"]
        return [sys.executable, "-m", "pytest", *fleet.args(reports, *options)]

    process = subprocess.Popen(
        command(first), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # until b's restart is in flight (a is done; c not started)
            folders = [p for p in first.glob("*/targets/b") if p.is_dir()]
            if folders and any(e["step"] == "restart" and e["status"] == "started" for e in journal(folders[0])):
                break
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "b's restart never started"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        process.kill()
        process.communicate()
        Path(str(gate) + ".cancel").touch()  # the held restart gives up: it never ran
    killed = folders[0].parent.parent
    assert [linked(root) for root in fleet.roots.values()] == ["v1.2.9", "v1.2.9", "v1.3.0"]
    assert [restarts(root) for root in fleet.roots.values()] == [1, 0, 0]

    fleet.write()  # the plain restart again
    rerun = subprocess.run(command(second), cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert [linked(root) for root in fleet.roots.values()] == ["v1.2.9"] * 3
    # a was done and is not done again; b is finished from its restart; c is rolled back.
    assert [restarts(root) for root in fleet.roots.values()] == [1, 1, 1]
    data = evidence(second)
    states = {t["name"]: t for t in data["targets"]}
    assert states["a"]["status"] == "already-at-target", states["a"]
    assert states["b"]["outcome"]["resumed_from"] == killed.name
    assert states["b"]["outcome"]["steps"]["switch-link"] == "done earlier"
    assert states["c"]["status"] == "rolled-back"
    assert f"run {killed.name} left this rollback unfinished" in rerun.stdout


def test_a_fleet_terminated_mid_rollout_says_where_each_target_stands(fleet: Fleet, tmp_path: Path) -> None:
    gate = tmp_path / "release-b"
    held = [sys.executable, str(HELPERS / "hold_restart.py"), "before", str(gate), *restart_counter(fleet.roots["b"])]
    fleet.write(b={"restart": held})
    reports = tmp_path / "reports"
    options = ["--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-parallel", "1", "--rollback-yes"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *fleet.args(reports, *options)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            folders = [p for p in reports.glob("*/targets/b") if p.is_dir()]
            if folders and any(e["step"] == "restart" and e["status"] == "started" for e in journal(folders[0])):
                break
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "b's restart never started"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        Path(str(gate) + ".cancel").touch()

    assert process.returncode == 2, output
    assert "target a: rolled back from v1.3.0 to v1.2.9; NOT verified" in output, output
    assert "target b: did NOT finish: switch-link done, restart started" in output, output
    assert "target c: not started: nothing was changed on it" in output, output
    assert "TERMINATED (SIGTERM)" in output
    assert linked(fleet.roots["c"]) == "v1.3.0"
