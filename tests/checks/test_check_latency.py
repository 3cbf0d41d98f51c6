"""checks.latency against a real server with a known injected delay."""

from __future__ import annotations

import json
import re

import pytest
from _checks_server import SLOW_DELAY, Service, closed_port_url

from rollback_harness.checks.latency import LatencyThresholds, check_latency, percentile


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 15.0), (5, 15.0), (30, 20.0), (40, 20.0), (50, 35.0), (95, 50.0), (100, 50.0)],
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([50.0, 15.0, 40.0, 20.0, 35.0], q) == expected


@pytest.mark.parametrize(("values", "q"), [([], 50.0), ([1.0], -1.0), ([1.0], 100.5)])
def test_percentile_rejects_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, q)


def test_slow_service_breaches_a_tight_threshold(service: Service) -> None:
    result = check_latency(
        service.url("/slow"),
        samples=8,
        concurrency=4,
        timeout=2.0,
        min_samples=4,
        thresholds=LatencyThresholds(p95=0.1),
    )
    assert (result.name, result.status) == ("latency[/slow]", "failed")
    # Every sample is over the bound: 8 of 8 already shows p95 above it at 95% confidence.
    assert re.fullmatch(
        r"p95 \d+ ms > 100 ms: 8 of 8 samples over 100 ms, more than 5% at 95% confidence", result.summary
    )
    assert result.measured["bounds"]["p95"]["decision"] == "failed"
    assert result.measured["p50_ms"] >= SLOW_DELAY * 1000
    assert result.measured["thresholds_ms"] == {"p50": None, "p95": 100.0, "p99": None}


def test_slow_service_passes_a_generous_threshold(service: Service) -> None:
    result = check_latency(
        service.url("/slow"),
        samples=8,
        concurrency=4,
        timeout=2.0,
        min_samples=4,
        thresholds=LatencyThresholds(p50=2.0),
        name="latency",
    )
    # p50 needs 5 samples, none over the bound, to pass at 95% confidence: 8 are enough.
    assert (result.name, result.status) == ("latency", "passed")
    assert result.summary.endswith("over 8 samples, 0 errors; bounds met at 95% confidence: p50 (0 of 8 over)")
    measured = result.measured
    assert measured["min_ms"] >= SLOW_DELAY * 1000
    assert measured["min_ms"] <= measured["p50_ms"] <= measured["p95_ms"] <= measured["max_ms"]
    assert (measured["samples"], measured["succeeded"], measured["failed"]) == (8, 8, 0)
    assert measured["errors"] == {}
    assert json.loads(json.dumps(measured)) == measured


def test_error_rate_is_judged(service: Service) -> None:
    url = service.url("/every-fourth-fails")
    tight = LatencyThresholds(max_error_rate=0.1)
    result = check_latency(url, samples=20, concurrency=4, timeout=2.0, min_samples=10, thresholds=tight)
    assert result.status == "failed"
    assert result.summary == "error rate 25.0% > 10.0% (most often: status 500, 5x)"
    assert (result.measured["error_rate"], result.measured["errors"]) == (0.25, {"status 500": 5})
    loose = LatencyThresholds(max_error_rate=0.3)
    again = check_latency(url, samples=20, concurrency=4, timeout=2.0, min_samples=10, thresholds=loose)
    assert again.status == "passed"
    assert again.summary.endswith("over 20 samples, 5 errors")


def test_too_few_successes_is_inconclusive() -> None:
    result = check_latency(
        closed_port_url("/api"),
        samples=5,
        concurrency=2,
        timeout=1.0,
        min_samples=3,
        thresholds=LatencyThresholds(p95=0.3),
    )
    assert result.status == "inconclusive"
    assert result.summary == (
        "only 0 of 5 samples succeeded, need 3 to judge latency (most often: connection refused, 5x)"
    )
    assert result.measured["errors"] == {"connection refused": 5}
    assert result.measured["p50_ms"] is None


@pytest.mark.parametrize(("samples", "concurrency", "min_samples"), [(0, 1, 0), (5, 0, 1), (5, 2, 6)])
def test_bad_parameters_are_refused(samples: int, concurrency: int, min_samples: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_latency(
            "http://127.0.0.1:1/",
            samples=samples,
            concurrency=concurrency,
            timeout=1.0,
            min_samples=min_samples,
            thresholds=LatencyThresholds(),
        )
