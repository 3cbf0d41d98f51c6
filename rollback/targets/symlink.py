"""Symlink releases: ``releases/<version>/`` folders and a ``current`` link to the live one.

The switch is atomic: a temporary link is made beside ``current`` and renamed over it, so a run
killed at any moment leaves ``current`` on the old or the new release, never dangling or missing.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..census import Census, Replica
from ..commands import CommandTimedOut, program_finding, run_command
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import sort_versions, version_problem
from .base import Finding, Target, TargetContext
from .symlink_base import SymlinkBase
from .symlink_settings import STEP_RESTART, STEP_SWITCH, STEP_WAIT, SymlinkSettings

PID_TIMEOUT = 10.0  # the longest pid_command may take (the census is read during verify)
TICK = 1.0 / os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts a process's start in clock ticks since boot


class SymlinkTarget(SymlinkBase):
    """The symlink driver on this machine; a target with ``hosts`` gets ``RemoteSymlinkTarget`` instead."""

    @classmethod
    def create(cls, settings: BaseModel, context: TargetContext) -> Target:
        """On this machine, or on ``hosts`` over SSH (the ``[ssh]`` extra)."""
        if isinstance(settings, SymlinkSettings) and settings.hosts:
            from .remote import RemoteSymlinkTarget  # SSH and its HTTP reads only for a target with hosts

            return RemoteSymlinkTarget(settings, context)
        return cls(settings, context)

    @property
    def releases_dir(self) -> Path:
        return self.context.base_dir / self.settings.releases_dir

    @property
    def current_link(self) -> Path:
        return self.context.base_dir / self.settings.current_link

    def release_path(self, version: str) -> Path:
        return self.releases_dir / version

    def live_version(self) -> str:
        link = self.current_link
        if not link.is_symlink():
            state = "is not a symlink" if link.exists() else "does not exist"
            raise RollbackFailed(f"{link} {state}: cannot tell the live release")
        resolved = link.resolve()
        releases = self.releases_dir.resolve()
        if resolved.parent != releases:
            raise RollbackFailed(f"{link} points to {os.readlink(link)}, which is not a folder of {releases}")
        return resolved.name

    def history(self) -> list[str]:
        if not self.releases_dir.is_dir():
            return []
        names = [
            entry.name
            for entry in self.releases_dir.iterdir()
            if entry.is_dir() and not entry.name.startswith(".") and version_problem(entry.name) is None
        ]
        return sort_versions(names)

    def deployable(self, version: str) -> list[Finding]:
        path = self.release_path(version)
        if not path.is_dir():
            return [Finding("target-deployable", False, f"release folder {path} does not exist")]
        if path.resolve().parent != self.releases_dir.resolve():
            return [Finding("target-deployable", False, f"{path} resolves outside {self.releases_dir}")]
        missing = [name for name in self.settings.required_files if not (path / name).exists()]
        if missing:
            return [Finding("target-deployable", False, f"{path} lacks {', '.join(missing)}")]
        if not os.access(self.current_link.parent, os.W_OK):
            return [Finding("target-deployable", False, f"cannot write in {self.current_link.parent}")]
        return [Finding("target-deployable", True, f"release folder {path} is in place")]

    def _link_text(self, version: str) -> str:
        return os.path.relpath(self.release_path(version), self.current_link.parent)

    def observe(self) -> str:
        """The link's own text: any deploy that moves ``current`` changes it."""
        link = self.current_link
        if link.is_symlink():
            return os.readlink(link)
        return "(not a symlink)" if link.exists() else "(missing)"

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        if STEP_SWITCH in steps:
            lines.append(f"point {self.current_link} at {self._link_text(version)} (atomic rename)")
        if STEP_RESTART in steps and self.settings.restart:
            lines.append(f"restart: {' '.join(self.settings.restart)}")
        if STEP_WAIT in steps:
            times = self.settings.ready_consecutive
            in_a_row = f" {times} times in a row" if times > 1 else ""
            lines.append(
                f"wait until the service answers {version}{in_a_row} "
                f"(up to {format_duration(self.settings.ready_timeout)})"
            )
        return lines

    def command_findings(self) -> list[Finding]:
        """The restart and pid programs, resolved as they are run (PATH, or relative to the base folder)."""
        commands = {"restart": self.settings.restart, "pid": self.settings.pid_command}
        return [
            program_finding("target-deployable", command[0], self.context.base_dir, what)
            for what, command in commands.items()
            if command
        ]

    def way_back(self, version: str) -> str:
        parts = [
            f"cd {shlex.quote(str(self.context.base_dir))}",
            f"ln -sfn {shlex.quote(self._link_text(version))} {shlex.quote(str(self.current_link))}",
        ]
        if self.settings.restart:
            parts.append(shlex.join(self.settings.restart))
        return " && ".join(parts)

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        link_text = self._link_text(version)
        expected = expected_state
        if STEP_SWITCH in steps:
            self._check_unchanged(expected)
            with journal.step(STEP_SWITCH, link=str(self.current_link), to=link_text) as step:
                before = os.readlink(self.current_link) if self.current_link.is_symlink() else None
                step.detail["from"] = before
                removed = self._remove_leftover_links()
                if removed:
                    step.detail["removed"] = removed
                if before == link_text:
                    step.detail["note"] = "already pointing there"
                else:
                    self._switch_link(link_text)
            expected = link_text
        if STEP_RESTART in steps and self.settings.restart:
            self._check_unchanged(expected)
            with journal.step(STEP_RESTART, command=self.settings.restart) as step:
                step.detail["output"] = self._restart()

    def _check_unchanged(self, expected: str | None) -> None:
        """Just before a write: the live link must be what this run last read (or wrote)."""
        if expected is None:
            return
        now = self.observe()
        if now != expected:
            raise Conflict(
                f"{self.current_link} changed after this run read it: it was {expected}, it is now {now} "
                "(another deploy or run moved it); this run stopped before writing"
            )

    def _remove_leftover_links(self) -> list[str]:
        """Temporary links of runs killed mid-switch. Safe: this run holds the target's lock."""
        removed = []
        prefix = f".{self.current_link.name}.rollback-"
        for entry in sorted(self.current_link.parent.glob(prefix + "*")):
            if entry.is_symlink() and entry.name[len(prefix) :].isdigit():
                entry.unlink()
                removed.append(entry.name)
        return removed

    def _switch_link(self, link_text: str) -> None:
        temporary = self.current_link.with_name(f".{self.current_link.name}.rollback-{os.getpid()}")
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        os.symlink(link_text, temporary)
        os.replace(temporary, self.current_link)

    def _restart(self) -> str:
        command = self.settings.restart or []
        try:
            # The whole output: the journal cuts it, after redaction.
            run = run_command(
                command,
                cwd=self.context.base_dir,
                timeout=self.settings.restart_timeout,
                output_limit=None,
                what="restart command",
            )
        except CommandTimedOut:
            raise RollbackFailed(
                f"restart command did not finish within {format_duration(self.settings.restart_timeout)} "
                f"and was killed: {' '.join(command)}"
            ) from None
        if run.returncode != 0:
            raise RollbackFailed(f"restart command exited {run.returncode}: {' '.join(command)}: {run.output}")
        return run.output

    def census(self) -> Census:
        """The link's release, and the process serving it when the settings name one.

        That process must have started after the link last changed: one started before still runs
        the release it loaded then (a switch without a restart).
        """
        version = self.live_version()  # RollbackFailed when the link cannot be read
        link = self.current_link
        changed = link.lstat().st_mtime
        facts: dict[str, Any] = {
            "link": str(link),
            "link_text": os.readlink(link),
            "link_changed_at": _iso(changed),
        }
        source = self._process_source()
        if source is None:
            facts["process"] = "not known (no pid_file or pid_command): judged by the link only"
            replica = Replica(f"link {link.name}", version, True, "linked", f"{link} -> {os.readlink(link)}")
            return Census("release", (replica,), (), facts)
        facts["process"] = source
        pid = self._serving_pid()
        if pid is None:
            replica = Replica(f"process ({source})", version, False, "not running", f"{source} names no process")
            return Census("process", (replica,), (), facts)
        started = process_started(pid)
        if started is None:
            replica = Replica(f"process {pid}", version, False, "not running", f"pid {pid} from {source} is gone")
            return Census("process", (replica,), (), facts)
        name = f"process {pid} ({process_name(pid)})"
        offset = boot_offset()
        started_at = _iso(started + offset)
        facts.update(pid=pid, process_started_at=started_at)
        problems: tuple[str, ...] = ()
        if started + TICK <= changed - offset:  # /proc counts whole ticks: surely before, not within one
            problems = (
                f"{name} started at {started_at}, before {link} was switched to {version} at "
                f"{facts['link_changed_at']}: it was not restarted since and may still run the release it loaded",
            )
        replica = Replica(name, version, True, "running", f"started at {started_at}; pid from {source}")
        return Census("process", (replica,), problems, facts)

    def _process_source(self) -> str | None:
        if self.settings.pid_file is not None:
            return f"pid file {self.context.base_dir / self.settings.pid_file}"
        if self.settings.pid_command:
            return f"pid command {shlex.join(self.settings.pid_command)}"
        return None

    def _serving_pid(self) -> int | None:
        """The pid the settings name; None when they name none (no pid file, or a pid of 0)."""
        if self.settings.pid_file is not None:
            path = self.context.base_dir / self.settings.pid_file
            try:
                text = path.read_text(encoding="utf-8", errors="replace").strip()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise RollbackFailed(f"cannot read the pid file {path}: {exc.strerror}") from None
            where = f"the pid file {path}"
        else:
            command = self.settings.pid_command or []
            try:
                run = run_command(command, cwd=self.context.base_dir, timeout=PID_TIMEOUT, what="pid command")
            except CommandTimedOut:
                raise RollbackFailed(
                    f"pid command did not finish within {format_duration(PID_TIMEOUT)} and was killed: "
                    f"{shlex.join(command)}"
                ) from None
            text = run.output.strip()
            where = f"pid command {shlex.join(command)} (exit {run.returncode})"
            if run.returncode != 0 and not text.isdigit():
                raise RollbackFailed(f"{where} failed: {text or 'no output'}")
        if not text or text == "0":
            return None
        if not text.isdigit():
            raise RollbackFailed(f"{where} gave {text[:80]!r}, not a process id")
        return int(text)

    def lock_path(self) -> Path:
        return self.current_link.with_name(f".{self.current_link.name}.rollback.lock")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "releases_dir": str(self.releases_dir),
            "current_link": str(self.current_link),
        }


def process_started(pid: int) -> float | None:
    """When ``pid`` started, in seconds since boot (truncated to a tick); None when it is not running."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        raise RollbackFailed(f"cannot read /proc/{pid}/stat: {exc.strerror}") from None
    fields = text.rpartition(")")[2].split()  # after the name, which may hold spaces: state is field 3
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19]) * TICK  # field 22, starttime


def process_name(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "?"
    return text.partition("(")[2].rpartition(")")[0]


def boot_offset() -> float:
    """Wall-clock time minus the boot clock: adds to a time since boot to make it a wall-clock time."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")
