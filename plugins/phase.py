"""Runs a phase's checks once, concurrently, and hands each item its own result.

The first item of a phase starts every selected check of that phase: the quick ones (version,
health, endpoints, database) together on a thread pool, then the latency checks one at a time
once the quick ones are done, so that no other probe's traffic skews a latency sample. Each
item then waits only for its own result. A phase of many endpoints takes about as long as
its slowest check instead of the sum of them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, TimeoutError, wait
from typing import TYPE_CHECKING

from rollback_harness.rollback.results import CheckResult

if TYPE_CHECKING:
    from rollback_harness.plugins.items import CheckSpec
    from rollback_harness.plugins.state import HarnessRun

MAX_PARALLEL_PROBES = 16
PROGRESS_EVERY = 5.0  # seconds between "still running" lines while an item waits


def is_latency(spec: CheckSpec) -> bool:
    return spec.key.startswith("latency[")


class PhaseChecks:
    def __init__(self, run: HarnessRun, phase: str, specs: Sequence[CheckSpec]) -> None:
        self.run = run
        self.phase = phase
        self.specs = list(specs)
        self._futures: dict[str, Future[CheckResult]] = {}
        self._started = threading.Lock()

    def result(self, key: str) -> CheckResult:
        with self._started:
            if not self._futures:
                self._start()
        if key not in self._futures:
            # Not among the selected checks when the phase started (cannot happen through
            # pytest; kept for direct callers): run it alone.
            spec = next(spec for spec in self.specs if spec.key == key)
            return spec.run(self.run, self.phase)
        return self._wait_for(key)

    def _wait_for(self, key: str) -> CheckResult:
        """The check's result; a long one (a big latency sample) says it is still going."""
        future = self._futures[key]
        started = time.monotonic()
        while True:
            try:
                return future.result(timeout=PROGRESS_EVERY)
            except TimeoutError:
                waited = time.monotonic() - started
                self.run.progress(f"{self.phase}: still running {key} ({waited:.0f} s so far)")

    def _start(self) -> None:
        quick = [spec for spec in self.specs if not is_latency(spec)]
        slow = [spec for spec in self.specs if is_latency(spec)]
        count = f"{len(self.specs)} check{'' if len(self.specs) == 1 else 's'}"
        self.run.progress(f"{self.phase}: running {count} against {self.run.config.settings.service.base_url}")
        pool = ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_PROBES, len(quick))), thread_name_prefix="probe")
        for spec in quick:
            self._futures[spec.key] = pool.submit(spec.run, self.run, self.phase)
        pool.shutdown(wait=False)
        pending: list[tuple[CheckSpec, Future[CheckResult]]] = [(spec, Future()) for spec in slow]
        for spec, future in pending:
            self._futures[spec.key] = future
        quick_futures = [self._futures[spec.key] for spec in quick]
        threading.Thread(target=self._run_in_turn, args=(quick_futures, pending), name="latency", daemon=True).start()

    def _run_in_turn(
        self, before: list[Future[CheckResult]], pending: list[tuple[CheckSpec, Future[CheckResult]]]
    ) -> None:
        wait(before)
        for spec, future in pending:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(spec.run(self.run, self.phase))
            except BaseException as exc:  # handed to the item, which reports it as an error
                future.set_exception(exc)
