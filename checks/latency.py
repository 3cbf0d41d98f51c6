"""The latency check: percentiles and error rate over concurrent requests."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests

from ..rollback.results import CheckResult
from ..rollback.sampling import Verdict, binomial_at_least, judge_bound, mann_whitney_worse, samples_to_pass
from ._common import format_ms, to_ms
from .http import Probe, ProxyEnvironment, make_session, probe, url_path

PERCENTILES = (50, 95, 99)
# Successful latencies kept in ``measured["samples_ms"]`` for the report's picture (the first ones).
PLOTTED_SAMPLES = 1000


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
    confidence: float = 0.95,
    max_samples: int | None = None,
    baseline: Sequence[float] | None = None,
    baseline_tolerance: float = 0.1,
    samples_out: list[float] | None = None,
    name: str | None = None,
    stop_at_failure: bool = False,
) -> CheckResult:
    """Send ``samples`` requests, ``concurrency`` at a time, and judge latency and errors.

    Each percentile bound is judged by an exact binomial test at ``confidence`` on the number
    of samples over it (rollback/sampling.py). While a bound cannot be decided, more samples
    are taken in rounds, up to ``max_samples`` in all (default: at least 4 x ``samples``, and
    enough for every bound to be able to pass); still undecided then, the result is
    inconclusive, never passed. Percentiles cover successful samples only (transport ok and
    status expected); with fewer than ``min_samples`` of those the result is inconclusive.

    With ``baseline`` (the successful latencies of an earlier run, in seconds), the samples must
    also be no slower than the baseline x (1 + ``baseline_tolerance``): a one-sided Mann-Whitney
    test at ``confidence``, as Kayenta judges a canary. ``samples_out`` receives the successful
    latencies, to serve as a later run's baseline.

    ``stop_at_failure``: stop taking the first round's samples once those taken fail the check
    beyond doubt (see ``EARLY_LOOK_SHARE``): a slow or failing service is measured in a few
    samples instead of all of them. The result is judged on the samples taken, as usual.
    """
    _validate(samples, concurrency, min_samples)
    budget = max_samples if max_samples is not None else default_budget(samples, thresholds, confidence)
    if budget < samples:
        raise ValueError(f"max_samples ({budget}) must be at least samples ({samples})")
    check_name = name if name is not None else f"latency[{url_path(url)}]"
    environment = ProxyEnvironment.read()
    probes: list[Probe] = []
    enough = (
        partial(_enough_to_stop, expect_status, thresholds, samples, concurrency, confidence)
        if stop_at_failure
        else None
    )
    with _thread_sessions(verify_tls, environment) as session_for_thread:
        round_size = samples
        while True:
            probes += _sample(session_for_thread, url, method, round_size, concurrency, timeout, enough)
            early = enough is not None and len(probes) < samples
            enough = None  # only the first round stops early: its looks are the ones counted below
            # A bound failed beyond doubt is judged on the samples taken; a service that answered
            # none is judged as usual (too few successes: inconclusive), only sooner.
            failed_bound = early and bool(_good(probes, expect_status))
            result = _judge(check_name, url, probes, expect_status, min_samples, thresholds, confidence, failed_bound)
            if early:
                why = "the failure was beyond doubt" if failed_bound else "none of them succeeded"
                note = f" (stopped after {len(probes)} of {samples} samples: {why})"
                result = CheckResult(result.name, result.status, result.summary + note, result.measured)
            if result.status != "inconclusive" or result.measured["undecided"] == [] or len(probes) >= budget:
                good = _good(probes, expect_status)
                if samples_out is not None:
                    samples_out.extend(good)
                if baseline and good and result.status != "inconclusive":
                    return _compared(result, list(baseline), good, baseline_tolerance, confidence)
                return result
            round_size = min(budget - len(probes), max(samples, _to_decide(result, thresholds, confidence)))


# A failure decided early, before every planned sample, must be this much surer than the final
# decision: with up to ``samples`` looks at 1/(10 x samples) of the error rate each, stopping early
# adds at most a tenth of 1 - confidence to the chance of a wrong "failed" (Bonferroni).
EARLY_LOOK_SHARE = 10


def _enough_to_stop(
    expect_status: Sequence[int],
    thresholds: LatencyThresholds,
    planned: int,
    concurrency: int,
    confidence: float,
    done: list[Probe],
) -> bool:
    """True when more samples cannot change the outcome: a bound already failed beyond doubt, or
    the service answered none of the first ``concurrency`` samples (down, or not answering)."""
    good = _good(done, expect_status)
    if not good:
        return len(done) >= concurrency
    alpha = (1 - confidence) / (EARLY_LOOK_SHARE * planned)
    for label, limit in _bounds(thresholds):
        over = sum(1 for elapsed in good if elapsed > limit)
        q = float(label.removeprefix("p"))
        if over and binomial_at_least(over, len(good), 1 - q / 100) <= alpha:
            return True
    return False


def default_budget(samples: int, thresholds: LatencyThresholds, confidence: float) -> int:
    needed = [samples_to_pass(q, confidence) for q in PERCENTILES if thresholds.limits()[f"p{q}"] is not None]
    return max([4 * samples, *needed])


def _to_decide(result: CheckResult, thresholds: LatencyThresholds, confidence: float) -> int:
    """More samples needed for the undecided bounds to pass if no new sample is over them."""
    more = 0
    for label in result.measured["undecided"]:
        bound = result.measured["bounds"][label]
        more = max(more, samples_to_pass(float(label.removeprefix("p")), confidence, bound["over"]) - bound["n"])
    return more


def _validate(samples: int, concurrency: int, min_samples: int) -> None:
    if samples < 1 or concurrency < 1:
        raise ValueError(f"samples and concurrency must be at least 1, got {samples}, {concurrency}")
    if not 0 <= min_samples <= samples:
        raise ValueError(f"min_samples must be within 0..samples ({samples}), got {min_samples}")


def _sample(
    session_for_thread: Callable[[], requests.Session],
    url: str,
    method: str,
    count: int,
    concurrency: int,
    timeout: float,
    enough: Callable[[list[Probe]], bool] | None = None,
) -> list[Probe]:
    """``count`` probes on daemon threads: an interrupted run never waits for them to end.

    ``enough``: asked after each probe with those done so far; True stops issuing new ones and
    returns the probes done at once: the samples still in flight cannot change the outcome, and
    waiting for them (400 ms each from a slow release, a whole timeout from a hung one) would only
    hold the restore back. They end on their own within ``timeout``; their answers are dropped.
    """
    results: list[Probe | None] = [None] * count
    indexes = iter(range(count))
    lock = threading.Lock()
    changed = threading.Condition(lock)
    done: list[Probe] = []
    stopped = False
    running = min(concurrency, count)

    def work() -> None:
        nonlocal stopped, running
        try:
            while True:
                with lock:
                    index = None if stopped else next(indexes, None)
                if index is None:
                    return
                try:
                    seen = probe(session_for_thread(), url, method=method, timeout=timeout)
                except Exception as exc:  # a bug, not the network: counted as an error sample
                    seen = Probe(url, method, None, 0.0, "", f"unexpected {type(exc).__name__}")
                with lock:
                    if stopped:  # decided without it
                        return
                    results[index] = seen
                    if enough is not None:
                        done.append(seen)
                        stopped = enough(done)
        finally:
            with lock:
                running -= 1
                changed.notify_all()

    for _ in range(running):
        threading.Thread(target=work, daemon=True, name="latency-sample").start()
    with lock:
        changed.wait_for(lambda: running == 0 or stopped)
        return [seen for seen in results if seen is not None]


@contextmanager
def _thread_sessions(verify_tls: bool, environment: ProxyEnvironment) -> Iterator[Callable[[], requests.Session]]:
    """Yield a function giving each thread its own session; close them all afterwards."""
    local = threading.local()
    created: list[requests.Session] = []
    lock = threading.Lock()

    def session_for_thread() -> requests.Session:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = make_session(verify_tls=verify_tls, environment=environment)
            local.session = session
            with lock:
                created.append(session)
        return session

    try:
        yield session_for_thread
    finally:
        with lock:
            for session in created:
                session.close()


def _judge(
    name: str,
    url: str,
    probes: list[Probe],
    expect_status: Sequence[int],
    min_samples: int,
    thresholds: LatencyThresholds,
    confidence: float,
    early: bool = False,
) -> CheckResult:
    """``early``: the samples were cut short because a bound fails beyond doubt (``_enough_to_stop``):
    judged on what was taken, without the minimum a pass would need."""
    good = [p.elapsed for p in probes if p.ok_transport and p.status in expect_status]
    errors = Counter(_error_key(p) for p in probes if not (p.ok_transport and p.status in expect_status))
    verdicts = _verdicts(good, thresholds, confidence)
    measured = _measured(url, probes, good, errors, thresholds, verdicts, confidence)
    if not early and (len(good) < min_samples or not good):
        summary = (
            f"only {len(good)} of {len(probes)} samples succeeded, "
            f"need {max(min_samples, 1)} to judge latency{_top_error(errors)}"
        )
        measured["undecided"] = []
        return CheckResult(name, "inconclusive", summary, measured)
    breaches: list[str] = []
    for label, limit in _bounds(thresholds):
        breach = _breach(label, good, limit, verdicts[label], confidence)
        if breach is not None:
            breaches.append(breach)
    rate = sum(errors.values()) / len(probes)
    if rate > thresholds.max_error_rate:
        breaches.append(f"error rate {rate:.1%} > {thresholds.max_error_rate:.1%}{_top_error(errors)}")
    if breaches:
        measured["undecided"] = []
        return CheckResult(name, "failed", "; ".join(breaches), measured)
    undecided = [label for label, verdict in verdicts.items() if verdict.decision == "inconclusive"]
    if undecided:
        parts = [_undecided(label, limit, verdicts[label], confidence) for label, limit in _bounds(thresholds)]
        summary = "; ".join(part for part in parts if part)
        return CheckResult(name, "inconclusive", summary, measured)
    return CheckResult(name, "passed", _passed_summary(good, len(probes), errors, verdicts, confidence), measured)


def _good(probes: list[Probe], expect_status: Sequence[int]) -> list[float]:
    return [p.elapsed for p in probes if p.ok_transport and p.status in expect_status]


def _compared(
    result: CheckResult, baseline: list[float], good: list[float], tolerance: float, confidence: float
) -> CheckResult:
    """``result`` judged also against the baseline's samples (no worse than them, with tolerance)."""
    comparison = mann_whitney_worse(baseline, good, tolerance=tolerance, confidence=confidence)
    measured = dict(result.measured)
    measured["baseline_comparison"] = {
        "worse": comparison.worse,
        "p_value": round(comparison.p_value, 6),
        "tolerance": tolerance,
        "baseline_samples": comparison.baseline_n,
        "baseline_p50_ms": to_ms(percentile(baseline, 50)),
        "samples": comparison.candidate_n,
    }
    base = (
        f"baseline p50 {format_ms(percentile(baseline, 50))} over {len(baseline)} samples, "
        f"{tolerance:.0%} tolerance, Mann-Whitney p={comparison.p_value:.3g}"
    )
    if comparison.worse:
        finding = f"slower than the baseline at {confidence:.0%} confidence ({base})"
        summary = finding if result.passed else f"{result.summary}; {finding}"
        return CheckResult(result.name, "failed", summary, measured)
    return CheckResult(result.name, result.status, f"{result.summary}; no worse than the baseline ({base})", measured)


