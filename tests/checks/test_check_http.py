"""checks.http against a real server: statuses, bodies, and every way a request can fail."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from _checks_server import Service, closed_port_url, running_service, self_signed_certificate

from rollback_harness.checks.http import BODY_LIMIT, Probe, join_url, make_session, probe


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("http://h:1", "/x", "http://h:1/x"),
        ("http://h:1/", "/x", "http://h:1/x"),
        ("http://h:1", "x", "http://h:1/x"),
        ("http://h:1/app", "/x", "http://h:1/app/x"),
        ("http://h:1", "", "http://h:1"),
        ("http://h:1", "https://other:2/y", "https://other:2/y"),
        ("http://h:1", "HTTP://other/y", "HTTP://other/y"),
    ],
)
def test_join_url(base: str, path: str, expected: str) -> None:
    assert join_url(base, path) == expected


def test_probe_reads_status_and_body(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/version"), timeout=2.0)
    assert seen.ok_transport
    assert (seen.status, seen.body, seen.method) == (200, "v1.3.0\n", "GET")
    assert seen.elapsed > 0


def test_probe_sends_our_user_agent(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/user-agent"), timeout=2.0)
    assert seen.body.startswith("rollback-harness")


def test_probe_keeps_only_the_first_64_kib(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/big"), timeout=2.0)
    assert seen.status == 200
    assert len(seen.body) == BODY_LIMIT == 64 * 1024


def test_probe_reports_an_error_status_as_a_transport_success(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/status/503"), method="post", timeout=2.0)
    assert (seen.ok_transport, seen.status, seen.method) == (True, 503, "POST")


def test_probe_does_not_follow_redirects(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/redirect"), timeout=2.0)
    assert seen.status == 302


def test_connection_refused_is_an_error_not_an_exception() -> None:
    url = closed_port_url("/version")
    with make_session() as session:
        seen = probe(session, url, timeout=2.0)
    assert seen == Probe(url, "GET", None, seen.elapsed, "", "connection refused")
    assert not seen.ok_transport


def test_read_timeout_names_the_timeout(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/hang"), timeout=0.3)
    assert seen.error == "timed out after 0.3s"
    assert seen.status is None
    assert 0.3 <= seen.elapsed < 4.0


def test_a_body_that_trickles_in_is_cut_off(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/drip"), timeout=0.3)
    assert seen.error == "timed out after 0.3s reading the body"
    assert seen.status is None
    assert 0.3 <= seen.elapsed < 2.0


def test_connection_reset_is_reported(service: Service) -> None:
    with make_session() as session:
        seen = probe(session, service.url("/reset"), timeout=2.0)
    assert seen.error == "connection reset by peer"


def test_invalid_url_is_reported() -> None:
    with make_session() as session:
        seen = probe(session, "127.0.0.1:8080/version", timeout=2.0)
    assert seen.error is not None
    assert seen.error.startswith("invalid URL")


@pytest.fixture
def tls_service(tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    made = self_signed_certificate(tmp_path)
    if made is None:
        pytest.skip("the openssl command line tool is needed to make a test certificate")
    cert, key = made
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with running_service(tls=context) as running:
        yield running, cert


def test_untrusted_certificate_fails_by_default(tls_service: tuple[Service, Path]) -> None:
    service, _ = tls_service
    with make_session() as session:
        seen = probe(session, service.url("/version"), timeout=2.0)
    assert seen.error is not None
    assert seen.error.startswith("TLS certificate verification failed: ")
    assert "certificate" in seen.error.removeprefix("TLS certificate verification failed: ")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_works_without_verification(tls_service: tuple[Service, Path]) -> None:
    service, _ = tls_service
    with make_session(verify_tls=False) as session:
        seen = probe(session, service.url("/version"), timeout=2.0)
    assert (seen.error, seen.status) == (None, 200)


def test_tls_works_when_the_certificate_is_trusted(tls_service: tuple[Service, Path]) -> None:
    service, cert = tls_service
    with make_session() as session:
        session.verify = str(cert)
        seen = probe(session, service.url("/version"), timeout=2.0)
    assert (seen.error, seen.body) == (None, "v1.3.0\n")
