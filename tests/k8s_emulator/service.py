"""A Service stand-in: one loopback URL that answers as the deployment's ready pods, round robin.

Pods are records here, so the "pod" answers from its record: ``/version`` is the image tag of its
first container, ``/health`` and every other path answer ``ok``. With no ready pod behind the
selector every request gets 503, as a Service without endpoints refuses connections. A rollout
half way really answers from two versions.
"""

from __future__ import annotations

import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .controller import Controller
from .store import Store


def image_tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


class Service:
    def __init__(self, store: Store, selector: dict[str, str], namespace: str = "default") -> None:
        self.store = store
        self.selector = selector
        self.namespace = namespace
        self._turn = itertools.count()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                pod = service.next_pod()
                if pod is None:
                    code, body = 503, b"no endpoints available for service\n"
                elif self.path.split("?")[0] == "/version":
                    code, body = 200, image_tag(pod["spec"]["containers"][0].get("image", "")).encode()
                else:
                    code, body = 200, b"ok"
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def next_pod(self) -> dict[str, Any] | None:
        with self.store.cond:
            ready = [
                pod
                for pod in self.store.list("pods", self.namespace)
                if Controller.is_ready(pod)
                and all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in self.selector.items())
            ]
        if not ready:
            return None
        return ready[next(self._turn) % len(ready)]

    def start(self) -> Service:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
