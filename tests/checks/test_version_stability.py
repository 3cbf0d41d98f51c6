"""The version check judges every answer it gathers: one from another version fails it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests
from fault_server import FaultServer

from rollback_harness.checks.version import Sampling, check_version

FEW = Sampling(detect_share=0.3, confidence=0.95, concurrency=2, pause=0.0)  # 9 answers


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def test_alternating_versions_fail_with_both_counted(faults: FaultServer, session: requests.Session) -> None:
    url = faults.url("/alternating-version")
    for _ in range(6):
        result = check_version(session, url, timeout=2.0, expected="v1.3.0", sampling=FEW)
        assert result.status == "failed", result.summary
        assert result.summary.startswith("a replica is still on another version: v1."), result.summary
        answers = result.measured["answers"]
        assert set(answers) == {"v1.2.9", "v1.3.0"} and sum(answers.values()) == 9
        assert result.measured["flaps"] >= 1


def test_the_old_version_is_named_as_such(faults: FaultServer, session: requests.Session) -> None:
    url = faults.url("/alternating-version")
    result = check_version(session, url, timeout=2.0, expected="v1.3.0", old="v1.2.9", sampling=FEW)
    assert re.fullmatch(r"a replica is still on the old version: v1\.\d\.\d on \d of 9 answers, v1\.\d\.\d on \d",
                        result.summary), result.summary  # fmt: skip


def test_alternating_versions_fail_without_an_expectation_too(faults: FaultServer, session: requests.Session) -> None:
    result = check_version(session, faults.url("/alternating-version"), timeout=2.0, sampling=FEW)
    assert result.status == "failed"
    assert result.summary.startswith("version not stable: v1.")


def test_a_stable_version_passes_after_every_answer_needed(faults: FaultServer, session: requests.Session) -> None:
    result = check_version(session, faults.url("/version"), timeout=2.0, expected="v1.3.0", sampling=FEW)
    assert (result.status, result.summary) == (
        "passed",
        "live version v1.3.0 as expected on all 9 answers (rules out 1 wrong answer in 3.33 at 95% confidence)",
    )
    assert (result.measured["attempts"], result.measured["flaps"], result.measured["needed"]) == (9, 0, 9)
    assert faults.hits["version"] == 9


def test_a_wrong_but_stable_version_names_both(faults: FaultServer, session: requests.Session) -> None:
    result = check_version(session, faults.url("/version"), timeout=2.0, expected="v1.2.9", sampling=FEW)
    assert (result.status, result.summary) == ("failed", "live version v1.3.0, expected v1.2.9")
    assert result.measured["answers"] == {"v1.3.0": 9}


def test_at_least_keeps_more_answers_than_the_share_needs(faults: FaultServer, session: requests.Session) -> None:
    sampling = Sampling(detect_share=0.3, confidence=0.95, concurrency=2, pause=0.0, at_least=12)
    result = check_version(session, faults.url("/version"), timeout=2.0, sampling=sampling)
    assert result.measured["attempts"] == 12


def test_a_deeply_nested_json_body_is_a_failed_check(faults: FaultServer, session: requests.Session) -> None:
    url = faults.url("/deep-json")
    result = check_version(session, url, timeout=5.0, json_field="version", sampling=FEW)
    assert (result.status, result.summary) == ("failed", f"GET {url}: body is JSON nested too deeply to read")


def test_trickled_headers_fail_the_version_check_within_its_deadline(
    faults: FaultServer, session: requests.Session
) -> None:
    started = time.monotonic()
    result = check_version(session, faults.url("/trickle-headers"), timeout=0.5, sampling=FEW)
    assert result.status == "failed"
    assert re.search(r"timed out after 0\.5s$", result.summary), result.summary
    assert result.measured["attempts"] <= FEW.concurrency  # stopped at the first request that got no answer
    assert time.monotonic() - started < 15  # "did not hang" bound, generous for a busy machine


def test_the_right_version_between_failures_is_not_enough(session: requests.Session) -> None:
    with FaultServer() as server:
        url = server.url("/version")
        passed = check_version(session, url, timeout=2.0, expected="v1.3.0", sampling=FEW)
    gone = check_version(session, url, timeout=2.0, expected="v1.3.0", sampling=FEW)
    assert passed.status == "passed"
    assert (gone.status, gone.summary) == ("failed", f"GET {url}: connection refused")
    assert 1 <= sum(gone.measured["answers"].values()) <= FEW.concurrency
