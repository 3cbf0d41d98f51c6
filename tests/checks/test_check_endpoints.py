"""checks.endpoints against a real server."""

from __future__ import annotations

import json
import re

import requests
from _checks_server import Service
from fault_server import Backend, FaultServer, Pool

from rollback_harness.checks.endpoints import check_endpoint
from rollback_harness.checks.version import Sampling


def test_expected_status_passes(service: Service, session: requests.Session) -> None:
    url = service.url("/api/orders")
    result = check_endpoint(session, url, timeout=2.0)
    assert (result.name, result.status) == ("endpoint[/api/orders]", "passed")
    assert result.summary.startswith("GET /api/orders answered 200 in ")
    assert result.summary.endswith(" ms")
    assert result.measured == {
        "method": "GET",
        "url": url,
        "status": 200,
        "expected_status": [200],
        "elapsed_ms": result.measured["elapsed_ms"],
        "body_excerpt": '{"orders": []}',
    }
    json.dumps(result.measured)


def test_other_status_fails(service: Service, session: requests.Session) -> None:
    result = check_endpoint(session, service.url("/status/500"), timeout=2.0, name="orders")
    assert (result.name, result.status) == ("orders", "failed")
    assert result.summary == "GET /status/500 answered 500, expected 200"


def test_method_and_accepted_statuses(service: Service, session: requests.Session) -> None:
    url = service.url("/api/orders")
    result = check_endpoint(session, url, method="POST", expect_status=(200, 201), timeout=2.0)
    assert result.status == "passed"
    assert result.summary.startswith("POST /api/orders answered 201 in ")
    wrong = check_endpoint(session, url, method="POST", expect_status=(200, 204), timeout=2.0)
    assert wrong.summary == "POST /api/orders answered 201, expected 200 or 204"


def test_body_excerpt_is_short(service: Service, session: requests.Session) -> None:
    result = check_endpoint(session, service.url("/big"), timeout=2.0)
    assert result.measured["body_excerpt"] == "x" * 200


def test_connection_reset_fails(service: Service, session: requests.Session) -> None:
    url = service.url("/reset")
    result = check_endpoint(session, url, timeout=2.0)
    assert (result.status, result.summary) == ("failed", f"GET {url}: connection reset by peer")
    assert result.measured["status"] is None


def test_timeout_fails(service: Service, session: requests.Session) -> None:
    url = service.url("/hang")
    result = check_endpoint(session, url, timeout=0.2)
    assert (result.status, result.summary) == ("failed", f"GET {url}: timed out after 0.2s")


def test_one_wrong_answer_among_good_ones_fails_as_flapping(session: requests.Session) -> None:
    # A balancer alternating a good and a failing replica: the first answer is good, the second is not.
    pool = Pool((Backend("v1.2.9", 200), Backend("v1.2.9", 500)), order="round-robin")
    with FaultServer(pool=pool) as server:
        url = server.url("/api/orders")
        result = check_endpoint(session, url, timeout=2.0, sampling=Sampling(concurrency=1))
    assert result.status == "failed"
    assert result.summary == (
        "GET /api/orders answered 500, expected 200 on 1 of 2 answers (1 answered as expected: flapping); "
        "stopped at the first wrong answer"
    )
    assert (result.measured["attempts"], result.measured["failures"], result.measured["status"]) == (2, 1, 500)
    assert result.measured["answers"] == {"answered 200": 1, "answered 500": 1}


def test_too_few_answers_within_the_deadline_is_inconclusive(session: requests.Session) -> None:
    # 59 answers cannot arrive in 20 ms: good answers, but not enough of them to judge.
    with FaultServer(pool=Pool((Backend("v1.2.9"),))) as server:
        result = check_endpoint(session, server.url("/api/orders"), timeout=2.0, sampling=Sampling(), deadline=0.02)
    assert result.status == "inconclusive", result.summary
    assert result.measured.get("failures", 0) == 0
    assert result.summary == "no answer within 0.02s" or re.fullmatch(
        r"GET /api/orders answered 200 on all \d+ answers, but 59 are needed to rule out 1 failing answer in 20 "
        r"at 95% confidence: the rest did not arrive within 0.02s",
        result.summary,
    )
