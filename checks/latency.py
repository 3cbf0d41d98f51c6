"""The latency check: percentiles and error rate over concurrent requests."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from rollback_harness.checks._common import format_ms, to_ms
from rollback_harness.checks.http import Probe, make_session, probe, url_path
from rollback_harness.rollback.results import CheckResult

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class LatencyThresholds:
    """Upper bounds in seconds (None: not judged), and the highest error rate allowed (0..1)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max_error_rate: float = 0.0

    def limits(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method.

    The result is always one of ``values``: the smallest value with at least ``q`` percent
    of the values at or below it (q=0 gives the minimum, q=100 the maximum).
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def check_latency(
    url: str,
    *,
    samples: int,
    concurrency: int,
    timeout: float,
    min_samples: int,
    thresholds: LatencyThresholds,
    method: str = "GET",
    verify_tls: bool = True,
    expect_status: Sequence[int] = (200,),
    name: str | None = None,
) -> CheckResult:
    """Send ``samples`` requests, ``concurrency`` at a time, and judge latency and errors.

    Percentiles cover successful samples only (transport ok and status expected); with fewer
    than ``min_samples`` of those the result is inconclusive.
    """
    _validate(samples, concurrency, min_samples)
    probes = _sample(url, method, samples, concurrency, timeout, verify_tls)
    check_name = name if name is not None else f"latency[{url_path(url)}]"
    return _judge(check_name, url, probes, expect_status, min_samples, thresholds)


def _validate(samples: int, concurrency: int, min_samples: int) -> None:
    if samples < 1 or concurrency < 1:
        raise ValueError(f"samples and concurrency must be at least 1, got {samples}, {concurrency}")
    if not 0 <= min_samples <= samples:
        raise ValueError(f"min_samples must be within 0..samples ({samples}), got {min_samples}")


def _sample(url: str, method: str, samples: int, concurrency: int, timeout: float, verify_tls: bool) -> list[Probe]:
    with _thread_sessions(verify_tls) as session_for_thread:

        def one(_: int) -> Probe:
            return probe(session_for_thread(), url, method=method, timeout=timeout)

        with ThreadPoolExecutor(max_workers=min(concurrency, samples)) as pool:
            return list(pool.map(one, range(samples)))


@contextmanager
def _thread_sessions(verify_tls: bool) -> Iterator[Callable[[], requests.Session]]:
    """Yield a function giving each thread its own session; close them all afterwards."""
    local = threading.local()
    created: list[requests.Session] = []
    lock = threading.Lock()

    def session_for_thread() -> requests.Session:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = make_session(verify_tls=verify_tls)
            local.session = session
            with lock:
                created.append(session)
        return session

    try:
        yield session_for_thread
    finally:
        for session in created:
            session.close()


def _judge(
    name: str,
    url: str,
    probes: list[Probe],
    expect_status: Sequence[int],
    min_samples: int,
    thresholds: LatencyThresholds,
) -> CheckResult:
    good = [p.elapsed for p in probes if p.ok_transport and p.status in expect_status]
    errors = Counter(_error_key(p) for p in probes if not (p.ok_transport and p.status in expect_status))
    measured = _measured(url, probes, good, errors, thresholds)
    if len(good) < min_samples or not good:
        summary = (
            f"only {len(good)} of {len(probes)} samples succeeded, "
            f"need {max(min_samples, 1)} to judge latency{_top_error(errors)}"
        )
        return CheckResult(name, "inconclusive", summary, measured)
    breaches = _breaches(good, len(probes), errors, thresholds)
    if breaches:
        return CheckResult(name, "failed", "; ".join(breaches), measured)
    return CheckResult(name, "passed", _passed_summary(good, len(probes), errors), measured)


def _error_key(seen: Probe) -> str:
    return seen.error if seen.error is not None else f"status {seen.status}"


def _breaches(good: list[float], total: int, errors: Counter[str], thresholds: LatencyThresholds) -> list[str]:
    found = []
    for label, limit in thresholds.limits().items():
        if limit is None:
            continue
        value = percentile(good, float(label.removeprefix("p")))
        if value > limit:
            found.append(f"{label} {format_ms(value)} > {format_ms(limit)}")
    rate = sum(errors.values()) / total
    if rate > thresholds.max_error_rate:
        found.append(f"error rate {rate:.1%} > {thresholds.max_error_rate:.1%}{_top_error(errors)}")
    return found


def _top_error(errors: Counter[str]) -> str:
    if not errors:
        return ""
    error, count = errors.most_common(1)[0]
    return f" (most often: {error}, {count}x)"


def _passed_summary(good: list[float], total: int, errors: Counter[str]) -> str:
    levels = ", ".join(f"p{q} {format_ms(percentile(good, q))}" for q in PERCENTILES)
    failed = sum(errors.values())
    noun = "error" if failed == 1 else "errors"
    return f"{levels} over {total} samples, {failed} {noun}"


def _measured(
    url: str,
    probes: list[Probe],
    good: list[float],
    errors: Counter[str],
    thresholds: LatencyThresholds,
) -> dict[str, Any]:
    failed = sum(errors.values())
    measured: dict[str, Any] = {
        "url": url,
        "samples": len(probes),
        "succeeded": len(good),
        "failed": failed,
        "error_rate": round(failed / len(probes), 4),
    }
    for q in PERCENTILES:
        measured[f"p{q}_ms"] = to_ms(percentile(good, q)) if good else None
    measured["max_ms"] = to_ms(max(good)) if good else None
    measured["min_ms"] = to_ms(min(good)) if good else None
    measured["thresholds_ms"] = {
        label: None if limit is None else to_ms(limit) for label, limit in thresholds.limits().items()
    }
    measured["max_error_rate"] = thresholds.max_error_rate
    measured["errors"] = dict(sorted(errors.items()))
    return measured
