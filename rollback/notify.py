"""Webhook notifications: people hear what the run does, and a bad receiver changes nothing.

Each receiver (a ``[[notify]]`` table) gets its own queue and worker thread: ``send`` only puts
the event on the queues and returns at once. Every POST has a total deadline (a watchdog closes
the socket when it passes, so a receiver that trickles its answer byte by byte is cut off too),
and ``close`` waits a bounded time for what is still queued. A receiver that answers 500, hangs
or refuses the connection costs the run nothing but a recorded, undelivered message.

Two formats: ``slack`` (a Slack-compatible incoming webhook body, ``{"text": ...}``) and
``json`` (the event itself, for any tool). No proxy is used: the receiver is contacted directly.
Plain Python: no pytest import.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .journal import utc_now

EVENTS = ("start", "gate", "rollback", "end")
FORMATS = ("slack", "json")
SCHEMA = "rollback-notification/1"
# An answer body is read (and dropped) up to this size: enough for any webhook's "ok".
_ANSWER_LIMIT = 64 * 1024
# close() never waits longer than this, whatever the receivers' timeouts say.
MAX_DRAIN_S = 15.0


@dataclass(frozen=True)
class Receiver:
    """One webhook as configured. ``url`` and ``headers`` may hold secrets: never shown."""

    name: str
    url: str
    format: str = "json"
    headers: Mapping[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = EVENTS
    timeout: float = 5.0

    @property
    def shown(self) -> str:
        """How the receiver is named in evidence: its name and host, never its path or query."""
        host = urlsplit(self.url).hostname or "?"
        return f"{self.name} ({host})"


@dataclass
class Delivery:
    """What happened to one event at one receiver."""

    receiver: str
    event: str
    status: str  # sent / failed / not sent
    detail: str
    queued: str = field(default_factory=utc_now)
    finished: str | None = None
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class NotifyError(Exception):
    """A POST that did not get a 2xx answer in time; the message says what happened instead."""


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; the status code of a 2xx answer. Ends within ``timeout`` seconds.

    Raises NotifyError naming what went wrong (never the URL: it may carry a token).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError("not an http(s) URL")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    aborted = threading.Event()

    def abort() -> None:
        aborted.set()
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        answer = connection.getresponse()
        answer.read(_ANSWER_LIMIT)
    except (OSError, http.client.HTTPException) as exc:
        if aborted.is_set() or isinstance(exc, (socket.timeout, TimeoutError)):
            raise NotifyError(f"no answer within {timeout:g} s") from None
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise NotifyError(f"could not deliver: {reason}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if not 200 <= answer.status < 300:
        raise NotifyError(f"answered HTTP {answer.status}")
    return answer.status


def body_for(receiver: Receiver, event: Mapping[str, Any]) -> bytes:
    if receiver.format == "slack":
        return json.dumps({"text": event.get("text", "")}).encode("utf-8")
    return json.dumps({"schema": SCHEMA, **event}, default=str).encode("utf-8")


_STOP = object()


class Notifier:
    """Delivers events to every receiver in the background; see the module docstring."""

    def __init__(self, receivers: Sequence[Receiver], redact: Callable[[str], str] = lambda text: text) -> None:
        self.receivers = list(receivers)
        self.redact = redact
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False
        for receiver in self.receivers:
            pending: queue.Queue[Any] = queue.Queue()
            self._queues[receiver.name] = pending
            thread = threading.Thread(
                target=self._deliver_all, args=(receiver, pending), name=f"notify-{receiver.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def send(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` (it has an ``event`` key, one of EVENTS) for every receiver that wants it."""
        if self._closed:
            return
        for receiver in self.receivers:
            if event["event"] in receiver.events:
                delivery = Delivery(receiver.shown, str(event["event"]), "queued", "")
                with self._lock:
                    self.deliveries.append(delivery)
                self._queues[receiver.name].put((delivery, dict(event)))

    def _deliver_all(self, receiver: Receiver, pending: queue.Queue[Any]) -> None:
        while True:
            item = pending.get()
            if item is _STOP:
                return
            delivery, event = item
            started = time.monotonic()
            delivery.status = "sending"
            try:
                status = post(receiver.url, body_for(receiver, event), receiver.headers, receiver.timeout)
            except NotifyError as exc:
                outcome, detail = "failed", str(exc)
            except Exception as exc:  # a bug here must not end the thread: the next events still go
                outcome, detail = "failed", f"{type(exc).__name__}"
            else:
                outcome, detail = "sent", f"answered HTTP {status}"
            with self._lock:
                delivery.status = outcome
                delivery.detail = self.redact(detail)
                delivery.finished = utc_now()
                delivery.duration_s = round(time.monotonic() - started, 3)

    def close(self, wait_s: float | None = None) -> list[Delivery]:
        """Stop taking events; wait at most ``wait_s`` (default: the longest receiver timeout plus
        one second, at most MAX_DRAIN_S) for the queues to drain. Every delivery, each with its fate."""
        if not self._closed:
            self._closed = True
            for pending in self._queues.values():
                pending.put(_STOP)
        if wait_s is None:
            wait_s = min(MAX_DRAIN_S, max((r.timeout for r in self.receivers), default=0.0) + 1.0)
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for delivery in self.deliveries:
                if delivery.status == "queued":
                    delivery.status, delivery.detail = "not sent", "the run ended before its turn came"
                elif delivery.status == "sending":
                    delivery.status, delivery.detail = "not sent", "still being sent when the run ended"
            return list(self.deliveries)

    def undelivered(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status in ("failed", "not sent")]


def message(event: Mapping[str, Any]) -> str:
    """The one-paragraph text people read (Slack's ``text``, and the JSON event's ``text``)."""
    service = event.get("service", "?")
    incident = f"[{event['incident_id']}] " if event.get("incident_id") else ""
    kind = event["event"]
    if kind == "start":
        parts = [f"{incident}{service}: {event.get('action')}"]
        if event.get("from") or event.get("to"):
            parts.append(f"from {event.get('from') or 'the live version'} to {event.get('to') or '?'}")
        if event.get("eta"):
            parts.append(f"ETA {event['eta']}")
        parts.append(f"impact: {event.get('impact') or 'not assessed'}")
        if event.get("status_channel"):
            parts.append(f"status: {event['status_channel']}")
        return "; ".join(parts)
    if kind == "gate":
        text = f"{incident}{service}: {event.get('gate')} {event.get('result')} ({event.get('counts')})"
        failures = event.get("failures") or []
        if failures:
            text += ": " + "; ".join(str(f) for f in failures[:5])
        return text
    if kind == "rollback":
        return f"{incident}{service}: {event.get('summary')}"
    return f"{incident}{service}: {event.get('headline')} (exit code {event.get('exit_code')})"