def _bounds(thresholds: LatencyThresholds) -> list[tuple[str, float]]:
    return [(label, limit) for label, limit in thresholds.limits().items() if limit is not None]


def _verdicts(good: list[float], thresholds: LatencyThresholds, confidence: float) -> dict[str, Verdict]:
    verdicts = {}
    for label, limit in _bounds(thresholds):
        over = sum(1 for elapsed in good if elapsed > limit)
        verdicts[label] = judge_bound(len(good), over, float(label.removeprefix("p")), confidence)
    return verdicts


def _error_key(seen: Probe) -> str:
    return seen.error if seen.error is not None else f"status {seen.status}"


def _share(label: str) -> str:
    return f"{100 - float(label.removeprefix('p')):g}%"


def _breach(label: str, good: list[float], limit: float, verdict: Verdict, confidence: float) -> str | None:
    if verdict.decision != "failed":
        return None
    value = percentile(good, float(label.removeprefix("p")))
    return (
        f"{label} {format_ms(value)} > {format_ms(limit)}: {verdict.over} of {verdict.n} samples over "
        f"{format_ms(limit)}, more than {_share(label)} at {confidence:.0%} confidence"
    )


def _undecided(label: str, limit: float, verdict: Verdict, confidence: float) -> str | None:
    if verdict.decision != "inconclusive":
        return None
    return (
        f"{label} <= {format_ms(limit)} undecided: {verdict.over} of {verdict.n} samples over it, "
        f"too few samples to tell at {confidence:.0%} confidence (inconclusive, not passed)"
    )


