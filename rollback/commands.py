"""Running a program the config names: an argument list (never a shell), in its own process group,
with one total deadline, its output kept in a file; and whether it can be run at all (preflight).

Every driver and action that runs a configured command (a restart, a deploy script, git, a hook)
goes through here, so all of them kill the whole group at the deadline and word failures alike.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .durations import format_duration
from .errors import RollbackFailed
from .targets.base import Finding


@dataclass(frozen=True)
class CommandRun:
    """One finished command: its argument list, exit code and (bounded) output."""

    argv: list[str]
    returncode: int
    output: str
    cut: int  # bytes of output left out (the first ones)
    duration_s: float

    def record(self) -> dict[str, Any]:
        return {
            "command": self.argv,
            "exit_code": self.returncode,
            "output": self.output,
            "output_cut_bytes": self.cut,
            "command_s": self.duration_s,
        }


class CommandTimedOut(RollbackFailed):
    """The command passed its deadline; its whole process group was killed."""

    def __init__(self, message: str, argv: list[str], timeout: float) -> None:
        super().__init__(message)
        self.argv = argv
        self.timeout = timeout


def run_command(
    argv: Sequence[str], *, cwd: Path, timeout: float, output_limit: int | None = 65536, what: str = "command"
) -> CommandRun:
    """Run ``argv`` (no shell) in its own process group with a total deadline.

    Output goes to a file, not a pipe: a daemon the command starts may keep a pipe open long after
    the command exits. Raises RollbackFailed, naming ``what``, when it cannot start, and
    CommandTimedOut when it passes its deadline (its whole process group is then killed); the exit
    code is the caller's to judge. ``output_limit`` keeps the last bytes (None: all of them).
    """
    argv = list(argv)
    started = time.monotonic()
    with tempfile.TemporaryFile() as output_file:
        try:
            process = _start(argv, cwd, output_file)
        except FileNotFoundError:
            relative = "/" in argv[0] and not os.path.isabs(argv[0])
            raise RollbackFailed(f"{what} not found: {argv[0]}" + (f" (from {cwd})" if relative else "")) from None
        except OSError as exc:
            # Not executable, a folder, a bad interpreter line: say so instead of a bare OSError.
            raise RollbackFailed(f"{what} could not be started: {argv[0]}: {exc.strerror}") from None
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            raise CommandTimedOut(
                f"{what} did not finish within {format_duration(timeout)}; its process group was killed: "
                f"{shlex.join(argv)}{_tail(output_file, 500)}",
                argv,
                timeout,
            ) from None
        except BaseException:
            kill_group(process)  # Ctrl-C: leave nothing running behind the journal's back
            raise
        size = output_file.seek(0, os.SEEK_END)
        cut = 0 if output_limit is None else max(0, size - output_limit)
        output_file.seek(cut)
        output = output_file.read().decode(errors="replace").strip()
    return CommandRun(argv, returncode, output, cut, round(time.monotonic() - started, 3))


# exec failures that say nothing about the program: the kernel could not start it this time (a
# script rewritten under us, a fork out of resources, the EFAULT a vfork start can hit while other
# threads run). The program never ran, so starting it again is safe.
TRANSIENT_START_ERRORS = frozenset({errno.EFAULT, errno.EAGAIN, errno.ETXTBSY, errno.EINTR, errno.ENOMEM})
START_ATTEMPTS = 3


def _start(argv: list[str], cwd: Path, output_file: IO[bytes]) -> subprocess.Popen[bytes]:
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a timeout ends all of it
            )
        except OSError as exc:
            if exc.errno not in TRANSIENT_START_ERRORS or attempt == START_ATTEMPTS:
                raise
            time.sleep(0.01 * attempt)  # a moment for the kernel, bounded: 30 ms at most in all
    raise AssertionError("unreachable")


def _tail(output_file: IO[bytes], limit: int) -> str:
    size = output_file.seek(0, os.SEEK_END)
    output_file.seek(max(0, size - limit))
    text = output_file.read().decode(errors="replace").strip()
    return f"; its last output: {text}" if text else ""


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def program_finding(name: str, program: str, cwd: Path, what: str) -> Finding:
    """Whether ``program`` (looked up as Popen will: PATH, or relative to ``cwd``) can be run."""
    if "/" in program:
        resolved: str | None = str(cwd / program)
        where = program if os.path.isabs(program) else f"{program} (from {cwd})"
    else:
        resolved = shutil.which(program)
        where = f"{program} (looked up in PATH)"
    if resolved is None or not os.path.exists(resolved):
        return Finding(name, False, f"{what} command not found: {where}")
    if os.path.isdir(resolved):
        return Finding(name, False, f"{what} command is a folder, not a program: {resolved}")
    if not os.access(resolved, os.X_OK):
        return Finding(name, False, f"{what} command is not executable: {resolved}")
    return Finding(name, True, f"{what} command {resolved} can be run")
