"""Percentile bounds judged with the sampling error in view (rollback/sampling.py)."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_server import FaultServer

from rollback_harness.checks.latency import LatencyThresholds, check_latency
from rollback_harness.rollback.sampling import (
    binomial_at_least,
    binomial_at_most,
    judge_bound,
    samples_to_pass,
)


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer(tail_every=4, tail_delay=0.3) as server:
        yield server


@pytest.mark.parametrize(("q", "needed"), [(50, 5), (90, 29), (95, 59), (99, 299)])
def test_samples_needed_to_ever_pass(q: float, needed: int) -> None:
    assert samples_to_pass(q, 0.95) == needed
    assert judge_bound(needed, 0, q, 0.95).decision == "passed"
    assert judge_bound(needed - 1, 0, q, 0.95).decision == "inconclusive"


def test_samples_needed_with_exceedances_and_a_higher_confidence() -> None:
    assert samples_to_pass(99, 0.95, over=1) == 473
    assert samples_to_pass(99, 0.99) == 459
    n = samples_to_pass(95, 0.95, over=3)
    assert judge_bound(n, 3, 95, 0.95).decision == "passed"
    assert judge_bound(n - 1, 3, 95, 0.95).decision == "inconclusive"


def test_binomial_tails_match_the_closed_forms() -> None:
    assert binomial_at_most(0, 20, 0.05) == pytest.approx(0.95**20)
    assert binomial_at_least(1, 20, 0.05) == pytest.approx(1 - 0.95**20)
    assert binomial_at_most(3, 10, 0.5) == pytest.approx(sum(math.comb(10, i) for i in range(4)) / 1024)
    assert binomial_at_most(5, 100_000, 0.01) < 1e-300 or binomial_at_most(5, 100_000, 0.01) == 0.0


def test_a_few_slow_samples_decide_nothing_on_their_own() -> None:
    # The issue: with 200 samples, p99 is the 198th value; 2 or 3 slow ones decide it by chance.
    assert judge_bound(200, 2, 99, 0.95).decision == "inconclusive"
    assert judge_bound(200, 3, 99, 0.95).decision == "inconclusive"
    assert judge_bound(200, 6, 99, 0.95).decision == "failed"


def test_undecided_bounds_take_more_samples_then_pass(faults: FaultServer) -> None:
    result = check_latency(
        faults.url("/ok"),
        samples=20,
        concurrency=4,
        timeout=5.0,
        min_samples=10,
        thresholds=LatencyThresholds(p95=5.0),
    )
    assert result.status == "passed", result.summary
    assert result.measured["samples"] == 59  # 20, then the 39 more that could decide it
    assert result.measured["bounds"]["p95"] == {
        "decision": "passed",
        "n": 59,
        "over": 0,
        "p_pass": pytest.approx(0.0485, abs=1e-3),
        "p_fail": 1.0,
    }
    assert result.measured["confidence"] == 0.95
    assert result.summary.endswith("bounds met at 95% confidence: p95 (0 of 59 over)")


def test_without_the_budget_to_decide_it_is_inconclusive_not_passed(faults: FaultServer) -> None:
    result = check_latency(
        faults.url("/ok"),
        samples=20,
        concurrency=4,
        timeout=5.0,
        min_samples=10,
        thresholds=LatencyThresholds(p99=5.0),
        max_samples=40,
    )
    assert result.status == "inconclusive"
    assert result.measured["samples"] == 40
    assert result.summary == (
        "p99 <= 5000 ms undecided: 0 of 40 samples over it, too few samples to tell at 95% confidence "
        "(inconclusive, not passed)"
    )


def test_a_slow_tail_fails_the_bound(faults: FaultServer) -> None:
    # Every 4th request takes 0.3 s: a quarter of the samples are over 0.1 s, far above 5 %.
    result = check_latency(
        faults.url("/slow-tail"),
        samples=20,
        concurrency=2,
        timeout=5.0,
        min_samples=10,
        thresholds=LatencyThresholds(p95=0.1),
    )
    assert result.status == "failed", result.summary
    bound = result.measured["bounds"]["p95"]
    assert bound["decision"] == "failed" and bound["over"] >= 4
    assert f"{bound['over']} of {bound['n']} samples over 100 ms, more than 5% at 95% confidence" in result.summary


INTERRUPTED_LATENCY = """
import sys
from rollback_harness.checks.latency import LatencyThresholds, check_latency
try:
    check_latency(sys.argv[1], samples=8, concurrency=4, timeout=120.0, min_samples=1,
                  thresholds=LatencyThresholds())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_an_interrupted_latency_sample_lets_the_process_exit(tmp_path: Path) -> None:
    script = tmp_path / "interrupted_latency.py"
    script.write_text(INTERRUPTED_LATENCY)
    with FaultServer() as server:
        process = subprocess.Popen(
            [sys.executable, str(script), server.url("/stall-before-headers")], stdout=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while server.hits["stall-before-headers"] < 4:
                assert process.poll() is None
                assert time.monotonic() < deadline, "the samples never reached the server"
                time.sleep(0.02)
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=20)  # joined sample threads would wait 120 s
        finally:
            process.kill()
    assert output == "interrupted\n"
