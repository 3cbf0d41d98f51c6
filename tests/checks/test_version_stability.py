"""The version check needs several matching answers in a row, within a total deadline."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests
from fault_server import FaultServer

from rollback_harness.checks.version import check_version


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def test_alternating_versions_fail_with_the_flaps_counted(faults: FaultServer, session: requests.Session) -> None:
    url = faults.url("/alternating-version")
    for _ in range(6):  # the 2 passes in 6 runs: now never
        result = check_version(session, url, timeout=2.0, expected="v1.3.0", consecutive=3, interval=0.01)
        assert result.status == "failed", result.summary
    assert result.summary.startswith("version not stable: needed 3 matching answers in a row, got v1.")
    assert result.summary.endswith("in 9 attempts (8 changes)")
    assert result.measured["answers"] == {"v1.2.9": 5, "v1.3.0": 4} or result.measured["answers"] == {
        "v1.3.0": 5,
        "v1.2.9": 4,
    }
    assert result.measured["flaps"] == 8


def test_alternating_versions_fail_without_an_expectation_too(faults: FaultServer, session: requests.Session) -> None:
    result = check_version(session, faults.url("/alternating-version"), timeout=2.0, consecutive=2, interval=0.01)
    assert result.status == "failed"
    assert result.summary.startswith("version not stable")


def test_a_stable_version_passes_after_n_answers(faults: FaultServer, session: requests.Session) -> None:
    result = check_version(
        session, faults.url("/version"), timeout=2.0, expected="v1.3.0", consecutive=3, interval=0.01
    )
    assert (result.status, result.summary) == ("passed", "live version v1.3.0 as expected")
    assert (result.measured["attempts"], result.measured["flaps"], result.measured["consecutive"]) == (3, 0, 3)
    assert faults.hits["version"] == 3


def test_a_wrong_but_stable_version_names_both(faults: FaultServer, session: requests.Session) -> None:
    result = check_version(
        session, faults.url("/version"), timeout=2.0, expected="v1.2.9", consecutive=2, interval=0.01
    )
    assert (result.status, result.summary) == ("failed", "live version v1.3.0, expected v1.2.9")
    assert result.measured["answers"] == {"v1.3.0": 6}


def test_a_deeply_nested_json_body_is_a_failed_check(faults: FaultServer, session: requests.Session) -> None:
    url = faults.url("/deep-json")
    result = check_version(session, url, timeout=5.0, json_field="version")
    assert (result.status, result.summary) == ("failed", f"GET {url}: body is JSON nested too deeply to read")


def test_trickled_headers_fail_the_version_check_within_its_deadline(
    faults: FaultServer, session: requests.Session
) -> None:
    started = time.monotonic()
    result = check_version(session, faults.url("/trickle-headers"), timeout=0.5, consecutive=3, interval=0.01)
    assert result.status == "failed"
    # The last probe may get only what is left of the check's own deadline ("after 0.48s").
    assert re.search(r"timed out after 0\.\d+s$", result.summary), result.summary
    # Total deadline: 3 x (0.5 + 0.01) + 0.5 s; "did not hang" bound, generous for a busy machine.
    assert time.monotonic() - started < 15


def test_the_right_version_between_failures_is_not_enough(session: requests.Session) -> None:
    # Version answers v1.3.0, /health-like flapping comes from a server that is stopped and gone.
    with FaultServer() as server:
        url = server.url("/version")
        passed = check_version(session, url, timeout=2.0, expected="v1.3.0", consecutive=2, interval=0.01)
    gone = check_version(session, url, timeout=2.0, expected="v1.3.0", consecutive=2, interval=0.01)
    assert passed.status == "passed"
    assert (gone.status, gone.summary) == ("failed", f"GET {url}: connection refused")
    assert gone.measured["answers"] == {"connection refused": 6}
