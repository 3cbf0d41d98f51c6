"""A phase's checks run once, quick ones together, latency ones alone after them."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from rollback_harness.plugins import phase as phase_module
from rollback_harness.plugins.items import CheckSpec
from rollback_harness.plugins.phase import PhaseChecks
from rollback_harness.rollback.results import CheckResult


def fake_run(progress: list[str] | None = None) -> Any:
    """What PhaseChecks reads of a run: its progress line writer and the service's URL."""
    lines = progress if progress is not None else []
    service = SimpleNamespace(base_url="http://127.0.0.1:9")
    return SimpleNamespace(progress=lines.append, config=SimpleNamespace(settings=SimpleNamespace(service=service)))


def test_quick_checks_overlap_and_latency_runs_alone_after_them() -> None:
    both_quick_running = threading.Barrier(2, timeout=10)
    finished: list[str] = []
    calls: list[str] = []

    def quick(name: str) -> Any:
        def run(run: object, phase: str) -> CheckResult:
            calls.append(name)
            both_quick_running.wait()  # raises BrokenBarrierError unless both run at once
            finished.append(name)
            return CheckResult(name, "passed", f"{name} in {phase}")

        return run

    def latency(run: object, phase: str) -> CheckResult:
        calls.append("latency[/]")
        return CheckResult("latency[/]", "passed", f"started after {sorted(finished)}")

    specs = [CheckSpec("endpoint[/a]", quick("a")), CheckSpec("latency[/]", latency), CheckSpec("health", quick("b"))]
    phase = PhaseChecks(run=fake_run(), phase="verify", specs=specs)

    assert phase.result("latency[/]").summary == "started after ['a', 'b']"
    assert phase.result("endpoint[/a]").summary == "a in verify"
    assert phase.result("health").passed
    assert sorted(calls) == ["a", "b", "latency[/]"]  # each check ran exactly once


def test_a_check_that_raises_reaches_its_item() -> None:
    def broken(run: object, phase: str) -> CheckResult:
        raise RuntimeError("probe bug")

    phase = PhaseChecks(run=fake_run(), phase="verify", specs=[CheckSpec("latency[/]", broken)])
    with pytest.raises(RuntimeError, match="probe bug"):
        phase.result("latency[/]")


def test_a_long_check_says_it_is_still_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phase_module, "PROGRESS_EVERY", 0.05)
    lines: list[str] = []

    def slow(run: object, phase: str) -> CheckResult:
        # Finishes only once the waiting item has reported progress (or fails after 10 s).
        deadline = time.monotonic() + 10
        while not any("still running latency[/]" in line for line in lines):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return CheckResult("latency[/]", "passed", "slow but fine")

    phase = PhaseChecks(run=fake_run(lines), phase="baseline", specs=[CheckSpec("latency[/]", slow)])

    assert phase.result("latency[/]").summary == "slow but fine"
    assert lines[0] == "baseline: running 1 check against http://127.0.0.1:9"
