"""The step journal (scenario 26): started / done / failed lines that survive a crash."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rollback_harness.rollback.journal import Journal


def test_a_step_records_started_then_done_with_its_duration(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "run" / "journal.jsonl")  # the folder is made
    with journal.step("switch-link", to="releases/v1.2.9") as step:
        time.sleep(0.02)  # a step that takes measurable time, not a wait for readiness
        step.detail["from"] = "releases/v1.3.0"
    started, done = journal.entries()
    assert (started["step"], started["status"], started["to"]) == ("switch-link", "started", "releases/v1.2.9")
    assert "duration_s" not in started
    assert (done["step"], done["status"], done["from"]) == ("switch-link", "done", "releases/v1.3.0")
    assert 0.02 <= done["duration_s"] < 5
    assert started["ts"] <= done["ts"]
    assert journal.step_states() == {"switch-link": "done"}


def test_an_exception_records_failed_and_is_reraised(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(RuntimeError, match="restart exited 3") as info, journal.step("restart") as step:
        step.detail["output"] = "boom"
        raise RuntimeError("restart exited 3")
    assert str(info.value) == "restart exited 3"
    failed = journal.entries()[-1]
    assert failed["status"] == "failed"
    assert failed["error"] == "restart exited 3"
    assert failed["output"] == "boom"
    assert failed["duration_s"] >= 0
    assert journal.step_states() == {"restart": "failed"}


def test_an_exception_without_a_message_records_its_type(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(TimeoutError), journal.step("wait-ready"):
        raise TimeoutError
    assert journal.entries()[-1]["error"] == "TimeoutError"


def test_ctrl_c_inside_a_step_records_interrupted_and_is_reraised(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(KeyboardInterrupt), journal.step("wait-ready", version="v1.2.9"):
        raise KeyboardInterrupt
    last = journal.entries()[-1]
    assert (last["status"], last["error"]) == ("interrupted", "KeyboardInterrupt")
    assert journal.step_states() == {"wait-ready": "interrupted"}


def test_each_event_is_one_json_line_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    with journal.step("switch-link"):
        # Written before the step ends: a crash now leaves "started" on disk.
        assert json.loads(path.read_text().splitlines()[-1])["status"] == "started"
    journal.record("rollback", "skipped", reason="already at target", when=tmp_path)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[-1])["when"] == str(tmp_path)  # non-JSON values as text


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    with journal.step("switch-link"):
        pass
    journal.record("restart", "started", command=["supervisorctl", "restart", "app"])
    with path.open("a") as handle:  # what a SIGKILL half way through a write leaves
        handle.write('{"ts": "2024-01-01T00:00:00.000+00:00", "step": "restart", "sta')
    assert [(e["step"], e["status"]) for e in journal.entries()] == [
        ("switch-link", "started"),
        ("switch-link", "done"),
        ("restart", "started"),
    ]
    # The restart was in flight when the process died.
    assert journal.step_states() == {"switch-link": "done", "restart": "started"}


def test_the_next_run_appends_after_a_cut_line_without_losing_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("restart", "started")
    with path.open("a") as handle:
        handle.write('{"ts": "2024-01-01T00:00:00.000+00:00", "step": "rest')
    rerun = Journal(path)
    rerun.record("restart", "done", note="rerun")
    assert rerun.step_states() == {"restart": "done"}
    assert rerun.entries()[-1]["note"] == "rerun"


def test_step_states_keeps_the_last_status_and_ignores_other_records(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record("preflight:target-exists", "passed", message="v1.2.9 found")
    with pytest.raises(ValueError), journal.step("restart"):
        raise ValueError("first try")
    with journal.step("restart"):
        pass
    journal.record("rollback", "skipped")
    journal.record("wait-ready", "started")
    assert journal.step_states() == {"restart": "done", "rollback": "skipped", "wait-ready": "started"}


def test_a_journal_that_was_never_written_is_empty(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    assert journal.entries() == []
    assert journal.step_states() == {}


@pytest.mark.parametrize("offset", [-8, 0, 5])
def test_long_text_is_redacted_first_then_cut(tmp_path: Path, offset: int) -> None:
    """A secret across the cut point must not leave a piece the redactor no longer knows."""
    from rollback_harness.rollback.evidence import Redactor
    from rollback_harness.rollback.journal import MAX_TEXT

    secret = "dpl-7Hq2+Zk9=wX4"
    # The secret straddles (or starts at) the point where the last MAX_TEXT characters begin.
    output = "x" * 3000 + secret + "y" * (MAX_TEXT - len(secret) + offset)
    journal = Journal(tmp_path / "journal.jsonl", redact=Redactor([secret]).data)
    journal.record("restart", "done", output=output, command=["ctl", "restart"])

    raw = (tmp_path / "journal.jsonl").read_text()
    recorded = journal.entries()[-1]["output"]
    assert recorded.endswith("y" * 100) and recorded.startswith("[")
    assert "characters cut]" in recorded and len(recorded) < MAX_TEXT + 40
    for piece in (secret[i:] for i in range(len(secret) - 5)):
        assert piece not in raw, piece
    assert journal.entries()[-1]["command"] == ["ctl", "restart"]  # short values untouched


def test_every_record_names_the_run_and_the_incident_once_identified(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.identify("INC-9-20260101-000000-abcdef", "INC-9")
    with journal.step("restart"):
        pass
    # A lock record's own run_id (the holder's) stays a fact of its step.
    journal.record("lock-broken", "recorded", run_id="run-elsewhere", run="not the run's id")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["status"]) for r in records] == [
        ("restart", "started"),
        ("restart", "done"),
        ("lock-broken", "recorded"),
    ]
    assert {(r["run"], r["incident"]) for r in records} == {("INC-9-20260101-000000-abcdef", "INC-9")}
    assert records[-1]["run_id"] == "run-elsewhere"
    # entries() gives each step's facts: the ids are the journal's, not the step's.
    assert all("run" not in e and "incident" not in e for e in journal.entries())
    assert journal.records() == records


def test_without_an_incident_the_records_name_the_run_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.identify("20260101-000000-abcdef")
    entry = journal.record("plan", "planned", steps=["switch-link"])
    assert (entry["run"], "incident" in entry) == ("20260101-000000-abcdef", False)
