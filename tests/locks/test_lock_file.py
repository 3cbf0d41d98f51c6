"""The file lock backend's break: only the named run's lock, and the holder learns it lost it."""

from __future__ import annotations

import json
from pathlib import Path

from lock_support import Holder

from rollback_harness.rollback.lock import TargetLock


def test_breaking_a_live_holders_file_lock_needs_its_run_id(tmp_path: Path, holder: Holder) -> None:
    path = tmp_path / "t.lock"
    process = holder("file", str(path), "run-stuck")

    wrong = TargetLock(path, "run-wrong", break_run="run-other")
    refusal = wrong.acquire()
    assert refusal is not None and refusal.startswith(f"another run holds the lock {path}: run run-stuck (pid ")
    assert "--rollback-break-lock run-other names another run, so nothing was broken" in refusal
    assert not wrong.held and wrong.broken is None

    breaker = TargetLock(path, "run-breaker", break_run="run-stuck")
    assert breaker.acquire() is None
    try:
        assert breaker.held and breaker.broken is not None
        assert (breaker.broken["run_id"], breaker.broken["pid"]) == ("run-stuck", process.pid)
        assert json.loads((tmp_path / "t.lock.holder").read_text())["run_id"] == "run-breaker"
        # A third run is refused, naming the breaker: the lock is one again.
        refusal = TargetLock(path, "run-third").acquire()
        assert refusal is not None and "run run-breaker (pid " in refusal
    finally:
        breaker.release()


def test_a_run_whose_file_lock_was_broken_knows_and_leaves_the_new_note(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    first = TargetLock(path, "run-first")
    assert first.acquire() is None
    breaker = TargetLock(path, "run-breaker", break_run="run-first")
    assert breaker.acquire() is None
    try:
        assert first.lost() == f"run run-breaker broke this run's lock {path} (--rollback-break-lock)"
        assert not first.held
        first.release()
        assert json.loads((tmp_path / "t.lock.holder").read_text())["run_id"] == "run-breaker"
        assert breaker.held
    finally:
        breaker.release()
    assert not (tmp_path / "t.lock.holder").exists()


def test_a_refusal_names_the_break_option(tmp_path: Path, holder: Holder) -> None:
    path = tmp_path / "t.lock"
    holder("file", str(path), "run-held")
    refusal = TargetLock(path, "run-2").acquire()
    assert refusal is not None
    assert refusal.endswith("; if that run is gone for good, break the lock with --rollback-break-lock run-held")
