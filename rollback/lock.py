"""One run at a time per target: an OS file lock, plus a note saying who holds it.

The lock is ``flock``-based (filelock), so the kernel releases it when its process dies: a crashed
run never leaves a stale lock to break by hand. The holder note is only read by a run that could
not take the lock, to name who has it.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from rollback_harness.rollback.journal import utc_now


class TargetLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.holder_path = path.with_name(path.name + ".holder")
        self.run_id = run_id
        self._lock = FileLock(str(path), timeout=0, thread_local=False)

    def acquire(self) -> str | None:
        """Take the lock without waiting; None when taken, else who holds it, in words."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            return f"another run holds the lock {self.path}: {self._describe_holder()}"
        except OSError as exc:
            return f"cannot take the lock {self.path}: {exc.strerror or exc}"
        self.holder_path.write_text(json.dumps(self._holder()) + "\n", encoding="utf-8")
        return None

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def _holder(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": _user(),
            "since": utc_now(),
            "command": " ".join(sys.argv),
        }

    def _describe_holder(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text(encoding="utf-8"))
            return (
                f"run {holder['run_id']} (pid {holder['pid']} on {holder['host']}, user {holder['user']}, "
                f"since {holder['since']})"
            )
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown (it is starting up or did not say)"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
