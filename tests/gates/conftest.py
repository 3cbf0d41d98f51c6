"""Fixtures of the gate tests: deployments in other states than the shared ``demo`` one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, make_deployment

from demo import deployment
from demo.deployment import Release


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[Deployment]:
    """The demo deployment with v1.2.9 live: a deploy that went well."""
    result = make_deployment(tmp_path / "deploy", live="v1.2.9")
    deployment.start(result.layout)
    try:
        yield result
    finally:
        deployment.stop(result.layout)


class Receiver:
    """A real webhook receiver on loopback: it records what is POSTed, and answers as told.

    ``mode``: "ok" answers 200, "fail" answers 500, "hang" reads the request and never answers
    (until the test ends).
    """

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                receiver.posts.append((self.path, dict(self.headers), body))
                if receiver.mode == "hang":
                    receiver.released.wait(120)
                    return
                status = 500 if receiver.mode == "fail" else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self, path: str | None = None) -> list[Any]:
        return [body for where, _, body in self.posts if path is None or where.startswith(path)]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[[str], Receiver]]:
    """Make receivers (``receivers("hang")``); all are shut down when the test ends."""
    made: list[Receiver] = []

    def make(mode: str = "ok") -> Receiver:
        made.append(Receiver(mode))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


CRASH_AFTER_S = 8.0


@pytest.fixture
def late_crash(tmp_path: Path) -> Iterator[Deployment]:
    """The demo deployment whose v1.2.9 passes verify, then crashes CRASH_AFTER_S seconds after it starts."""
    releases = (
        Release("v1.2.8"),
        Release("v1.2.9", crash_after_s=CRASH_AFTER_S),
        Release("v1.3.0", delay_ms=400, failing_paths=("/api/orders",)),
    )
    result = make_deployment(tmp_path / "deploy", releases=releases)
    deployment.start(result.layout)
    try:
        yield result
    finally:
        deployment.stop(result.layout)
