"""A real HTTP service on 127.0.0.1 for the checks' tests, with scripted misbehaviour.

Routes:
    /version, /version.json   the version as plain text and as {"build": {"version": ...}}
    /html                     a body that is not JSON
    /api/orders               200 on GET, 201 on POST
    /status/NNN               answers status NNN
    /health                   answers the next status from ``health_script`` (the last repeats)
    /slow                     answers 200 after SLOW_DELAY seconds
    /hang                     answers only after HANG_DELAY seconds (or when the service stops)
    /drip                     sends its headers, then one body byte every DRIP_INTERVAL seconds
    /reset                    resets the connection (RST) without answering
    /big                      a 100 KiB body
    /user-agent               echoes the User-Agent header
    /every-fourth-fails       every fourth request answers 500
    /redirect                 302 to /version
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

VERSION = "v1.3.0"
SLOW_DELAY = 0.15
HANG_DELAY = 5.0
DRIP_INTERVAL = 0.1
DRIP_BYTES = 30
BIG_BODY = b"x" * (100 * 1024)


@dataclass
class ServiceState:
    """What the handler reads and counts; tests set ``health_script`` before probing."""

    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    health_script: list[int] = field(default_factory=lambda: [200])
    health_calls: int = 0
    counter: int = 0

    def next_health_status(self) -> int:
        with self.lock:
            index = min(self.health_calls, len(self.health_script) - 1)
            self.health_calls += 1
            return self.health_script[index]

    def next_count(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter


@dataclass
class Service:
    """A running service: its base URL and its state."""

    base_url: str
    state: ServiceState

    def url(self, path: str) -> str:
        return self.base_url + path


class _Server(ThreadingHTTPServer):
    state: ServiceState

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Resets and timeouts are the point of some routes: no tracebacks on stderr."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/status/"):
            status = int(path.removeprefix("/status/"))
            self._reply(status, f"status {status}")
            return
        route = _ROUTES.get(path)
        if route is None:
            self._reply(404, "not found")
        else:
            route(self)

    def _reply(
        self,
        status: int,
        body: str | bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def version(self) -> None:
        self._reply(200, VERSION + "\n")

    def version_json(self) -> None:
        document = {"build": {"version": VERSION, "number": 42}, "tags": ["stable"]}
        self._reply(200, json.dumps(document), "application/json")

    def html(self) -> None:
        self._reply(200, "<html><body>maintenance</body></html>", "text/html")

    def orders(self) -> None:
        self._reply(201 if self.command == "POST" else 200, '{"orders": []}', "application/json")

    def health(self) -> None:
        status = self.server.state.next_health_status()
        self._reply(status, "ok" if status < 400 else "unhealthy")

    def slow(self) -> None:
        self.server.state.stop.wait(SLOW_DELAY)
        self._reply(200, "slow")

    def hang(self) -> None:
        self.server.state.stop.wait(HANG_DELAY)
        self._reply(200, "late")

    def drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(DRIP_BYTES))
        self.end_headers()
        for _ in range(DRIP_BYTES):
            if self.server.state.stop.wait(DRIP_INTERVAL):
                return
            self.wfile.write(b".")

    def reset(self) -> None:
        linger_now = struct.pack("ii", 1, 0)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_now)
        self.connection.close()
        self.close_connection = True

    def big(self) -> None:
        self._reply(200, BIG_BODY)

    def user_agent(self) -> None:
        self._reply(200, self.headers.get("User-Agent", ""))

    def every_fourth_fails(self) -> None:
        failing = self.server.state.next_count() % 4 == 0
        self._reply(500 if failing else 200, "boom" if failing else "ok")

    def redirect(self) -> None:
        self._reply(302, "", headers={"Location": "/version"})


_ROUTES: dict[str, Callable[[_Handler], None]] = {
    "/version": _Handler.version,
    "/version.json": _Handler.version_json,
    "/html": _Handler.html,
    "/api/orders": _Handler.orders,
    "/health": _Handler.health,
    "/slow": _Handler.slow,
    "/hang": _Handler.hang,
    "/drip": _Handler.drip,
    "/reset": _Handler.reset,
    "/big": _Handler.big,
    "/user-agent": _Handler.user_agent,
    "/every-fourth-fails": _Handler.every_fourth_fails,
    "/redirect": _Handler.redirect,
}


@contextmanager
def running_service(tls: ssl.SSLContext | None = None) -> Iterator[Service]:
    """Serve on 127.0.0.1 (a free port) in a thread; ready as soon as it is bound."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ServiceState()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield Service(f"{scheme}://127.0.0.1:{server.server_address[1]}", server.state)
    finally:
        server.state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port that nothing listens on: connections to it are refused."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port: int = probe_socket.getsockname()[1]
    return port


def closed_port_url(path: str = "/") -> str:
    """A URL on a loopback port that nothing listens on."""
    return f"http://127.0.0.1:{closed_port()}{path}"


def self_signed_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A certificate for IP 127.0.0.1 and its key made by the openssl CLI, or None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    return (cert, key) if done.returncode == 0 else None
