"""Progress lines from an xdist worker, shown by the controller.

A worker's terminal goes nowhere, yet the runbook (and so the plan, the rollback's steps and the
"still running" lines) runs in a worker. Workers append their lines to a file in the run folder,
each with the number of test reports the worker had sent when it wrote the line. The controller
prints a line just before the first report the worker sent after it, so lines and dots keep the
worker's order; when no report comes for a while (during the rollback itself, say), a follower
thread prints what is there, so progress shows as it happens. The controller's own test lines are
written under the same lock: the two never cut into each other.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from ..rollback import run_files

PROGRESS_FILE = run_files.PROGRESS
FOLLOW_EVERY = 0.2  # seconds between the follower's looks at the file
QUIET_FOR = 0.5  # seconds without a report before the follower prints on its own


class WorkerProgress:
    """A worker's progress writer, registered as a plugin to count the reports it sends."""

    def __init__(self, run_dir: Path, worker: str, redact: Callable[[str], str]) -> None:
        self.path = run_dir / PROGRESS_FILE
        self.worker = worker
        self.redact = redact  # the file sits among the evidence while the run lasts: no secrets in it
        self.reports_sent = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports_sent += 1

    def write(self, message: str) -> None:
        line = {"worker": self.worker, "after": self.reports_sent, "message": self.redact(message)}
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")


class ProgressRelay:
    """On the controller: follows the workers' progress file and prints what they wrote."""

    def __init__(self, run_dir: Path, show: Callable[[str], None]) -> None:
        self.path = run_dir / PROGRESS_FILE
        self.show = show
        self._offset = 0
        self._waiting: list[dict[str, Any]] = []
        self._reports_seen: dict[str, int] = {}
        self._last_report = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, name="rollback-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Prints what is left and removes the file (the journal is the record, not this)."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            self._print(lambda line: True)
        self.path.unlink(missing_ok=True)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        worker = str(getattr(getattr(getattr(report, "node", None), "gateway", None), "id", ""))
        with self._lock:
            number = self._reports_seen.get(worker, 0) + 1
            # Lines the worker wrote before it sent this report come first.
            self._print(lambda line: line["after"] < (number if line["worker"] == worker else 1 + self._seen(line)))
            try:
                return (yield)
            finally:
                self._reports_seen[worker] = number
                self._last_report = time.monotonic()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> Generator[None, None, None]:
        with self._lock:
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> Generator[None, None, None]:
        with self._lock:
            return (yield)

    def _seen(self, line: dict[str, Any]) -> int:
        return self._reports_seen.get(str(line["worker"]), 0)

    def _print(self, due: Callable[[dict[str, Any]], bool]) -> None:
        """Prints the waiting lines that are due, in the order written; the caller holds the lock."""
        self._read()
        while self._waiting and due(self._waiting[0]):
            self.show(str(self._waiting.pop(0)["message"]))

    def _read(self) -> None:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        for text in complete.decode("utf-8", "replace").splitlines():
            try:
                line = json.loads(text)
                self._waiting.append({**line, "worker": str(line["worker"]), "after": int(line["after"])})
            except (ValueError, KeyError, TypeError):
                self._waiting.append({"worker": "", "after": 0, "message": text})

    def _follow(self) -> None:
        while not self._stop.wait(FOLLOW_EVERY):
            with self._lock:
                if time.monotonic() - self._last_report >= QUIET_FOR:
                    self._print(lambda line: True)