def _top_error(errors: Counter[str]) -> str:
    if not errors:
        return ""
    error, count = errors.most_common(1)[0]
    return f" (most often: {error}, {count}x)"


def _passed_summary(
    good: list[float], total: int, errors: Counter[str], verdicts: dict[str, Verdict], confidence: float
) -> str:
    levels = ", ".join(f"p{q} {format_ms(percentile(good, q))}" for q in PERCENTILES)
    failed = sum(errors.values())
    noun = "error" if failed == 1 else "errors"
    summary = f"{levels} over {total} samples, {failed} {noun}"
    if verdicts:
        held = ", ".join(f"{label} ({v.over} of {v.n} over)" for label, v in verdicts.items())
        summary += f"; bounds met at {confidence:.0%} confidence: {held}"
    return summary


def _measured(
    url: str,
    probes: list[Probe],
    good: list[float],
    errors: Counter[str],
    thresholds: LatencyThresholds,
    verdicts: dict[str, Verdict],
    confidence: float,
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
    measured["confidence"] = confidence
    measured["bounds"] = {
        label: {
            "decision": v.decision,
            "n": v.n,
            "over": v.over,
            "p_pass": round(v.p_pass, 6),
            "p_fail": round(v.p_fail, 6),
        }
        for label, v in verdicts.items()
    }
    measured["undecided"] = [label for label, v in verdicts.items() if v.decision == "inconclusive"]
    measured["samples_ms"] = [to_ms(seconds) for seconds in good[:PLOTTED_SAMPLES]]
    return measured
