"""A latency check that stops taking samples once they fail it beyond doubt (the baseline of a
slow release, measured while the restore waits): fewer samples, and no more wrong "failed" verdicts
than its confidence allows."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from fault_server import FaultServer

from rollback_harness.checks.http import Probe
from rollback_harness.checks.latency import LatencyThresholds, _enough_to_stop, check_latency
from rollback_harness.rollback.sampling import judge_bound

LIMIT = 0.1  # seconds: the p95 bound of the simulated checks


@pytest.fixture
def slow() -> Iterator[FaultServer]:
    with FaultServer(tail_every=1, tail_delay=0.05) as server:  # every answer takes 50 ms
        yield server


def _check(server: FaultServer, *, stop_at_failure: bool) -> dict[str, object]:
    result = check_latency(
        server.url("/slow-tail"),
        samples=20,
        concurrency=2,
        timeout=5.0,
        min_samples=10,
        thresholds=LatencyThresholds(p95=0.02),
        stop_at_failure=stop_at_failure,
    )
    return {"status": result.status, "samples": result.measured["samples"], "summary": result.summary}


def test_a_slow_service_fails_in_a_few_samples_when_stopping_early(slow: FaultServer) -> None:
    early = _check(slow, stop_at_failure=True)
    assert early["status"] == "failed", early
    assert isinstance(early["samples"], int) and early["samples"] < 10, early  # 3 over of 3 decide it; 2 in flight
    assert "p95" in str(early["summary"]) and "stopped after" in str(early["summary"]), early

    full = _check(slow, stop_at_failure=False)
    assert full["status"] == "failed" and full["samples"] == 20, full
    assert "stopped after" not in str(full["summary"])


def test_a_service_that_answers_nothing_is_inconclusive_as_before_only_sooner() -> None:
    with FaultServer() as server:
        result = check_latency(
            server.url("/reset"),
            samples=20,
            concurrency=4,
            timeout=5.0,
            min_samples=10,
            thresholds=LatencyThresholds(p95=1.0),
            stop_at_failure=True,
        )
    assert result.status == "inconclusive", result.summary
    assert result.measured["samples"] < 20 and "none of them succeeded" in result.summary


def test_a_fast_service_takes_every_sample_and_passes_as_before() -> None:
    with FaultServer(tail_every=1000, tail_delay=0.0) as server:
        result = check_latency(
            server.url("/slow-tail"),
            samples=20,
            concurrency=4,
            timeout=5.0,
            min_samples=10,
            thresholds=LatencyThresholds(p95=5.0),
            stop_at_failure=True,
        )
    assert result.status == "passed" and result.measured["samples"] == 59, result.summary


def _sequence(rng: random.Random, share_over: float, count: int) -> list[Probe]:
    return [
        Probe("http://x/", "GET", 200, LIMIT * (2 if rng.random() < share_over else 0.5), "ok", None)
        for _ in range(count)
    ]


def _fails(probes: list[Probe], samples: int) -> tuple[bool, int]:
    """The check's rule on one stream of samples: looks after each one, then the final judgement."""
    thresholds = LatencyThresholds(p95=LIMIT)
    for taken in range(1, samples + 1):
        if _enough_to_stop((200,), thresholds, samples, 4, 0.95, probes[:taken]):
            return True, taken
    over = sum(1 for p in probes if p.elapsed > LIMIT)
    return judge_bound(samples, over, 95, 0.95).decision == "failed", samples


def test_stopping_early_keeps_wrong_failures_within_the_confidence() -> None:
    # A service exactly at its p95 bound (5 % of answers over it) should be called failed at most
    # 5 % of the time; the early looks may add at most a tenth of that (EARLY_LOOK_SHARE).
    rng = random.Random(19)
    runs = 20_000
    wrong = sum(_fails(_sequence(rng, 0.05, 20), 20)[0] for _ in range(runs))
    assert wrong / runs <= 0.05 * 1.1, wrong / runs
    # ... and a clearly slow one (half its answers over) is caught, most often well before 20 samples.
    caught = [_fails(_sequence(rng, 0.5, 20), 20) for _ in range(2_000)]
    assert sum(failed for failed, _ in caught) / len(caught) >= 0.99
    assert sorted(taken for _, taken in caught)[len(caught) // 2] <= 10
