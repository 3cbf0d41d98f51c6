"""One run at a time per target: the lock interface every backend keeps, and the file backend.

Backends (``[lock] backend`` in the config, per target ``[targets.NAME.lock]``):

- ``file`` (the default, here): an OS file lock (``flock`` through filelock) beside the target, plus
  a note saying who holds it. The kernel releases it when its process dies: a crashed run never
  leaves a stale lock. It keeps apart the runs of one machine (or of machines sharing the folder).
- ``postgres`` (rollback/locks/postgres.py): a session-level advisory lock on the configured
  database; the server releases it when the holder's session ends.
- ``kubernetes`` (rollback/locks/kubernetes.py): a coordination.k8s.io/v1 Lease in the target's
  namespace, renewed while the run lasts; an expired Lease is taken over and the takeover recorded.

Every backend: ``acquire()`` never waits and says who holds the lock (host, user, run id, since
when) when it cannot take it; a holder that died without releasing is named in ``taken_over``;
``break_run`` (``--rollback-break-lock RUN_ID``) breaks the lock only when that run holds it, and
what was broken is kept in ``broken`` for the journal. ``path`` is the local file beside which the
runbook keeps its record of the last run (rollback/resume.py), whatever the backend.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .journal import utc_now

if TYPE_CHECKING:
    from .config import HarnessConfig, TargetSpec

# (module:class) per backend, imported only when a config names it.
LOCK_BACKENDS: dict[str, str] = {
    "file": "rollback_harness.rollback.lock:TargetLock",
    "postgres": "rollback_harness.rollback.locks.postgres:PostgresLock",
    "kubernetes": "rollback_harness.rollback.locks.kubernetes:LeaseLock",
}
HOLDER_FIELDS = ("run_id", "pid", "host", "user", "since", "command")


class Lock(Protocol):
    """What the runbook needs of a target lock, whatever keeps it."""

    path: Path
    run_id: str
    # The holder that ended without releasing, when acquire() found its note (journaled).
    taken_over: dict[str, Any] | None
    # The holder whose lock this run broke (--rollback-break-lock), journaled and in the evidence.
    broken: dict[str, Any] | None

    @property
    def where(self) -> str:
        """The lock, in words: a file's path, a database's advisory key, a Lease's name."""

    @property
    def held(self) -> bool:
        """This run holds the lock now (False once released, or lost: a broken or expired lease)."""

    def acquire(self) -> str | None:
        """Take the lock without waiting; None when taken, else who holds it, in words."""

    def describe_takeover(self) -> str:
        """``taken over from run X (...)``, or empty when there was no holder."""

    def lost(self) -> str | None:
        """Why a lock this run took is no longer its own (broken, lease expired), else None."""

    def release(self) -> None:
        """Let go; nothing when not held."""


def holder_facts(run_id: str) -> dict[str, Any]:
    """Who this run is, as every backend records it for the next run to read."""
    return {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": _user(),
        "since": utc_now(),
        "command": " ".join(sys.argv),
    }


def describe_holder(holder: dict[str, Any]) -> str:
    """``run X (pid N on host, user U, since S)``."""
    return (
        f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, user {holder.get('user')}, "
        f"since {holder.get('since')})"
    )


def refusal(where: str, holder: dict[str, Any] | None, break_run: str | None) -> str:
    """The words of a refused acquire, the same for every backend."""
    named = describe_holder(holder) if holder else "holder unknown (it is starting up or did not say)"
    text = f"another run holds the lock {where}: {named}"
    if break_run is not None and holder and holder.get("run_id") != break_run:
        return text + f"; --rollback-break-lock {break_run} names another run, so nothing was broken"
    if holder and holder.get("run_id"):
        return text + f"; if that run is gone for good, break the lock with --rollback-break-lock {holder['run_id']}"
    return text


def create_lock(
    config: HarnessConfig, spec: TargetSpec, path: Path, run_id: str, *, break_run: str | None = None
) -> Lock:
    """The lock the config chooses for ``spec`` (``file`` unless it says otherwise)."""
    from importlib import import_module

    settings = spec.lock if spec.lock is not None else config.settings.lock
    module_name, _, class_name = LOCK_BACKENDS[settings.backend].partition(":")
    cls = getattr(import_module(module_name), class_name)
    lock: Lock = cls.from_config(config, spec, path, run_id, break_run=break_run)
    return lock


class TargetLock:
    """The ``file`` backend."""

    def __init__(self, path: Path, run_id: str, *, break_run: str | None = None) -> None:
        from filelock import FileLock

        self.path = path
        self.holder_path = path.with_name(path.name + ".holder")
        self.run_id = run_id
        self.break_run = break_run
        self._lock = FileLock(str(path), timeout=0, thread_local=False)
        self.taken_over: dict[str, Any] | None = None
        self.broken: dict[str, Any] | None = None

    @classmethod
    def from_config(
        cls, config: HarnessConfig, spec: TargetSpec, path: Path, run_id: str, *, break_run: str | None = None
    ) -> TargetLock:
        return cls(path, run_id, break_run=break_run)

    @property
    def where(self) -> str:
        return str(self.path)

    def acquire(self) -> str | None:
        from filelock import Timeout

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except Timeout:
            holder = self._read_holder()
            if self.break_run is None or holder is None or holder.get("run_id") != self.break_run:
                return refusal(self.where, holder, self.break_run)
            return self._break(holder)
        except OSError as exc:
            return f"cannot take the lock {self.path}: {exc.strerror or exc}"
        self.taken_over = self._previous_holder()
        self._write_holder()
        return None

    def _break(self, holder: dict[str, Any]) -> str | None:
        """The holder is alive (its flock stands) but named by --rollback-break-lock: move its lock
        file aside, so the flock it keeps is on a file no one else opens, and take a new one."""
        from filelock import Timeout

        aside = self.path.with_name(f"{self.path.name}.broken-{holder.get('run_id')}")
        try:
            os.replace(self.path, aside)
            self._lock.acquire()
        except (OSError, Timeout) as exc:
            return f"could not break the lock {self.path} of {describe_holder(holder)}: {exc}"
        self.broken = {k: holder.get(k) for k in HOLDER_FIELDS}
        self._write_holder()
        return None

    def _write_holder(self) -> None:
        self.holder_path.write_text(json.dumps(holder_facts(self.run_id)) + "\n", encoding="utf-8")

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) and "run_id" in holder else None

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
        facts = {k: holder.get(k) for k in HOLDER_FIELDS}
        facts["pid_alive"] = _pid_alive(holder.get("pid")) if holder.get("host") == socket.gethostname() else None
        return facts

    def describe_takeover(self) -> str:
        held = self.taken_over
        if held is None:
            return ""
        if "run_id" not in held:
            return f"taken over: {held.get('note')}"
        state = {True: "pid now in use by another process", False: "dead", None: "on another host, state unknown"}[
            held["pid_alive"]
        ]
        return f"taken over from run {held['run_id']} (pid {held['pid']} on {held['host']}, {state})"

    def lost(self) -> str | None:
        if not self._lock.is_locked:
            return None
        holder = self._read_holder()
        if holder is not None and holder.get("run_id") != self.run_id:
            return f"run {holder.get('run_id')} broke this run's lock {self.path} (--rollback-break-lock)"
        return None

    def release(self) -> None:
        if self._lock.is_locked:
            holder = self._read_holder()
            if holder is None or holder.get("run_id") == self.run_id:  # a run that broke it keeps its note
                self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked and self.lost() is None


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
