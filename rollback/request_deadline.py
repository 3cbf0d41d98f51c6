"""A total deadline for one request, whatever the server does.

requests' timeouts bound each socket operation, not the request: a server that trickles its
status line one byte at a time resets the read timeout with every byte and never times out.
Here one watchdog thread keeps the deadline of every request in flight (the checks' probes, the
metrics check's fetch, the notifications' POSTs); when a deadline passes it shuts down the socket
of that request's connection, so the blocked read returns at once and the request reports a
timeout. Connections find the request they serve through a thread-local: urllib3 connects and
sends on the thread that called ``start``.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watch:
    """The deadline of one probe and the connection it is using."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.finished = False
        self._lock = threading.Lock()
        self._connection: HTTPConnection | None = None
        self._expired = False
        self._finished = False

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def attach(self, connection: HTTPConnection) -> None:
        """``connection`` now serves this probe; cut it at once if the deadline already passed."""
        with self._lock:
            if self._finished:
                return
            self._connection = connection
            expired = self._expired
        if expired:
            _cut(connection)

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._expired = True
            connection = self._connection
        if connection is not None:
            _cut(connection)

    def finish(self) -> None:
        """The probe is over: the connection may serve the next one, never cut by this watch."""
        with self._lock:
            self._finished = True
            self.finished = True
            self._connection = None


def _cut(connection: HTTPConnection) -> None:
    """Shut the socket down under a blocked reader; a TLS socket is shut at the TCP level."""
    sock = connection.sock
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing is blocked on it


_PURGE_AT = 1024


class _Watchdog:
    """One daemon thread that expires watches when their deadlines pass."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._purged_size = _PURGE_AT

    def watch(self, deadline: float) -> Watch:
        watch = Watch(deadline)
        with self._changed:
            if len(self._heap) >= _PURGE_AT and len(self._heap) >= self._purged_size * 2:
                # Finished probes wait in the heap until their deadline; with long timeouts and
                # many samples that is a lot of them: drop them now and then.
                self._heap = [entry for entry in self._heap if not entry[2].finished]
                heapq.heapify(self._heap)
                self._purged_size = max(len(self._heap), _PURGE_AT)
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="probe-watchdog", daemon=True)
                self._thread.start()
            self._changed.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._heap:
                    self._changed.wait()
                deadline = self._heap[0][0]
                now = time.monotonic()
                if deadline > now:
                    self._changed.wait(deadline - now)
                    continue
                _, _, watch = heapq.heappop(self._heap)
            watch.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()


def start(deadline: float) -> Watch:
    """Watch this thread's next request until ``deadline`` (``time.monotonic()`` seconds)."""
    watch = _WATCHDOG.watch(deadline)
    _current.watch = watch
    return watch


def stop(watch: Watch) -> None:
    watch.finish()
    if getattr(_current, "watch", None) is watch:
        _current.watch = None


def _attach(connection: HTTPConnection) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _attach(self)
        super().connect()
        _attach(self)  # the socket exists now: cut it if the deadline passed while connecting

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)  # a kept-alive connection is reused without connecting again
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _attach(self)
        super().connect()
        _attach(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections that a probe's watch can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            # SOCKS pools have their own connection classes: there the probe's read timeout
            # and the final elapsed-time check still bound the request, less tightly.
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
