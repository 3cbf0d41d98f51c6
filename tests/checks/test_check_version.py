"""checks.version against a real server: plain and JSON versions, and what goes wrong."""

from __future__ import annotations

import pytest
import requests
from _checks_server import VERSION, Service, closed_port_url

from rollback_harness.checks.http import Probe
from rollback_harness.checks.version import check_version, read_version


def _probe(body: str) -> Probe:
    return Probe("http://h/version", "GET", 200, 0.01, body, None)


@pytest.mark.parametrize(
    ("body", "json_field", "expected"),
    [
        (" v1.2.9\n", None, ("v1.2.9", None)),
        ("v1.2.9", "", ("v1.2.9", None)),
        ("\n", None, (None, "body is empty")),
        ('{"version": "v2"}', "version", ("v2", None)),
        ('{"a": {"b": [{"c": "v3"}]}}', "a.b.0.c", ("v3", None)),
        ('{"build": {"number": 42}}', "build.number", ("42", None)),
        ('{"build": {}}', "build.version", (None, "field 'build.version' missing")),
        ('{"build": "v1"}', "build.version", (None, "field 'build.version' missing")),
        ('{"build": {"v": 1}}', "build", (None, "field 'build' is not a string (got dict)")),
        ('{"ok": true}', "ok", (None, "field 'ok' is not a string (got bool)")),
        ('{"v": " "}', "v", (None, "field 'v' is empty")),
        ("<html></html>", "version", (None, "body is not JSON")),
    ],
)
def test_read_version(body: str, json_field: str | None, expected: tuple[str | None, str | None]) -> None:
    assert read_version(_probe(body), json_field) == expected


def test_read_version_passes_on_a_transport_error() -> None:
    failed = Probe("http://h/version", "GET", None, 0.01, "", "connection refused")
    assert read_version(failed, None) == (None, "connection refused")


def test_plain_version_passes(service: Service, session: requests.Session) -> None:
    result = check_version(session, service.url("/version"), timeout=2.0)
    assert (result.name, result.status, result.summary) == (
        "version",
        "passed",
        f"live version {VERSION} on all 59 answers (rules out 1 wrong answer in 20 at 95% confidence)",
    )
    assert set(result.measured) == {
        "version", "expected", "status", "elapsed_ms", "attempts", "answers", "flaps", "last_answer",
        "needed", "detect_share", "confidence", "concurrency",
    }  # fmt: skip
    assert result.measured["answers"] == {VERSION: 59}
    assert result.measured["version"] == VERSION
    assert result.measured["status"] == 200


def test_json_version_equal_to_expected_passes(service: Service, session: requests.Session) -> None:
    result = check_version(
        session,
        service.url("/version.json"),
        timeout=2.0,
        json_field="build.version",
        expected=VERSION,
        name="verify-version",
    )
    assert (result.name, result.status) == ("verify-version", "passed")
    assert result.measured["expected"] == VERSION


def test_other_version_fails_naming_both(service: Service, session: requests.Session) -> None:
    result = check_version(session, service.url("/version"), timeout=2.0, expected="v1.2.9")
    assert result.status == "failed"
    assert result.summary == "live version v1.3.0, expected v1.2.9"
    assert result.measured["version"] == "v1.3.0"


def test_non_json_body_fails(service: Service, session: requests.Session) -> None:
    url = service.url("/html")
    result = check_version(session, url, timeout=2.0, json_field="version")
    assert (result.status, result.summary) == ("failed", f"GET {url}: body is not JSON")


def test_missing_field_fails(service: Service, session: requests.Session) -> None:
    url = service.url("/version.json")
    result = check_version(session, url, timeout=2.0, json_field="build.sha")
    assert result.status == "failed"
    assert result.summary.endswith("field 'build.sha' missing")


def test_error_status_fails(service: Service, session: requests.Session) -> None:
    url = service.url("/status/503")
    result = check_version(session, url, timeout=2.0)
    assert (result.status, result.summary) == ("failed", f"GET {url}: answered 503")
    assert result.measured["status"] == 503


def test_connection_refused_fails(session: requests.Session) -> None:
    url = closed_port_url("/version")
    result = check_version(session, url, timeout=2.0, expected="v1.2.9")
    assert (result.status, result.summary) == ("failed", f"GET {url}: connection refused")
    assert result.measured["version"] is None
    assert result.measured["status"] is None
