"""Progress lines from an xdist worker, shown by the controller.

A worker's terminal goes nowhere, yet the runbook (and so the plan, the rollback's steps and the
"still running" lines) runs in a worker. Workers append their lines to a file in the run folder;
the controller follows that file and prints each line as it arrives, on a line of its own. The
controller's own terminal lines (a test's dot, its node id) are written under the same lock, so the
two never cut into each other.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

PROGRESS_FILE = ".progress.jsonl"
FOLLOW_EVERY = 0.2  # seconds between looks at the file


def to_file(run_dir: Path) -> Callable[[str], None]:
    """A worker's progress writer: one JSON string per line (a message may hold newlines)."""
    path = run_dir / PROGRESS_FILE

    def write(message: str) -> None:
        with path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(message) + "\n")

    return write


class ProgressRelay:
    """On the controller: follows the workers' progress file and prints what they wrote."""

    def __init__(self, run_dir: Path, show: Callable[[str], None]) -> None:
        self.path = run_dir / PROGRESS_FILE
        self.show = show
        self._offset = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, name="rollback-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Prints what is left and removes the file (the journal is the record, not this)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.relay()
        self.path.unlink(missing_ok=True)

    def relay(self) -> None:
        with self._lock:
            try:
                with self.path.open("rb") as file:
                    file.seek(self._offset)
                    data = file.read()
            except FileNotFoundError:
                return
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            self._offset += len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                try:
                    message = json.loads(line)
                except ValueError:
                    message = line
                self.show(str(message))

    # The controller's hooks that write a test's progress to the terminal: one writer at a time.

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> Generator[None, None, None]:
        with self._lock:
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        with self._lock:
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> Generator[None, None, None]:
        with self._lock:
            return (yield)

    def _follow(self) -> None:
        while not self._stop.wait(FOLLOW_EVERY):
            self.relay()
