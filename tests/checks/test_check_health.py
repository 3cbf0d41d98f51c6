"""checks.health against a real server whose health endpoint flaps on a script: every answer counts."""

from __future__ import annotations

import requests
from _checks_server import Service, closed_port_url

from rollback_harness.checks.health import check_health
from rollback_harness.checks.version import Sampling

# Few answers, for scripted servers: 5 answers rule out one unhealthy in two at 95 %.
FIVE = Sampling(detect_share=0.5, confidence=0.95, concurrency=1, pause=0.0)


def test_a_healthy_service_passes_on_every_answer_it_needs(service: Service, session: requests.Session) -> None:
    result = check_health(session, service.url("/health"), timeout=2.0)
    assert (result.name, result.status) == ("health", "passed")
    assert (
        result.summary == "GET /health healthy on all 59 answers (rules out 1 unhealthy answer in 20 at 95% confidence)"
    )
    measured = result.measured
    assert (measured["attempts"], measured["passes"], measured["failures"], measured["flaps"]) == (59, 59, 0, 0)
    assert (measured["needed"], measured["detect_share"], measured["confidence"]) == (59, 0.05, 0.95)
    assert service.state.health_calls == 59


def test_one_failure_among_passes_fails_as_flapping(service: Service, session: requests.Session) -> None:
    # The old rule passed this: three passes in a row after the 503.
    service.state.health_script = [200, 503, 200, 200, 200]
    result = check_health(session, service.url("/health"), timeout=2.0, sampling=FIVE)
    assert result.status == "failed"
    assert result.summary == "GET /health flapping: 1 of 5 answers unhealthy (answered 503, expected 200 x1), 4 healthy"
    measured = result.measured
    assert (measured["attempts"], measured["passes"], measured["failures"], measured["flaps"]) == (5, 4, 1, 2)
    assert measured["last_error"] == "answered 503, expected 200"


def test_a_failure_after_a_streak_still_fails(service: Service, session: requests.Session) -> None:
    service.state.health_script = [200, 200, 200, 200, 503]
    result = check_health(session, service.url("/health"), timeout=2.0, sampling=FIVE, name="h")
    assert (result.name, result.status) == ("h", "failed")
    assert "1 of 5 answers unhealthy" in result.summary


def test_accepted_statuses(service: Service, session: requests.Session) -> None:
    service.state.health_script = [204]
    result = check_health(session, service.url("/health"), timeout=2.0, expect_status=(200, 204), sampling=FIVE)
    assert result.status == "passed"


def test_unreachable_service_fails_at_the_first_refusal(session: requests.Session) -> None:
    one_at_a_time = Sampling(concurrency=1, pause=0.0)
    result = check_health(session, closed_port_url("/health"), timeout=1.0, sampling=one_at_a_time)
    assert result.status == "failed"
    assert result.measured["attempts"] == 1  # no answer at all: asking 58 more times tells nothing new
    assert result.measured["last_error"] == "connection refused"
    assert result.measured["last_status"] is None
    assert result.summary == (
        "GET /health not healthy: 1 of 1 answers unhealthy (connection refused x1); "
        "stopped at the first request that got no answer"
    )


def test_too_few_answers_within_the_deadline_is_inconclusive(service: Service, session: requests.Session) -> None:
    # /slow answers 200 after 0.2 s: one worker gets two or three answers in 0.5 s, 59 are needed.
    slow = Sampling(concurrency=1, pause=0.0)
    result = check_health(session, service.url("/slow"), timeout=2.0, sampling=slow, deadline=0.5)
    assert result.status == "inconclusive", result.summary
    assert 1 <= result.measured["attempts"] < 59
    assert "59 are needed to rule out 1 unhealthy answer in 20 at 95% confidence" in result.summary


def test_gives_up_when_the_deadline_cannot_be_met(service: Service, session: requests.Session) -> None:
    result = check_health(session, service.url("/hang"), timeout=0.3, sampling=FIVE, deadline=0.5)
    assert result.status == "failed"
    assert result.measured["attempts"] == 1
    assert result.measured["last_error"] == "timed out after 0.3s"


def test_a_slow_but_healthy_service_is_judged_not_cut_short(service: Service, session: requests.Session) -> None:
    # /slow answers after 0.15 s: 59 answers two at a time take about 4.5 s, within the default deadline.
    result = check_health(session, service.url("/slow"), timeout=2.0)
    assert result.status == "passed", result.summary
    assert result.measured["attempts"] == 59
