"""The target lock: one holder at a time, named when refused, gone when its process dies."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from rollback_harness.rollback.lock import TargetLock

HOLD = """
import sys, time
from pathlib import Path
from rollback_harness.rollback.lock import TargetLock
lock = TargetLock(Path(sys.argv[1]), "run-held-elsewhere")
assert lock.acquire() is None
print("held", flush=True)
time.sleep(60)
"""


def test_acquire_and_release(tmp_path: Path) -> None:
    lock = TargetLock(tmp_path / "t.lock", "run-1")
    assert lock.acquire() is None and lock.held
    assert (tmp_path / "t.lock.holder").is_file()
    lock.release()
    assert not lock.held and not (tmp_path / "t.lock.holder").exists()
    assert TargetLock(tmp_path / "t.lock", "run-2").acquire() is None


def test_another_process_holding_it_is_named_and_dies_without_a_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refusal = TargetLock(path, "run-2").acquire()
        assert refusal is not None
        assert f"another run holds the lock {path}: run run-held-elsewhere (pid {holder.pid} on " in refusal
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    lock = TargetLock(path, "run-3")
    while (refusal := lock.acquire()) is not None:
        assert time.monotonic() < deadline, refusal
        time.sleep(0.05)
    lock.release()


def test_a_lock_taken_over_from_a_dead_holder_says_from_whom(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()  # SIGKILL: no release, its note stays behind
        holder.wait()
    assert (tmp_path / "t.lock.holder").is_file()

    lock = TargetLock(path, "run-4")
    deadline = time.monotonic() + 10
    while (refusal := lock.acquire()) is not None:
        assert time.monotonic() < deadline, refusal
        time.sleep(0.05)
    try:
        assert lock.taken_over is not None
        assert {k: lock.taken_over[k] for k in ("run_id", "pid", "host", "pid_alive")} == {
            "run_id": "run-held-elsewhere",
            "pid": holder.pid,
            "host": socket.gethostname(),
            "pid_alive": False,
        }
        assert lock.describe_takeover() == (
            f"taken over from run run-held-elsewhere (pid {holder.pid} on {socket.gethostname()}, dead)"
        )
    finally:
        lock.release()
    # Released properly this time: the next run takes over from no one.
    clean = TargetLock(path, "run-5")
    assert clean.acquire() is None and clean.taken_over is None and clean.describe_takeover() == ""
    clean.release()
