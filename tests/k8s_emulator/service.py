"""A Service stand-in: one loopback URL that answers as the deployment's ready pods, round robin.

With real pods (``Emulator(real_pods=True)``) it is a small HTTP proxy, as kube-proxy is: each request
goes to the next ready pod's process and its answer (status, headers, body) comes back; a pod whose
process refuses the connection (it is going away) is skipped for the next one, as a Service drains a
terminating pod. With record-only pods the "pod" answers from its record: ``/version`` is the image
tag of its first container, every other path answers ``ok``. With no ready pod behind the selector
every request gets 503, as a Service without endpoints. A rollout half way answers from two versions.
"""

from __future__ import annotations

import http.client
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .controller import Controller
from .pods import PodProcesses, image_tag
from .store import Store

UPSTREAM_TIMEOUT = 30.0  # seconds one proxied request may take (the client's own timeout is shorter)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

__all__ = ["Service", "image_tag"]


class Service:
    def __init__(
        self, store: Store, selector: dict[str, str], namespace: str = "default", pods: PodProcesses | None = None
    ) -> None:
        self.store = store
        self.selector = selector
        self.namespace = namespace
        self.pods = pods
        self._turn = itertools.count()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.answer()

            def do_HEAD(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.answer()

            def do_PUT(self) -> None:
                self.answer()

            def do_DELETE(self) -> None:
                self.answer()

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if service.pods is not None:
                    code, headers, data = service.proxy(self.command, self.path, dict(self.headers), body)
                else:
                    code, headers, data = service.from_record(self.path)
                self.send_response(code)
                length_of_get = next((v for k, v in headers if k.lower() == "content-length"), None)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # A HEAD answer carries the length a GET would have, and no body.
                head = self.command == "HEAD" and length_of_get is not None
                self.send_header("Content-Length", str(length_of_get) if head else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def ready_pods(self) -> list[dict[str, Any]]:
        with self.store.cond:
            return [
                pod
                for pod in self.store.list("pods", self.namespace)
                if Controller.is_ready(pod)
                and all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in self.selector.items())
            ]

    def next_pod(self) -> dict[str, Any] | None:
        ready = self.ready_pods()
        if not ready:
            return None
        return ready[next(self._turn) % len(ready)]

    def from_record(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        plain = [("Content-Type", "text/plain")]
        pod = self.next_pod()
        if pod is None:
            return 503, plain, b"no endpoints available for service\n"
        if path.split("?")[0] == "/version":
            return 200, plain, image_tag(pod["spec"]["containers"][0].get("image", "")).encode()
        return 200, plain, b"ok"

    def proxy(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """The request sent to the next ready pod; a pod that refuses or breaks off is skipped (each tried once)."""
        assert self.pods is not None
        ready = self.ready_pods()
        start = next(self._turn)
        forward = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        for step in range(len(ready)):
            port = self.pods.port_of(ready[(start + step) % len(ready)]["metadata"]["uid"])
            if port is None:
                continue
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=UPSTREAM_TIMEOUT)
            try:
                connection.request(method, path, body=body or None, headers=forward)
                answer = connection.getresponse()
                return answer.status, answer.getheaders(), answer.read()
            except (
                ConnectionRefusedError,
                ConnectionResetError,
                http.client.RemoteDisconnected,
                http.client.IncompleteRead,
            ):
                # A pod going away mid-answer: the next one answers, as a Service whose endpoints
                # drain before their pods stop (graceful termination) loses no request.
                continue
            except OSError as exc:
                return 504, [("Content-Type", "text/plain")], f"upstream pod: {exc}\n".encode()
            finally:
                connection.close()
        return 503, [("Content-Type", "text/plain")], b"no endpoints available for service\n"

    def start(self) -> Service:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
