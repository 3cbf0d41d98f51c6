"""Every probe has one total deadline, whatever the server does (tests/fault_server.py)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _checks_server import self_signed_certificate
from fault_server import FaultServer

from rollback_harness.checks.http import make_session, probe

# "Did not hang": far above the timeouts used, far below what a hang would take.
DID_NOT_HANG = 10.0


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def test_trickled_headers_are_cut_at_the_total_timeout(faults: FaultServer) -> None:
    with make_session() as session:
        started = time.monotonic()
        seen = probe(session, faults.url("/trickle-headers"), timeout=1.0)
        took = time.monotonic() - started
    assert seen.error == "timed out after 1s"
    assert seen.status is None
    assert took < DID_NOT_HANG
    assert faults.hits["trickle-headers"] == 1


def test_a_caller_deadline_caps_the_probe(faults: FaultServer) -> None:
    with make_session() as session:
        started = time.monotonic()
        seen = probe(session, faults.url("/trickle-headers"), timeout=60.0, deadline=started + 0.5)
        took = time.monotonic() - started
    assert seen.error is not None and seen.error.startswith("timed out after 0.")
    assert took < DID_NOT_HANG


def test_a_passed_deadline_sends_nothing(faults: FaultServer) -> None:
    with make_session() as session:
        seen = probe(session, faults.url("/ok"), timeout=5.0, deadline=time.monotonic() - 1)
    assert seen.error == "not sent: the overall deadline had already passed"
    assert faults.hits["ok"] == 0


def test_a_stall_before_the_headers_times_out(faults: FaultServer) -> None:
    with make_session() as session:
        started = time.monotonic()
        seen = probe(session, faults.url("/stall-before-headers"), timeout=0.5)
    assert seen.error == "timed out after 0.5s"
    assert time.monotonic() - started < DID_NOT_HANG


def test_a_stall_after_the_headers_times_out_reading_the_body(faults: FaultServer) -> None:
    with make_session() as session:
        started = time.monotonic()
        seen = probe(session, faults.url("/stall-after-headers"), timeout=0.5)
    assert seen.error == "timed out after 0.5s reading the body"
    assert seen.status is None
    assert time.monotonic() - started < DID_NOT_HANG


def test_an_endless_body_is_cut_at_the_deadline(faults: FaultServer) -> None:
    with make_session() as session:
        started = time.monotonic()
        seen = probe(session, faults.url("/endless-body"), timeout=0.5)
    assert seen.error == "timed out after 0.5s reading the body"
    assert time.monotonic() - started < DID_NOT_HANG


def test_a_reset_is_a_failure_not_an_exception(faults: FaultServer) -> None:
    with make_session() as session:
        seen = probe(session, faults.url("/reset"), timeout=2.0)
    assert seen.error in ("connection reset by peer", "server closed the connection without a response")
    assert not seen.ok_transport


def test_a_redirect_loop_is_reported_not_followed(faults: FaultServer) -> None:
    with make_session() as session:
        seen = probe(session, faults.url("/redirect-forever"), timeout=2.0)
    assert (seen.status, seen.error) == (302, None)
    assert faults.hits["redirect-forever"] == 1


def test_the_session_works_again_after_a_cut(faults: FaultServer) -> None:
    with make_session() as session:
        cut = probe(session, faults.url("/stall-after-headers"), timeout=0.3)
        after = probe(session, faults.url("/version"), timeout=2.0)
    assert cut.error is not None
    assert (after.status, after.body, after.error) == (200, "v1.3.0\n", None)


def test_a_mode_given_to_the_server_applies_to_every_path() -> None:
    with FaultServer(mode="alternating-version") as server, make_session() as session:
        bodies = [probe(session, server.url("/version"), timeout=2.0).body for _ in range(4)]
    assert bodies == ["v1.2.9\n", "v1.3.0\n", "v1.2.9\n", "v1.3.0\n"]


def test_the_fault_server_stops_with_connections_still_open() -> None:
    server = FaultServer().start()
    with make_session() as session:
        probe(session, server.url("/stall-before-headers"), timeout=0.2)
    started = time.monotonic()
    server.stop()  # raises if any thread is still alive
    assert time.monotonic() - started < DID_NOT_HANG


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    made = self_signed_certificate(tmp_path)
    if made is None:
        pytest.skip("the openssl command line tool is needed to make a test certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*made)
    return context


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_trickled_headers_over_tls_are_cut_too(tls_context: ssl.SSLContext) -> None:
    with FaultServer(tls=tls_context) as server, make_session(verify_tls=False) as session:
        assert probe(session, server.url("/version"), timeout=5.0).body == "v1.3.0\n"
        started = time.monotonic()
        seen = probe(session, server.url("/trickle-headers"), timeout=1.0)
    assert seen.error == "timed out after 1s"
    assert time.monotonic() - started < DID_NOT_HANG


def test_a_tls_handshake_that_never_completes_times_out(faults: FaultServer) -> None:
    # An https URL to a plain-HTTP server: it waits for a request line that never comes.
    with make_session() as session:
        started = time.monotonic()
        seen = probe(session, faults.url("/ok").replace("http://", "https://"), timeout=0.5)
    assert seen.error == "timed out after 0.5s"
    assert time.monotonic() - started < DID_NOT_HANG


def test_many_probes_with_long_timeouts_do_not_pile_up_in_the_watchdog(faults: FaultServer) -> None:
    from rollback_harness.rollback import request_deadline as _deadline

    with make_session() as session:
        for _ in range(5000):
            watch = _deadline.start(time.monotonic() + 3600)
            _deadline.stop(watch)
        assert probe(session, faults.url("/ok"), timeout=3600).body == "ok"
    assert len(_deadline._WATCHDOG._heap) <= 2100  # purged at 2048, not 5000 and growing


def test_an_unparseable_url_is_a_failure_not_an_exception() -> None:
    with make_session() as session:
        seen = probe(session, "http://[::1/version", timeout=1.0)
    assert seen.error == "invalid URL: Invalid IPv6 URL"
