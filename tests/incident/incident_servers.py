"""Real loopback HTTP servers for the metrics tests: a Prometheus text endpoint whose body the
test sets, one that trickles its body, and one that derives its numbers from the demo app."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DRIP_INTERVAL = 0.2


@contextmanager
def metrics_server(body: Callable[[], str]) -> Iterator[str]:
    """Serves ``body()`` at /metrics, trickles at /drip (a byte every DRIP_INTERVAL), 500 at /broken.

    Yields the base URL (http://127.0.0.1:PORT).
    """
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                data = body().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    if stop.wait(DRIP_INTERVAL):
                        return
                    try:
                        self.wfile.write(b"#")
                        self.wfile.flush()
                    except OSError:
                        return
            else:
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def demo_exporter(demo_base_url: str) -> Callable[[], str]:
    """Metrics of the demo app as an exporter beside it would show them: v1.3.0 (the bad
    release) has served errors, the good releases none."""

    def body() -> str:
        with urllib.request.urlopen(demo_base_url + "/version", timeout=5) as answer:
            version = answer.read().decode().strip()
        errors = 7 if version == "v1.3.0" else 0
        return (
            "# HELP demo_http_requests_total Requests served.\n"
            "# TYPE demo_http_requests_total counter\n"
            f'demo_http_requests_total{{code="200",version="{version}"}} 120\n'
            f'demo_http_requests_total{{code="500",version="{version}"}} {errors}\n'
            f"# generated {time.time()}\n"
        )

    return body
