"""Symlink releases: ``releases/<version>/`` folders and a ``current`` link to the live one.

The switch is atomic: a temporary link is made beside ``current`` and renamed over it, so a run
killed at any moment leaves ``current`` on the old or the new release, never dangling or missing.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from rollback_harness.rollback.config import Duration, Section
from rollback_harness.rollback.durations import format_duration
from rollback_harness.rollback.errors import RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.base import Finding, Target
from rollback_harness.rollback.versions import same_version, sort_versions, version_problem

POLL_INTERVAL = 0.05  # seconds between version probes while waiting for readiness


class SymlinkSettings(Section):
    releases_dir: Path
    current_link: Path
    # An argument list, never a shell string: e.g. ["supervisorctl", "restart", "app"].
    restart: list[str] | None = Field(default=None, min_length=1)
    restart_timeout: Duration = 60.0
    ready_timeout: Duration = 120.0
    # Files a release folder must hold to be deployable, relative to it (e.g. "app.py").
    required_files: list[str] = []


class SymlinkTarget(Target):
    kind = "symlink"
    settings_model = SymlinkSettings
    settings: SymlinkSettings

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

    def plan(self, version: str) -> list[str]:
        steps = [f"point {self.current_link} at {self._link_text(version)} (atomic rename)"]
        if self.settings.restart:
            steps.append(f"restart: {' '.join(self.settings.restart)}")
        steps.append(f"wait until the service answers {version} (up to {format_duration(self.settings.ready_timeout)})")
        return steps

    def rollback(self, version: str, journal: Journal) -> None:
        link_text = self._link_text(version)
        with journal.step("switch-link", link=str(self.current_link), to=link_text) as step:
            before = os.readlink(self.current_link) if self.current_link.is_symlink() else None
            step.detail["from"] = before
            if before == link_text:
                step.detail["note"] = "already pointing there"
            else:
                self._switch_link(link_text)
        if self.settings.restart:
            with journal.step("restart", command=self.settings.restart) as step:
                step.detail["output"] = self._restart()

    def _switch_link(self, link_text: str) -> None:
        temporary = self.current_link.with_name(f".{self.current_link.name}.rollback-{os.getpid()}")
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        os.symlink(link_text, temporary)
        os.replace(temporary, self.current_link)

    def _restart(self) -> str:
        command = self.settings.restart or []
        # Output goes to a file, not a pipe: a daemon the command starts in the background may
        # keep the pipe open long after the command itself has exited.
        with tempfile.TemporaryFile() as output_file:
            try:
                process = subprocess.Popen(
                    command,
                    cwd=self.context.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=output_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so a timeout ends all of it
                )
            except FileNotFoundError:
                raise RollbackFailed(f"restart command not found: {command[0]}") from None
            except OSError as exc:
                # Not executable, a folder, a bad interpreter line: say so instead of a bare OSError.
                raise RollbackFailed(f"restart command could not be started: {command[0]}: {exc.strerror}") from None
            try:
                returncode = _wait(process, self.settings.restart_timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise RollbackFailed(
                    f"restart command did not finish within {format_duration(self.settings.restart_timeout)} "
                    f"and was killed: {' '.join(command)}"
                ) from None
            except BaseException:
                _kill_group(process)  # Ctrl-C: leave no restart running behind the journal's back
                raise
            output_file.seek(0)
            output = output_file.read().decode(errors="replace").strip()  # the journal cuts it, after redaction
        if returncode != 0:
            raise RollbackFailed(f"restart command exited {returncode}: {' '.join(command)}: {output}")
        return output

    def wait_ready(self, version: str, journal: Journal) -> None:
        timeout = self.settings.ready_timeout
        with journal.step("wait-ready", version=version, timeout_s=timeout) as step:
            started = time.monotonic()
            deadline = started + timeout
            next_report = started + 2.0
            seen: str | None = None
            while True:
                seen = self.context.service_version()
                if same_version(seen, version):
                    step.detail["waited_s"] = round(time.monotonic() - started, 3)
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise RollbackFailed(
                        f"{self.context.name} did not answer {version} within "
                        f"{format_duration(timeout)}; last answer: {seen or 'none'}"
                    )
                if now >= next_report:
                    self.context.progress(
                        f"waiting for {self.context.name} to answer {version}: "
                        f"{format_duration(now - started)} of {format_duration(timeout)}, "
                        f"last answer {seen or 'none'}"
                    )
                    next_report = now + 2.0
                # Nothing to subscribe to: the service's answer is the event. A probe costs
                # milliseconds, so polling often finds the new version as soon as it serves.
                time.sleep(min(POLL_INTERVAL, max(0.0, deadline - now)))

    def lock_path(self) -> Path:
        return self.current_link.with_name(f".{self.current_link.name}.rollback.lock")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "releases_dir": str(self.releases_dir),
            "current_link": str(self.current_link),
        }


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for ``process`` to exit: woken by the kernel (pidfd) where there is one.

    ``Popen.wait(timeout=...)`` polls with sleeps of up to 50 ms, which a rollback would pay on
    every command it runs.
    """
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3+: fall back to Popen's polling
        return process.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        raise subprocess.TimeoutExpired(process.args, timeout)
    return process.wait()
