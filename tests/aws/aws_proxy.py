"""A loopback HTTP proxy in front of moto's server that misbehaves as AWS can, on purpose.

moto answers every call at once and well; AWS does not. Through this proxy (a real socket, one
thread per connection) the harness meets:

    throttle(n)              the next n calls answer 400 ThrottlingException (the query and
                             rest-xml protocols' error body), as AWS does under its rate limits
    throttle(n, after=A)     the same, for the n calls that follow the first call of action A
    unhealthy               DescribeTargetHealth says ``unhealthy`` (Target.FailedHealthChecks)
                             where moto says ``healthy``: a target that never passes its checks
    invalidation_stuck      GetInvalidation says ``InProgress`` where moto says it completed

moto decides health and invalidation status itself (registered = healthy; invalidations are
created COMPLETED) and has no switch for either, so the answer is rewritten here. ``calls``
lists each call's action, as the proxy saw it.
"""

from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs

THROTTLED = (
    b'<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">'
    b"<Error><Type>Sender</Type><Code>ThrottlingException</Code><Message>Rate exceeded</Message></Error>"
    b"<RequestId>throttled-by-the-test-proxy</RequestId></ErrorResponse>"
)
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class AwsProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.throttled_left = 0
        self.armed: tuple[str, int] | None = None  # (action, count): throttle(count) once action was answered
        self.throttled = 0
        self.unhealthy = False
        self.invalidation_stuck = False
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def throttle(self, count: int, after: str | None = None) -> None:
        with self._lock:
            if after is None:
                self.throttled_left = count
            else:
                self.armed = (after, count)

    def __enter__(self) -> AwsProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def _take_throttle(self) -> bool:
        with self._lock:
            if self.throttled_left <= 0:
                return False
            self.throttled_left -= 1
            self.throttled += 1
            return True

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        action = _action(method, path, body)
        with self._lock:
            self.calls.append(action)
        if self._take_throttle():
            return 400, [("Content-Type", "text/xml")], THROTTLED
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            upstream.request(method, path, body=body or None, headers=headers)
            response = upstream.getresponse()
            status, answer_headers, content = response.status, response.getheaders(), response.read()
        finally:
            upstream.close()
        if self.unhealthy and action == "DescribeTargetHealth":
            content = content.replace(
                b"<State>healthy</State>",
                b"<State>unhealthy</State><Reason>Target.FailedHealthChecks</Reason>"
                b"<Description>Health checks failed</Description>",
            )
        if self.invalidation_stuck and action == "GetInvalidation":
            content = re.sub(rb"<Status>[A-Za-z]+</Status>", b"<Status>InProgress</Status>", content)
        with self._lock:
            if self.armed is not None and self.armed[0] == action:
                self.throttled_left, self.armed = self.armed[1], None
        kept = [(k, v) for k, v in answer_headers if k.lower() not in _HOP_HEADERS]
        return status, kept, content

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                status, answer_headers, content = proxy.answer(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in answer_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler


def _action(method: str, path: str, body: bytes) -> str:
    """DescribeTargetHealth (query protocol: in the body), GetInvalidation (CloudFront: the path)."""
    if method == "POST" and body:
        found = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if found:
            return found[0]
    if "/invalidation" in path:
        return "CreateInvalidation" if method == "POST" else "GetInvalidation"
    if "/distribution/" in path:
        return "GetDistribution"
    return f"{method} {path}"
