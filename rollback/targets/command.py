"""A deployment driven by a team's own commands (the runbook's ``./deploy-version.sh v1.2.9 --rolling``).

Every command is an argument list with ``{version}`` put in place of that exact text; a shell
string in the config is refused, so nothing a version or a config value holds is ever parsed by
a shell. Each command runs with a total deadline: past it, its whole process group is killed.
Its output (stdout and stderr together, the last ``output_limit`` bytes) goes into the journal.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from ..commands import CommandRun, program_finding, run_command
from ..config import Duration, Section
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import sort_versions, version_problem
from .base import STEP_WAIT, Finding, Target, wait_for_version

PLACEHOLDER = "{version}"
MAX_WAIT = 24 * 3600.0
STEP_ROLLBACK = "run-rollback"


def _no_shell_string(value: object) -> object:
    """A string is a shell command line: refused, with the argument list it probably means."""
    if isinstance(value, str):
        try:
            suggestion = "[" + ", ".join(f'"{part}"' for part in shlex.split(value)) + "]"
        except ValueError:
            suggestion = '["./deploy-version.sh", "{version}", "--rolling"]'
        raise ValueError(
            "a shell string is not accepted: commands run as argument lists, never through a shell; "
            f"write it as a list, e.g. {suggestion}"
        )
    return value


def _program_first(value: list[str] | None) -> list[str] | None:
    if value is not None and (not value or not value[0].strip()):
        raise ValueError('expected an argument list whose first item names a program, e.g. ["./deploy-version.sh"]')
    if value is not None and PLACEHOLDER in value[0]:
        raise ValueError("the program (first item) may not contain {version}; put it in an argument")
    return value


def _bounded(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 24h, e.g. '30s', '5m' or '1h'")
    return value


# ``["./deploy-version.sh", "{version}", "--rolling"]``; a string is refused with a clear message.
ArgumentList = Annotated[list[str], BeforeValidator(_no_shell_string), AfterValidator(_program_first)]
BoundedDuration = Annotated[Duration, AfterValidator(_bounded)]
ExitCode = Annotated[int, Field(ge=0, le=255)]


class CommandSettings(Section):
    # Prints the live version (its output, stripped, is the version and the state token).
    live_version: ArgumentList
    # Prints the versions it can go back to, one per line (any order; sorted as versions).
    history: ArgumentList
    # Puts {version} live.
    rollback: ArgumentList
    # Optional: exits 0 when {version} can be deployed (preflight); changes nothing.
    deployable: ArgumentList | None = None
    # Folder the commands run in; relative to the config file's folder. Default: that folder.
    cwd: Path | None = None
    # Total deadline of a read command (live_version, history, deployable) and of the rollback.
    timeout: BoundedDuration = 30.0
    rollback_timeout: BoundedDuration = 1800.0
    # Exit codes of the rollback command that mean done, and that mean "it was already there".
    ok_codes: list[ExitCode] = Field(default=[0], min_length=1)
    already_codes: list[ExitCode] = []
    # The service must answer the target this many times in a row within ready_timeout.
    ready_timeout: BoundedDuration = 120.0
    ready_consecutive: int = Field(default=3, ge=1, le=100)
    # Bytes of each command's output kept (the last ones: errors come last).
    output_limit: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)


def substitute(argv: Sequence[str], version: str) -> list[str]:
    """``{version}`` replaced in every argument; nothing else is interpreted."""
    return [part.replace(PLACEHOLDER, version) for part in argv]


class CommandTarget(Target):
    kind = "command"
    settings_model = CommandSettings
    settings: CommandSettings

    @property
    def cwd(self) -> Path:
        return self.context.base_dir / (self.settings.cwd or ".")

    def _run(self, argv: Sequence[str], timeout: float | None = None) -> CommandRun:
        return run_command(
            argv, cwd=self.cwd, timeout=timeout or self.settings.timeout, output_limit=self.settings.output_limit
        )

    def _read(self, argv: Sequence[str], what: str) -> str:
        """The output of a read command that must exit 0."""
        run = self._run(argv)
        if run.returncode != 0:
            raise RollbackFailed(f"the {what} command exited {run.returncode}: {shlex.join(run.argv)}: {run.output}")
        return run.output

    def live_version(self) -> str:
        output = self._read(self.settings.live_version, "live_version")
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        if len(lines) != 1:
            shown = output[-200:] or "nothing"
            raise RollbackFailed(f"the live_version command printed {len(lines)} lines, expected one version: {shown}")
        problem = version_problem(lines[0])
        if problem is not None:
            raise RollbackFailed(f"the live_version command printed {problem}")
        return lines[0]

    def history(self) -> list[str]:
        output = self._read(self.settings.history, "history")
        names = [line.strip() for line in output.splitlines() if line.strip()]
        return sort_versions(name for name in names if version_problem(name) is None)

    def deployable(self, version: str) -> list[Finding]:
        if self.settings.deployable is None:
            return [Finding("target-deployable", True, f"{version} is in the history command's list")]
        run = self._run(substitute(self.settings.deployable, version))
        if run.returncode != 0:
            said = f": {run.output[-500:]}" if run.output else ""
            return [
                Finding(
                    "target-deployable", False, f"{shlex.join(run.argv)} exited {run.returncode} (not deployable){said}"
                )
            ]
        return [Finding("target-deployable", True, f"{shlex.join(run.argv)} says {version} can be deployed")]

    def observe(self) -> str:
        """What the live_version command prints: another deploy changes it."""
        try:
            return self.live_version()
        except RollbackFailed as exc:
            return f"(unreadable: {exc})"

    def command_findings(self) -> list[Finding]:
        if not self.cwd.is_dir():
            return [Finding("target-deployable", False, f"the commands' folder {self.cwd} does not exist")]
        findings = []
        for what in ("live_version", "history", "rollback", "deployable"):
            argv = getattr(self.settings, what)
            if argv is not None:
                findings.append(program_finding("target-deployable", argv[0], self.cwd, what))
        return findings

    def steps(self) -> list[str]:
        return [STEP_ROLLBACK, STEP_WAIT]

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        if STEP_ROLLBACK in steps:
            lines.append(
                f"run {shlex.join(substitute(self.settings.rollback, version))} in {self.cwd} "
                f"(up to {format_duration(self.settings.rollback_timeout)}; exit {_codes(self.settings.ok_codes)} "
                "is success)"
            )
        if STEP_WAIT in steps:
            lines.append(
                f"wait until the service answers {version} {self.settings.ready_consecutive} times in a row "
                f"(up to {format_duration(self.settings.ready_timeout)})"
            )
        return lines

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        if STEP_ROLLBACK not in steps:
            return
        if expected_state is not None:
            now = self.observe()
            if now != expected_state:
                raise Conflict(
                    f"the live_version command said {expected_state} at preflight and says {now} now "
                    "(another deploy or run changed it); this run stopped before running the rollback command"
                )
        argv = substitute(self.settings.rollback, version)
        with journal.step(STEP_ROLLBACK, command=argv, cwd=str(self.cwd)) as step:
            run = self._run(argv, self.settings.rollback_timeout)
            step.detail.update(run.record())
            if run.returncode in self.settings.already_codes:
                step.detail["note"] = f"exit {run.returncode}: the command says {version} was already there"
            elif run.returncode not in self.settings.ok_codes:
                raise RollbackFailed(
                    f"the rollback command exited {run.returncode} (success is {_codes(self.settings.ok_codes)}): "
                    f"{shlex.join(argv)}: {run.output[-1000:]}"
                )

    def wait_ready(self, version: str, journal: Journal) -> None:
        wait_for_version(
            self.context,
            version,
            journal,
            timeout=self.settings.ready_timeout,
            consecutive=self.settings.ready_consecutive,
        )

    def way_back(self, version: str) -> str:
        return f"cd {shlex.quote(str(self.cwd))} && {shlex.join(substitute(self.settings.rollback, version))}"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "cwd": str(self.cwd),
            "live_version": self.settings.live_version,
            "history": self.settings.history,
            "rollback": self.settings.rollback,
            "ok_codes": self.settings.ok_codes,
            "already_codes": self.settings.already_codes,
        }


def _codes(codes: Sequence[int]) -> str:
    return " or ".join(str(code) for code in codes)
