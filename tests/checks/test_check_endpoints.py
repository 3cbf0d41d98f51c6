"""checks.endpoints against a real server."""

from __future__ import annotations

import json

import requests
from _checks_server import Service

from rollback_harness.checks.endpoints import check_endpoint


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
