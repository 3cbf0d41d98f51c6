"""The rollback_http fixture: a user's gate cannot hang on a stalled service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

HANG_LIMIT = 30.0  # the stalled route gives up by itself after this, so a broken test cannot hang


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.path == "/hang":
            # Headers never come until the test is over: only a read timeout ends the wait.
            self.server.release.wait(HANG_LIMIT)
        body = b"v1.0.0"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    release: threading.Event


@pytest.fixture
def stalling_service() -> Iterator[str]:
    """A loopback service: /version answers at once, /hang does not answer."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def config(base_url: str, timeout: str) -> str:
    return f"""
[service]
name = "shop"
base_url = "{base_url}"
timeout = "{timeout}"
verify_tls = false

[targets.web]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""


def test_requests_default_to_the_service_timeout(pytester: pytest.Pytester, stalling_service: str) -> None:
    pytester.path.joinpath("rollback.toml").write_text(config(stalling_service, "1s"))
    pytester.path.joinpath("releases", "v1.0.0").mkdir(parents=True)
    pytester.path.joinpath("current").symlink_to("releases/v1.0.0")  # the census reads the live release
    pytester.makepyfile(
        test_user_gates="""
        import pytest
        import requests

        @pytest.mark.gate("verify")
        def test_a_stalled_call_times_out(rollback_http, rollback_base_url):
            with pytest.raises(requests.Timeout):
                rollback_http.get(rollback_base_url + "/hang")

        @pytest.mark.gate("verify")
        def test_set_up_like_the_probes(rollback_http, rollback_base_url):
            assert rollback_http.default_timeout == 1.0
            assert rollback_http.verify is False
            assert rollback_http.headers["User-Agent"].startswith("rollback-harness/")
            assert rollback_http.get(rollback_base_url + "/version").text == "v1.0.0"

        def test_a_timeout_of_the_call_wins(rollback_http, rollback_base_url):
            assert rollback_http.get(rollback_base_url + "/version", timeout=7).text == "v1.0.0"
            with pytest.raises(requests.Timeout):
                rollback_http.request("GET", rollback_base_url + "/hang", timeout=0.2)
        """
    )
    started = time.monotonic()

    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--rollback-gate",
        "verify",
        "--rollback-expect-version",
        "v1.0.0",
        "--rollback-report-dir",
        str(pytester.path / "r"),
    )

    result.assert_outcomes(passed=5)  # the version check, the census and the three user tests
    assert result.ret == 0
    assert time.monotonic() - started < HANG_LIMIT / 2  # did not wait for the stalled route to give up
