"""A phase's checks run once, quick ones together, latency ones alone after them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from plugins.items import CheckSpec
from plugins.phase import PhaseChecks
from rollback.results import CheckResult


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
    phase = PhaseChecks(run=object(), phase="verify", specs=specs)  # type: ignore[arg-type]

    assert phase.result("latency[/]").summary == "started after ['a', 'b']"
    assert phase.result("endpoint[/a]").summary == "a in verify"
    assert phase.result("health").passed
    assert sorted(calls) == ["a", "b", "latency[/]"]  # each check ran exactly once


def test_a_check_that_raises_reaches_its_item() -> None:
    def broken(run: object, phase: str) -> CheckResult:
        raise RuntimeError("probe bug")

    phase = PhaseChecks(run=object(), phase="verify", specs=[CheckSpec("latency[/]", broken)])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="probe bug"):
        phase.result("latency[/]")
