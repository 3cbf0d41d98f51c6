"""One run at a time per target: an OS file lock, plus a note saying who holds it.

The lock is ``flock``-based (filelock), so the kernel releases it when its process dies: a crashed
run never leaves a stale lock to break by hand. The holder note is read by a run that could not
take the lock, to name who has it, and by a run that finds one left behind by a holder that ended
without releasing (killed, crashed): that run records the takeover.
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
        # The holder that ended without releasing, when acquire() found its note (journaled).
        self.taken_over: dict[str, Any] | None = None

    def acquire(self) -> str | None:
        """Take the lock without waiting; None when taken, else who holds it, in words."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            return f"another run holds the lock {self.path}: {self._describe_holder()}"
        except OSError as exc:
            return f"cannot take the lock {self.path}: {exc.strerror or exc}"
        self.taken_over = self._previous_holder()
        self.holder_path.write_text(json.dumps(self._holder()) + "\n", encoding="utf-8")
        return None

    def _previous_holder(self) -> dict[str, Any] | None:
        """The note a holder left behind: it ended without releasing (killed, crashed, host down).

        Its lock died with it; this run takes over, and the runbook journals from whom.
        """
        try:
            holder = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"note": f"{self.holder_path} was left behind and cannot be read"}
        if not isinstance(holder, dict):
            return {"note": f"{self.holder_path} was left behind and holds no holder"}
        facts = {k: holder.get(k) for k in ("run_id", "pid", "host", "user", "since", "command")}
        facts["pid_alive"] = _pid_alive(holder.get("pid")) if holder.get("host") == socket.gethostname() else None
        return facts

    def describe_takeover(self) -> str:
        """``taken over from dead run X (pid N on host)``, or empty when there was no holder."""
        held = self.taken_over
        if held is None:
            return ""
        if "run_id" not in held:
            return f"taken over: {held.get('note')}"
        state = {True: "pid now in use by another process", False: "dead", None: "on another host, state unknown"}[
            held["pid_alive"]
        ]
        return f"taken over from run {held['run_id']} (pid {held['pid']} on {held['host']}, {state})"

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


def _pid_alive(pid: object) -> bool | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
