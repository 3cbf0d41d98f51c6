"""The health check: a number of passes in a row, with flapping counted."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import requests

from rollback_harness.checks._common import format_statuses, to_ms
from rollback_harness.checks.http import Probe, probe, url_path
from rollback_harness.rollback.results import CheckResult


@dataclass
class _Tally:
    """Running counts over the attempts made so far."""

    attempts: int = 0
    passes: int = 0
    failures: int = 0
    flaps: int = 0
    streak: int = 0
    fastest_pass: float | None = None
    last_passed: bool | None = None
    last_status: int | None = None
    last_error: str | None = None

    def record(self, seen: Probe, problem: str | None) -> None:
        passed = problem is None
        self.attempts += 1
        if passed:
            self.passes += 1
            self.streak += 1
            if self.fastest_pass is None or seen.elapsed < self.fastest_pass:
                self.fastest_pass = seen.elapsed
        else:
            self.failures += 1
            self.streak = 0
            self.flaps += 1 if self.last_passed else 0
        self.last_passed = passed
        self.last_status = seen.status
        self.last_error = problem


def check_health(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    expect_status: Sequence[int] = (200,),
    consecutive: int = 1,
    interval: float = 0.2,
    deadline: float | None = None,
    name: str = "health",
) -> CheckResult:
    """Passed after ``consecutive`` passes in a row; any failure resets the streak.

    Gives up after ``3 * consecutive`` attempts, or as soon as the streak can no longer be
    completed within ``deadline`` seconds (default ``consecutive * (timeout + interval) +
    timeout``), judging by the interval and the fastest pass seen so far.
    """
    if consecutive < 1:
        raise ValueError(f"consecutive must be at least 1, got {consecutive}")
    budget = deadline if deadline is not None else consecutive * (timeout + interval) + timeout
    start = time.monotonic()
    tally = _Tally()
    while True:
        seen = probe(session, url, timeout=timeout, deadline=start + budget)
        tally.record(seen, _problem(seen, expect_status))
        if tally.streak >= consecutive:
            break
        if tally.attempts >= 3 * consecutive or _out_of_time(tally, consecutive, interval, start + budget):
            break
        time.sleep(interval)
    return _result(name, url, tally, consecutive, time.monotonic() - start)


def _problem(seen: Probe, expect_status: Sequence[int]) -> str | None:
    if not seen.ok_transport:
        return seen.error
    if seen.status not in expect_status:
        return f"answered {seen.status}, expected {format_statuses(expect_status)}"
    return None


def _out_of_time(tally: _Tally, consecutive: int, interval: float, give_up_at: float) -> bool:
    """True when even the fastest possible remaining passes would end after ``give_up_at``."""
    remaining = consecutive - tally.streak
    earliest_end = time.monotonic() + remaining * (interval + (tally.fastest_pass or 0.0))
    return earliest_end > give_up_at


def _result(name: str, url: str, tally: _Tally, consecutive: int, took: float) -> CheckResult:
    measured = {
        "attempts": tally.attempts,
        "url": url,
        "passes": tally.passes,
        "failures": tally.failures,
        "flaps": tally.flaps,
        "last_status": tally.last_status,
        "last_error": tally.last_error,
        "elapsed_ms": to_ms(took),
    }
    flaps = f", {_plural(tally.flaps, 'flap')}" if tally.flaps else ""
    if tally.streak >= consecutive:
        summary = (
            f"GET {url_path(url)} healthy: {_plural(consecutive, 'pass')} in a row "
            f"after {_plural(tally.attempts, 'attempt')}{flaps}"
        )
        return CheckResult(name, "passed", summary, measured)
    summary = (
        f"GET {url_path(url)} not healthy: needed {_plural(consecutive, 'pass')} in a row, "
        f"got {tally.passes} of {_plural(tally.attempts, 'attempt')} in {took:.1f}s{flaps}; "
        f"last: {tally.last_error}"
    )
    return CheckResult(name, "failed", summary, measured)


def _plural(count: int, word: str) -> str:
    suffix = "es" if word.endswith("s") else "s"
    return f"{count} {word}" if count == 1 else f"{count} {word}{suffix}"
