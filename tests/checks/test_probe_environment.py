"""Probes read the proxy environment once, when the session is made, never per request."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest
from fault_server import FaultServer

from rollback_harness.checks.http import ProxyEnvironment, make_session, probe
from rollback_harness.checks.latency import LatencyThresholds, check_latency


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def test_proxies_are_read_by_name_lower_case_first() -> None:
    environment = ProxyEnvironment.read(
        {"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:1", "HTTPS_PROXY": "http://s:1", "NO_PROXY": ""}
    )
    assert environment.proxies == {"http": "http://lower:1", "https": "http://s:1"}
    assert environment.no_proxy == ()


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("example.com", "http://api.example.com/x", True),
        (".example.com", "http://example.com/x", True),
        ("example.com", "http://badexample.com/x", False),
        ("127.0.0.0/8", "http://127.0.0.2:9/x", True),
        ("10.0.0.1", "http://127.0.0.1/x", False),
        ("*", "http://anything/x", True),
        ("[::1]", "http://[::1]:8080/x", True),
    ],
)
def test_no_proxy_entries(no_proxy: str, url: str, bypassed: bool) -> None:
    environment = ProxyEnvironment.read({"http_proxy": "http://proxy:1", "no_proxy": no_proxy})
    assert environment.proxies_for(url) == ({} if bypassed else {"http": "http://proxy:1"})


def test_the_proxy_from_the_environment_is_used_even_after_it_is_unset(
    faults: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", faults.base_url)
    session = make_session()
    monkeypatch.delenv("http_proxy")
    with session:
        # Nothing listens on 127.0.0.2:9; the proxy (the fault server) answers "ok" for it.
        seen = probe(session, "http://127.0.0.2:9/version", timeout=5.0)
    assert (seen.status, seen.body) == (200, "ok")


def test_no_proxy_sends_the_request_directly(faults: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # no proxy there: it would be refused
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with make_session() as session:
        seen = probe(session, faults.url("/version"), timeout=5.0)
    assert (seen.status, seen.body) == (200, "v1.3.0\n")


def test_probes_survive_another_thread_changing_the_environment(faults: FaultServer) -> None:
    """pytest's main thread sets and unsets PYTEST_CURRENT_TEST while checks run on workers.

    requests, trusting the environment, walks os.environ on every request and died with
    KeyError when a variable vanished mid-walk; a probe session never walks it.
    """
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for index in range(50):
                os.environ[f"ROLLBACK_HARNESS_CHURN_{index}"] = "x"
            for index in range(50):
                os.environ.pop(f"ROLLBACK_HARNESS_CHURN_{index}", None)

    churner = threading.Thread(target=churn, daemon=True)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, as a busy machine does: the race shows
    churner.start()
    try:
        result = check_latency(
            faults.url("/ok"),
            samples=300,
            concurrency=4,
            timeout=5.0,
            min_samples=300,
            thresholds=LatencyThresholds(max_error_rate=0.0),
        )
        with make_session() as session:
            single = [probe(session, faults.url("/version"), timeout=5.0) for _ in range(100)]
    finally:
        stop.set()
        churner.join(timeout=10)
        sys.setswitchinterval(switch_interval)
    assert result.measured["errors"] == {}, result.summary
    assert result.status == "passed", result.summary
    assert all(seen.error is None for seen in single)


def test_upper_case_http_proxy_is_ignored_under_cgi() -> None:
    environment = ProxyEnvironment.read({"HTTP_PROXY": "http://from-a-header:1", "REQUEST_METHOD": "GET"})
    assert environment.proxies == {}
