"""Running a proxy's own command line (``nginx -t``, ``haproxy -c``), bounded, as an argument list."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..durations import format_duration
from ..errors import RollbackFailed


class ProxyError(RollbackFailed):
    """A proxy command failed or a proxy did not answer; the message says which and how things stand."""


class ReloadNotApplied(ProxyError):
    """The proxy was told to reload but did not load the new config: it keeps running the one it had."""


def run(command: Sequence[str], timeout: float) -> tuple[int, str]:
    """``(exit code, output)`` of ``command``; raise ProxyError when it cannot run or overruns."""
    try:
        done = subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ProxyError(f"{command[0]}: no such program") from None
    except subprocess.TimeoutExpired:
        raise ProxyError(f"{' '.join(command)} did not finish within {format_duration(timeout)}") from None
    except OSError as exc:
        raise ProxyError(f"{command[0]} could not be started: {exc.strerror}") from None
    return done.returncode, (done.stdout + done.stderr).strip()


def children(parent: int) -> set[int]:
    """The processes whose parent is ``parent`` (Linux /proc; empty elsewhere)."""
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(parent):
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
