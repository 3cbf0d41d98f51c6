"""Symlink releases: ``releases/<version>/`` folders and a ``current`` link to the live one.

The switch is atomic: a temporary link is made beside ``current`` and renamed over it, so a run
killed at any moment leaves ``current`` on the old or the new release, never dangling or missing.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator

from rollback_harness.rollback.commands import CommandTimedOut, program_finding, run_command
from rollback_harness.rollback.config import Duration, Section
from rollback_harness.rollback.durations import format_duration
from rollback_harness.rollback.errors import Conflict, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.base import Finding, Target, TargetContext, wait_for_version
from rollback_harness.rollback.targets.ssh import HostName, SshSettings
from rollback_harness.rollback.versions import sort_versions, version_problem

MAX_WAIT = 24 * 3600.0  # no wait of a rollback is meant to last longer than a day
STEP_SWITCH, STEP_RESTART, STEP_WAIT = "switch-link", "restart", "wait-ready"


def _bounded_wait(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 24h, e.g. '30s', '5m' or '1h'")
    return value


def _argument_list(value: list[str] | None) -> list[str] | None:
    if value and not value[0].strip():
        raise ValueError(
            'expected an argument list whose first item names a program, e.g. ["supervisorctl", "restart", "app"]'
        )
    return value


BoundedDuration = Annotated[Duration, AfterValidator(_bounded_wait)]


class SymlinkSettings(Section):
    releases_dir: Path
    current_link: Path
    # An argument list, never a shell string: e.g. ["supervisorctl", "restart", "app"].
    restart: Annotated[list[str] | None, AfterValidator(_argument_list)] = Field(default=None, min_length=1)
    restart_timeout: BoundedDuration = 60.0
    ready_timeout: BoundedDuration = 120.0
    # The service must answer the target this many times in a row before it counts as ready.
    ready_consecutive: int = Field(default=3, ge=1, le=100)
    # Files a release folder must hold to be deployable, relative to it (e.g. "app.py").
    required_files: list[str] = []
    # Other hosts, reached over SSH (rollback/targets/remote.py): the same folders on each, switched
    # and restarted ``batch`` hosts at a time (default: all at once).
    ssh: SshSettings | None = None
    batch: int | None = Field(default=None, ge=1)
    hosts: list[HostName] = Field(default=[], validate_default=True)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str], info: ValidationInfo) -> list[str]:
        ssh, batch = info.data.get("ssh"), info.data.get("batch")
        if not hosts:
            if ssh is not None or batch is not None:
                raise ValueError('ssh and batch apply to hosts: list the hosts, e.g. hosts = ["web1", "web2"]')
            return hosts
        if ssh is None and "ssh" not in info.data:
            return hosts  # [ssh] itself is invalid: its own error says why
        if ssh is None:
            raise ValueError("needs an [ssh] table with at least known_hosts (the file host keys are checked in)")
        if len(set(hosts)) != len(hosts):
            raise ValueError("a host is named more than once")
        unknown = sorted(set(ssh.hosts) - set(hosts))
        if unknown:
            raise ValueError(f"ssh.hosts names {', '.join(unknown)}, not listed here: add it or drop its table")
        if find_spec("paramiko") is None:
            raise ValueError(
                "hosts are reached over SSH with paramiko, which is not installed; "
                "install it with: pip install 'pytest-rollback-harness[ssh]'"
            )
        return hosts


class SymlinkTarget(Target):
    kind = "symlink"
    settings_model = SymlinkSettings
    settings: SymlinkSettings

    @classmethod
    def create(cls, settings: BaseModel, context: TargetContext) -> Target:
        """On this machine, or on ``hosts`` over SSH (the ``[ssh]`` extra)."""
        if isinstance(settings, SymlinkSettings) and settings.hosts:
            from rollback_harness.rollback.targets.remote import RemoteSymlinkTarget  # paramiko: checked at load

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

    def steps(self) -> list[str]:
        return [STEP_SWITCH, *([STEP_RESTART] if self.settings.restart else []), STEP_WAIT]

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
        """The restart program, resolved as ``_restart`` runs it (PATH, or relative to the base folder)."""
        if not self.settings.restart:
            return []
        return [program_finding("target-deployable", self.settings.restart[0], self.context.base_dir, "restart")]

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

    def wait_ready(self, version: str, journal: Journal) -> None:
        wait_for_version(
            self.context,
            version,
            journal,
            timeout=self.settings.ready_timeout,
            consecutive=self.settings.ready_consecutive,
        )

    def lock_path(self) -> Path:
        return self.current_link.with_name(f".{self.current_link.name}.rollback.lock")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "releases_dir": str(self.releases_dir),
            "current_link": str(self.current_link),
        }
