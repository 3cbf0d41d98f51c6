"""Crash and resume (scenario 26): the harness is SIGKILLed at every step boundary of the demo
rollback, run again, and finishes the rollback with nothing done twice.

The harness runs as a real subprocess. The test watches the run's journal and kills the process
when the wanted entry appears. So that the kill lands where it is aimed, the killed run's restart
command is wrapped (tests/helpers/hold_restart.py): ``before`` holds the restart in flight, and it
never runs once the harness is killed; ``after`` reports the restart done at once but restarts the
app only when the test opens the gate, so the harness is still waiting for readiness when it is
killed. The rerun uses the plain restart command.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, read_evidence, run_dir

pytestmark = pytest.mark.integration

HOLD = Path(__file__).parent.parent / "helpers" / "hold_restart.py"

# (step, status that triggers the kill, how the restart is held)
BOUNDARIES = [
    ("switch-link", "started", "before"),
    ("switch-link", "done", "before"),
    ("restart", "started", "before"),
    ("restart", "done", "after"),
    ("wait-ready", "started", "after"),
    ("wait-ready", "done", "open"),
]


def journal(folder: Path) -> list[dict[str, Any]]:
    path = folder / "journal.jsonl"
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written
    return entries


def harness(demo: Deployment, reports: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes")]


def kill_at(demo: Deployment, workdir: Path, reports: Path, step: str, status: str) -> Path:
    """Run the harness and SIGKILL it as soon as its journal records ``step`` ``status``."""
    process = subprocess.Popen(
        harness(demo, reports), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            folders = [p for p in reports.glob("*") if p.is_dir()]
            if folders and any(e["step"] == step and e["status"] == status for e in journal(folders[0])):
                break
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, f"the journal never recorded {step} {status}"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        process.kill()
        process.communicate()
    return folders[0]


def states(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["step"]: e["status"] for e in entries if e["status"] in ("started", "done", "failed", "skipped")}


@pytest.mark.parametrize(("step", "status", "hold"), BOUNDARIES, ids=[f"{s}-{t}" for s, t, _ in BOUNDARIES])
def test_killed_at_a_step_boundary_the_next_run_finishes_with_nothing_done_twice(
    demo: Deployment, tmp_path: Path, step: str, status: str, hold: str
) -> None:
    gate = tmp_path / "gate"
    if hold == "open":
        gate.touch()
    data = demo.config()
    restart = data["targets"]["app"]["restart"]
    held = "after" if hold == "after" else "before"
    data["targets"]["app"]["restart"] = [sys.executable, str(HOLD), held, str(gate), *restart]
    demo.write_config(data)

    killed = kill_at(demo, tmp_path, tmp_path / "reports1", step, status)
    # A held restart now never runs ("before"), or restarts the app in the background ("after").
    if hold == "after":
        gate.touch()
    else:
        (tmp_path / "gate.cancel").touch()
    data["targets"]["app"]["restart"] = restart
    demo.write_config(data)
    killed_states = states(journal(killed))
    assert killed_states.get(step) in ((status, "done") if status == "started" else ("done",))
    # The kill landed where it was aimed: a held restart never finished; a restart reported done
    # without restarting leaves the run waiting for readiness.
    if hold == "before":
        assert killed_states.get("restart") in (None, "started"), killed_states
    if hold == "after":
        assert killed_states["restart"] == "done" and killed_states.get("wait-ready") in (None, "started")
    record = json.loads((demo.layout.root / ".current.rollback.state.json").read_text())
    assert record["run_id"] == killed.name

    # The rerun writes its reports elsewhere: it finds the killed run through the target's record.
    rerun = subprocess.run(
        harness(demo, tmp_path / "reports2"), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    assert demo.linked_version() == "v1.2.9"
    assert demo.live_version() == "v1.2.9"

    # Nothing done twice: the restart ran once in all; the link was switched by one run only.
    assert demo.restarts() == 1, output
    rerun_entries = journal(run_dir(tmp_path / "reports2"))
    rerun_states = states(rerun_entries)
    if killed_states.get("restart") == "done":
        assert rerun_states.get("restart") in ("skipped", None), rerun_states
    else:
        assert rerun_states["restart"] == "done"
    switches = [
        e
        for e in journal(killed) + rerun_entries
        if e["step"] == "switch-link" and e["status"] == "done" and e.get("note") != "already pointing there"
    ]
    found_switched = [
        e
        for e in rerun_entries
        if e["step"] == "switch-link" and e["status"] == "done" and e.get("note") == "already pointing there"
    ]
    if status == "started" and not switches:
        # The kill landed after the link was swapped (a rename takes microseconds) but before the
        # journal recorded it: the rerun found the link already switched and did not switch it again.
        assert killed_states.get("switch-link") == "started" and found_switched, rerun_entries
    else:
        assert len(switches) == 1, switches
    if killed_states.get("switch-link") == "done":
        # Journaled as skipped when resumed; not journaled at all when the killed run had completed.
        assert rerun_states.get("switch-link") == ("skipped" if not record["completed"] else None)

    # The rerun says what it found: the killed run, by name, and how far it had got.
    evidence = read_evidence(tmp_path / "reports2")
    previous = next(t for t in evidence["tests"] if t["nodeid"].endswith("preflight-previous-run"))
    summary = previous["check"]["summary"]
    assert killed.name in summary, summary
    assert evidence["exit"]["code"] == 0
    if record["completed"]:
        # Killed after its last step was recorded (only possible at the last boundary).
        assert step == "wait-ready" and "completed" in summary, summary
        return
    assert "did not finish" in summary, summary
    if killed_states.get("switch-link") == "done":
        assert "done: switch-link" in summary, summary
    assert evidence["outcome"]["resumed_from"] == killed.name
    assert evidence["outcome"]["from_version"] == "v1.3.0"
    assert killed.name in evidence["headline"], evidence["headline"]
    assert f"run {killed.name} left this rollback unfinished" in output


def test_the_record_beside_the_lock_says_the_rollback_completed(demo: Deployment, tmp_path: Path) -> None:
    result = subprocess.run(harness(demo, tmp_path / "reports"), cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    record = json.loads((demo.layout.root / ".current.rollback.state.json").read_text())
    folder = run_dir(tmp_path / "reports")
    assert (record["run_id"], record["from"], record["to"]) == (folder.name, "v1.3.0", "v1.2.9")
    assert record["journal"] == str(folder / "journal.jsonl")
    assert record["completed"]


def test_killed_between_the_swap_and_its_journal_entry_the_rerun_does_not_switch_again(
    demo: Deployment, tmp_path: Path
) -> None:
    """The window a kill at "switch-link started" can land in on a busy machine, made certain: the
    link is already swapped, and the journal never recorded it."""
    gate = tmp_path / "gate"
    data = demo.config()
    restart = data["targets"]["app"]["restart"]
    data["targets"]["app"]["restart"] = [sys.executable, str(HOLD), "before", str(gate), *restart]
    demo.write_config(data)
    killed = kill_at(demo, tmp_path, tmp_path / "reports1", "switch-link", "done")
    (tmp_path / "gate.cancel").touch()
    data["targets"]["app"]["restart"] = restart
    demo.write_config(data)
    # Drop the entry the kill would have prevented: the rename happened, its "done" was never written.
    path = killed / "journal.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not ('"switch-link"' in line and '"done"' in line)]
    assert len(kept) == len(lines) - 1
    path.write_text("".join(kept))
    assert demo.linked_version() == "v1.2.9"

    rerun = subprocess.run(
        harness(demo, tmp_path / "reports2"), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    assert demo.live_version() == "v1.2.9"
    assert demo.restarts() == 1, output
    switch = [e for e in journal(run_dir(tmp_path / "reports2")) if e["step"] == "switch-link"]
    assert switch[-1]["status"] == "done" and switch[-1]["note"] == "already pointing there", switch
    evidence = read_evidence(tmp_path / "reports2")
    assert evidence["outcome"]["resumed_from"] == killed.name
    assert evidence["outcome"]["from_version"] == "v1.3.0"
