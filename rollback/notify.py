"""Webhook notifications: people hear what the run does, and a bad receiver changes nothing.

Each receiver (a ``[[notify]]`` table) gets its own queue and worker thread: ``send`` only puts
the event on the queues and returns at once. Every POST has a total deadline (a watchdog closes
the socket when it passes, so a receiver that trickles its answer byte by byte is cut off too),
and ``close`` waits a bounded time for what is still queued. A receiver that answers 500, hangs
or refuses the connection costs the run nothing but a recorded, undelivered message.

Two formats: ``slack`` (a Slack-compatible incoming webhook body, ``{"text": ...}``) and
``json`` (the event itself, for any tool). Proxies come from the environment (HTTP_PROXY,
HTTPS_PROXY, ALL_PROXY, NO_PROXY), read once per receiver when the Notifier is made; redirects are
not followed. Plain Python: no pytest import.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.utils
import urllib3.exceptions
from urllib3.util import SKIP_HEADER

from . import request_deadline
from .http_errors import causes, is_wrapper
from .journal import utc_now
from .request_deadline import WatchedAdapter

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


def post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float, proxies: Mapping[str, str] | None = None
) -> int:
    """POST ``body`` to ``url``; the status code of a 2xx answer. Ends within ``timeout`` seconds.

    ``proxies`` as ``environment_proxies`` gives them (None: read the environment now). Raises
    NotifyError naming what went wrong (never the URL: it may carry a token).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyError("not an http(s) URL")
    watch = request_deadline.start(time.monotonic() + timeout)
    try:
        with (
            _session() as session,
            session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
                proxies=dict(environment_proxies(url) if proxies is None else proxies),
            ) as answer,
        ):
            answer.raw.read(_ANSWER_LIMIT, decode_content=False)
            status = answer.status_code
    except _FAILURES as exc:
        if watch.expired or any(isinstance(cause, TimeoutError) for cause in causes(exc)):
            raise NotifyError(f"no answer within {timeout:g} s") from None
        raise NotifyError(f"could not deliver: {_reason(exc)}") from None
    finally:
        request_deadline.stop(watch)
    if not 200 <= status < 300:
        raise NotifyError(f"answered HTTP {status}")
    return status


def environment_proxies(url: str) -> dict[str, str]:
    """The proxies the environment names for ``url`` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY),
    read as requests reads them. It walks ``os.environ``: call it where no other thread changes the
    environment meanwhile (pytest's main thread sets PYTEST_CURRENT_TEST), as ``Notifier`` does."""
    try:
        return requests.utils.get_environ_proxies(url)
    except ValueError:  # a bad port: post() says so
        return {}


# Everything a POST can raise because of the network, the receiver or the URL.
_FAILURES = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError, ValueError)


def _reason(exc: BaseException) -> str:
    """The words http.client's own error gave (``Connection refused``), under requests' wrappers."""
    for cause in causes(exc):
        if isinstance(cause, (OSError, http.client.HTTPException)) and not is_wrapper(cause):
            return getattr(cause, "strerror", None) or type(cause).__name__
    return type(exc).__name__


def _session() -> requests.Session:
    """A session that sends what http.client sent: no User-Agent, no compression, no proxy or
    credentials from the environment (``trust_env`` off: proxies are passed in), and the
    system's trust store for TLS."""
    session = requests.Session()
    session.trust_env = False
    session.headers.clear()
    session.headers.update({"Accept-Encoding": "identity", "User-Agent": SKIP_HEADER})
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _WatchedAdapter(WatchedAdapter):
    """The probes' adapter (connections the POST's watch can cut), trusting what http.client did."""

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if verify is True:
            # Not certifi's bundle: urllib3 then loads the system's store, as http.client did.
            conn.ca_certs = conn.ca_cert_dir = None


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
        # Read here, on the thread that makes the Notifier: the workers never walk os.environ.
        self._proxies = {receiver.name: environment_proxies(receiver.url) for receiver in self.receivers}
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
                status = post(
                    receiver.url,
                    body_for(receiver, event),
                    receiver.headers,
                    receiver.timeout,
                    self._proxies[receiver.name],
                )
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
