"""Running a proxy's own command line (``nginx -t``, ``haproxy -c``), bounded, as an argument list."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from rollback_harness.rollback.durations import format_duration
from rollback_harness.rollback.errors import RollbackFailed


class ProxyError(RollbackFailed):
    """A proxy command failed or a proxy did not answer; the message says which and how things stand."""


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
