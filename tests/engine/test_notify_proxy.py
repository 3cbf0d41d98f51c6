"""rollback/notify.py honours the environment's proxy settings, through a real proxy on loopback."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from rollback_harness.rollback.notify import Notifier, NotifyError, Receiver, post

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD")


class Server:
    """A loopback HTTP server in a thread; ``seen`` holds (method, path) of every request."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.seen: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> Server:
        owner: Server = self.server.owner  # type: ignore[attr-defined]
        return owner

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ReceiverHandler(_Handler):
    def do_POST(self) -> None:
        self.owner.seen.append(("POST", self.path))
        self.owner.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.answer(200, b"ok")


class ProxyHandler(_Handler):
    """A forward proxy: a POST to an absolute URL is passed on; a CONNECT tunnel is refused."""

    def do_POST(self) -> None:
        self.owner.seen.append(("POST", self.path))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            upstream.request("POST", target.path, body=body, headers={"Content-Type": "application/json"})
            answer = upstream.getresponse()
            self.answer(answer.status, answer.read())
        finally:
            upstream.close()

    def do_CONNECT(self) -> None:
        self.owner.seen.append(("CONNECT", self.path))
        self.answer(403, b"no tunnels here")


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Server]]:
    """A receiver and a proxy, with no proxy settings in the environment to begin with."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    receiver, proxy = Server(ReceiverHandler), Server(ProxyHandler)
    yield receiver, proxy
    receiver.close()
    proxy.close()


def test_a_webhook_goes_through_http_proxy(servers: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch) -> None:
    receiver, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    assert post(receiver.url + "/hook?token=x", b'{"event": "end"}', {}, timeout=5.0) == 200

    assert proxy.seen == [("POST", receiver.url + "/hook?token=x")]
    assert receiver.seen == [("POST", "/hook")] and receiver.bodies == [b'{"event": "end"}']


def test_no_proxy_sends_a_webhook_directly(servers: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch) -> None:
    receiver, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    assert post(receiver.url + "/hook", b"{}", {}, timeout=5.0) == 200

    assert proxy.seen == []
    assert receiver.seen == [("POST", "/hook")]


def test_an_https_webhook_asks_https_proxy_for_a_tunnel(
    servers: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, proxy = servers
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    port = receiver.server.server_address[1]

    with pytest.raises(NotifyError, match=r"^could not deliver: "):
        post(f"https://127.0.0.1:{port}/hook", b"{}", {}, timeout=5.0)

    assert proxy.seen == [("CONNECT", f"127.0.0.1:{port}")]
    assert receiver.seen == []


def test_the_notifier_reads_the_proxy_settings_when_it_is_made(
    servers: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    notifier = Notifier([Receiver("events", receiver.url + "/events")])
    monkeypatch.delenv("HTTP_PROXY")  # the workers never read the environment again

    notifier.send({"event": "end", "text": "done"})
    deliveries = notifier.close()

    assert [(d.status, d.detail) for d in deliveries] == [("sent", "answered HTTP 200")]
    assert proxy.seen == [("POST", receiver.url + "/events")]
    assert receiver.seen == [("POST", "/events")]
