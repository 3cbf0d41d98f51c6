"""checks.health against a real server whose health endpoint flaps on a script."""

from __future__ import annotations

import requests
from _checks_server import Service, closed_port_url

from rollback_harness.checks.health import check_health


def test_one_pass_is_enough_by_default(service: Service, session: requests.Session) -> None:
    result = check_health(session, service.url("/health"), timeout=2.0)
    assert (result.name, result.status) == ("health", "passed")
    assert result.measured == {
        "url": service.url("/health"),
        "attempts": 1,
        "passes": 1,
        "failures": 0,
        "flaps": 0,
        "last_status": 200,
        "last_error": None,
        "elapsed_ms": result.measured["elapsed_ms"],
    }
    assert service.state.health_calls == 1


def test_a_failure_resets_the_streak(service: Service, session: requests.Session) -> None:
    service.state.health_script = [200, 503, 200, 200, 200]
    url = service.url("/health")
    result = check_health(session, url, timeout=2.0, consecutive=3, interval=0.01)
    assert result.status == "passed"
    assert result.summary == "GET /health healthy: 3 passes in a row after 5 attempts, 1 flap"
    measured = result.measured
    assert (measured["attempts"], measured["passes"], measured["failures"]) == (5, 4, 1)
    assert measured["flaps"] == 1


def test_flapping_service_fails_after_three_times_consecutive_attempts(
    service: Service, session: requests.Session
) -> None:
    service.state.health_script = [200, 503] * 10
    result = check_health(session, service.url("/health"), timeout=2.0, consecutive=2, interval=0.01, name="h")
    assert (result.name, result.status) == ("h", "failed")
    measured = result.measured
    assert (measured["attempts"], measured["passes"], measured["flaps"]) == (6, 3, 3)
    assert measured["last_status"] == 503
    assert measured["last_error"] == "answered 503, expected 200"
    assert "needed 2 passes in a row, got 3 of 6 attempts" in result.summary
    assert result.summary.endswith("3 flaps; last: answered 503, expected 200")
    assert service.state.health_calls == 6


def test_accepted_statuses(service: Service, session: requests.Session) -> None:
    service.state.health_script = [204]
    result = check_health(session, service.url("/health"), timeout=2.0, expect_status=(200, 204))
    assert result.status == "passed"


def test_unreachable_service_fails(session: requests.Session) -> None:
    result = check_health(session, closed_port_url("/health"), timeout=1.0, interval=0.01)
    assert result.status == "failed"
    assert result.measured["attempts"] == 3
    assert result.measured["last_error"] == "connection refused"
    assert result.measured["last_status"] is None
    assert result.summary.endswith("last: connection refused")


def test_gives_up_when_the_deadline_cannot_be_met(service: Service, session: requests.Session) -> None:
    result = check_health(session, service.url("/hang"), timeout=0.3, interval=0.05, deadline=0.5)
    assert result.status == "failed"
    assert result.measured["attempts"] == 2
    # The second probe is cut at what is left of the 0.5 s deadline, not given its full 0.3 s.
    assert result.measured["last_error"].startswith("timed out after 0.")
    assert result.measured["last_error"] != "timed out after 0.3s"
