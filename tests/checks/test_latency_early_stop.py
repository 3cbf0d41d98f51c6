"""A latency check that stops taking samples once they fail it beyond doubt (the baseline of a
slow release, measured while the restore waits): fewer samples, and no more wrong "failed" verdicts
than its confidence allows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from fault_server import FaultServer

from rollback_harness.checks.http import Probe
from rollback_harness.checks.latency import LatencyThresholds, _enough_to_stop, check_latency
from rollback_harness.rollback.results import CheckResult
from rollback_harness.rollback.sampling import judge_bound

LIMIT = 0.1  # seconds: the p95 bound of the simulated checks


@pytest.fixture
def slow() -> Iterator[FaultServer]:
    with FaultServer(tail_every=1, tail_delay=0.05) as server:  # every answer takes 50 ms
        yield server


def _latency(url: str, p95: float, **overrides: Any) -> CheckResult:
    """The check as these tests run it: 20 samples, 4 at a time, stopping early unless told not to."""
    options: dict[str, Any] = {
        "samples": 20,
        "concurrency": 4,
        "timeout": 5.0,
        "min_samples": 10,
        "stop_at_failure": True,
    }
    options.update(overrides)
    return check_latency(url, thresholds=LatencyThresholds(p95=p95), **options)


def _check(server: FaultServer, *, stop_at_failure: bool) -> dict[str, object]:
    result = _latency(server.url("/slow-tail"), 0.02, concurrency=2, stop_at_failure=stop_at_failure)
    return {"status": result.status, "samples": result.measured["samples"], "summary": result.summary}


def test_a_slow_service_fails_in_a_few_samples_when_stopping_early(slow: FaultServer) -> None:
    early = _check(slow, stop_at_failure=True)
    assert early["status"] == "failed", early
    assert isinstance(early["samples"], int) and early["samples"] < 10, early  # 3 over of 3 decide it; 2 in flight
    assert "p95" in str(early["summary"]) and "stopped after" in str(early["summary"]), early

    full = _check(slow, stop_at_failure=False)
    assert full["status"] == "failed" and full["samples"] == 20, full
    assert "stopped after" not in str(full["summary"])


class _ThreeThenHang:
    """A loopback server: its first three requests answer after 50 ms; later ones hang until released."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.release = threading.Event()
        self.arrived = 0
        self.answered_late = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.arrived += 1
                    first = owner.arrived <= 3
                if first:
                    owner.release.wait(0.05)  # slow: over the 20 ms bound
                else:
                    owner.release.wait(10)
                    with owner._lock:
                        owner.answered_late += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_failure_beyond_doubt_does_not_wait_for_the_samples_in_flight() -> None:
    # 4 at a time: the three first answers decide the failure while the fourth hangs (up to 10 s,
    # within the 15 s timeout). The check returns with the three; the fourth is dropped, not awaited.
    server = _ThreeThenHang()
    try:
        result = _latency(server.url, 0.02, timeout=15.0)
        still_hanging = server.answered_late == 0
    finally:
        server.close()
    assert result.status == "failed", result.summary
    assert result.measured["samples"] == 3, result.summary
    assert "stopped after 3 of 20 samples: the failure was beyond doubt" in result.summary
    assert still_hanging and server.arrived >= 4  # the check came back while a sample was in flight


def test_a_service_that_answers_nothing_is_inconclusive_as_before_only_sooner() -> None:
    with FaultServer() as server:
        result = _latency(server.url("/reset"), 1.0)
    assert result.status == "inconclusive", result.summary
    assert result.measured["samples"] < 20 and "none of them succeeded" in result.summary


def test_a_fast_service_takes_every_sample_and_passes_as_before() -> None:
    with FaultServer(tail_every=1000, tail_delay=0.0) as server:
        result = _latency(server.url("/slow-tail"), 5.0)
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
