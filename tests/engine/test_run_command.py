"""run_command: a start the kernel refused for no reason of the program's is tried again, bounded.

The EFAULT below is provoked by wrapping Popen (a real vfork EFAULT cannot be made on demand); the
program itself runs for real.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rollback_harness.rollback import commands
from rollback_harness.rollback.commands import run_command
from rollback_harness.rollback.errors import RollbackFailed


def _refusing(times: int, code: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    real = subprocess.Popen
    calls: list[int] = []

    def popen(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise OSError(code, "Bad address" if code == errno.EFAULT else "refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(commands.subprocess, "Popen", popen)
    return calls


def test_a_transient_start_failure_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _refusing(1, errno.EFAULT, monkeypatch)
    run = run_command([sys.executable, "-c", "print(4242)"], cwd=tmp_path, timeout=30)
    assert (run.returncode, run.output, len(calls)) == (0, "4242", 2)


def test_a_start_failing_every_time_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _refusing(99, errno.EFAULT, monkeypatch)
    with pytest.raises(RollbackFailed, match=r"pid command could not be started: .*: Bad address"):
        run_command([sys.executable, "-c", "pass"], cwd=tmp_path, timeout=30, what="pid command")
    assert len(calls) == commands.START_ATTEMPTS


def test_a_program_that_cannot_run_is_not_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _refusing(99, errno.EACCES, monkeypatch)
    with pytest.raises(RollbackFailed, match="could not be started"):
        run_command([sys.executable, "-c", "pass"], cwd=tmp_path, timeout=30)
    assert len(calls) == 1
