"""A loopback HTTP server that misbehaves on purpose, for tests of probes and waits.

Real sockets, one thread per connection, one request per connection (``Connection: close``).
A fault is chosen for every path by ``FaultServer(mode=...)``, else by the first path segment:

    /ok                     200 "ok" (also any path that names no fault, without a mode)
    /version                the server's ``version`` as plain text
    /health                 200 "ok"
    /trickle-headers        the status line and then endless header lines, one byte every
                            ``trickle_interval`` seconds (0.2): a response that never completes
    /reset                  the connection is reset (RST) as soon as the request is read
    /stall-before-headers   reads the request and sends nothing, until the server stops
    /stall-after-headers    sends the headers (Content-Length: 10), then nothing
    /endless-body           200 without a length, then body bytes as fast as they are taken
    /redirect-forever       302 to itself
    /alternating-version    v1.2.9 and v1.3.0 on alternate requests (``versions``)
    /slow-tail              200 "ok", every ``tail_every``-th request after ``tail_delay`` seconds
    /deep-json              a JSON body nested 100,000 levels deep

With ``pool`` (a ``Pool``) the server stands for a balancer over several backends: /version,
/health and /api/... (a critical endpoint, answered with the backend's health status) are each
answered by one backend chosen per request, at random by weight (a seeded
generator per path, so a test's answers are the same every run) or round robin over one counter
shared by every path, as a balancer alternates whatever the path.

With ``tls`` (a server-side SSLContext) it speaks HTTPS. Use it as a context manager; leaving it
stops every connection and joins every thread:

    with FaultServer() as server:
        probe(session, server.url("/trickle-headers"), timeout=1.0)
"""

from __future__ import annotations

import itertools
import random
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

TRICKLE_INTERVAL = 0.2
ENDLESS_CHUNK = b"x" * 8192
DEEP_JSON_LEVELS = 100_000
MODES = (
    "ok",
    "version",
    "health",
    "trickle-headers",
    "reset",
    "stall-before-headers",
    "stall-after-headers",
    "endless-body",
    "redirect-forever",
    "alternating-version",
    "slow-tail",
    "deep-json",
)


@dataclass(frozen=True)
class Backend:
    """One replica behind the pool: the version it answers and its health status."""

    version: str
    health: int = 200
    weight: float = 1.0


@dataclass(frozen=True)
class Pool:
    backends: tuple[Backend, ...]
    # "random": each request picks a backend by weight; "round-robin": in turn, across paths.
    order: str = "random"
    seed: int = 0

    @classmethod
    def stuck(cls, share: float, *, old: str = "v1.3.0", new: str = "v1.2.9", seed: int = 0) -> Pool:
        """A random ``share`` of answers from a replica left on ``old``, healthy like the rest."""
        return cls((Backend(new, weight=1 - share), Backend(old, weight=share)), seed=seed)

    @classmethod
    def unhealthy(cls, share: float, *, version: str = "v1.2.9", status: int = 503, seed: int = 0) -> Pool:
        """A random ``share`` of answers from a replica that answers /health with ``status``."""
        return cls((Backend(version, weight=1 - share), Backend(version, status, weight=share)), seed=seed)


class FaultServer:
    """Serves on 127.0.0.1 on a free port from ``start()`` (or ``with``) until ``stop()``."""

    def __init__(
        self,
        mode: str | None = None,
        *,
        version: str = "v1.3.0",
        versions: tuple[str, ...] = ("v1.2.9", "v1.3.0"),
        trickle_interval: float = TRICKLE_INTERVAL,
        tail_every: int = 10,
        tail_delay: float = 0.3,
        tls: ssl.SSLContext | None = None,
        pool: Pool | None = None,
        pools: dict[str, Pool] | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(MODES)}")
        self.mode = mode
        self.version = version
        self.versions = versions
        self.trickle_interval = trickle_interval
        self.tail_every = tail_every
        self.tail_delay = tail_delay
        self.tls = tls
        seed = pool.seed if pool is not None else 0
        self.pool = pool
        # Named pools a request to /_pool/NAME switches to (a restart command that "deploys").
        self.pools = dict(pools or {})
        self.hits: Counter[str] = Counter()
        # Which backend answered, per path ("version", "health") and backend index.
        self.answered: Counter[tuple[str, int]] = Counter()
        self._pickers = {path: random.Random(f"{seed}-{path}") for path in ("version", "health", "api")}
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counters: dict[str, itertools.count[int]] = {}
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="fault-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def start(self) -> FaultServer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and join every thread (bounded)."""
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            _shutdown(client)
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive or self._acceptor.is_alive():
            raise RuntimeError(f"fault server threads did not stop: {alive}")

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._stop.is_set():
                    client.close()
                    return
                self._clients.add(client)
                thread = threading.Thread(target=self._serve, args=(client,), name="fault-client", daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client.settimeout(10)
                client = self.tls.wrap_socket(client, server_side=True)
            path = _read_request(client)
            if path is not None:
                self._respond(client, path)
        except OSError:
            pass  # the client went away, or stop() shut the socket: both are expected here
        finally:
            with self._lock:
                self._clients.discard(client)
            client.close()

    def _respond(self, client: socket.socket, path: str) -> None:
        first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        if first == "_pool":
            name = path.rstrip("/").rsplit("/", 1)[-1]
            with self._lock:
                self.pool = self.pools[name] if name in self.pools else self.pool
            _reply(client, 200 if name in self.pools else 404, name.encode())
            return
        if self.pool is not None and first in ("version", "health", "api"):
            self._from_pool(client, first)
            return
        mode = self.mode or (first if first in MODES else "ok")
        with self._lock:
            self.hits[mode] += 1
            number = next(self._counters.setdefault(mode, itertools.count()))
        handler: Callable[[socket.socket, int], None] = getattr(self, "_" + mode.replace("-", "_"))
        handler(client, number)

    def _from_pool(self, client: socket.socket, path: str) -> None:
        assert self.pool is not None
        backends = self.pool.backends
        with self._lock:
            self.hits[path] += 1
            if self.pool.order == "round-robin":
                index = next(self._turn) % len(backends)
            else:
                weights = [backend.weight for backend in backends]
                index = self._pickers[path].choices(range(len(backends)), weights)[0]
            self.answered[path, index] += 1
        backend = backends[index]
        if path == "version":
            _reply(client, 200, backend.version.encode() + b"\n")
        elif path == "api":  # a critical endpoint: a backend that fails its health fails it too
            _reply(client, backend.health, b'{"orders": []}' if backend.health == 200 else b'{"error": "internal"}')
        else:
            _reply(client, backend.health, b"ok" if backend.health == 200 else b"unavailable")

    # One method per mode: ``number`` counts the requests this mode has served (0 first).

    def _ok(self, client: socket.socket, number: int) -> None:
        _reply(client, 200, b"ok")

    def _health(self, client: socket.socket, number: int) -> None:
        _reply(client, 200, b"ok")

    def _version(self, client: socket.socket, number: int) -> None:
        _reply(client, 200, self.version.encode() + b"\n")

    def _alternating_version(self, client: socket.socket, number: int) -> None:
        _reply(client, 200, self.versions[number % len(self.versions)].encode() + b"\n")

    def _trickle_headers(self, client: socket.socket, number: int) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        for byte in itertools.chain(head, itertools.cycle(b"X-Slow: yes\r\n")):
            if self._stop.wait(self.trickle_interval):
                return
            client.sendall(bytes([byte]))

    def _reset(self, client: socket.socket, number: int) -> None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _stall_before_headers(self, client: socket.socket, number: int) -> None:
        self._stop.wait()

    def _stall_after_headers(self, client: socket.socket, number: int) -> None:
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
        self._stop.wait()

    def _endless_body(self, client: socket.socket, number: int) -> None:
        client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        while not self._stop.is_set():
            client.sendall(ENDLESS_CHUNK)

    def _redirect_forever(self, client: socket.socket, number: int) -> None:
        _reply(client, 302, b"", extra=b"Location: /redirect-forever\r\n")

    def _slow_tail(self, client: socket.socket, number: int) -> None:
        if (number + 1) % self.tail_every == 0 and self._stop.wait(self.tail_delay):
            return
        _reply(client, 200, b"ok")

    def _deep_json(self, client: socket.socket, number: int) -> None:
        _reply(client, 200, b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS, content_type=b"application/json")


def _read_request(client: socket.socket) -> str | None:
    """The request's path, once its headers are read; None if the client sent no request."""
    client.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    client.settimeout(None)
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) >= 2 else None


def _reply(
    client: socket.socket, status: int, body: bytes, *, extra: bytes = b"", content_type: bytes = b"text/plain"
) -> None:
    reason = {200: b"OK", 302: b"Found", 503: b"Service Unavailable"}.get(status, b"Status")
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n" % (
        status,
        reason,
        content_type,
        len(body),
        extra,
    )
    client.sendall(head + body)


def _shutdown(client: socket.socket) -> None:
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
