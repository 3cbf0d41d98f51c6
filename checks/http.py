"""One HTTP request, measured, with network failures turned into short human strings."""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from ..rollback import request_deadline
from ..rollback.request_deadline import WatchedAdapter

USER_AGENT = "rollback-harness/0.1"
BODY_LIMIT = 64 * 1024
_CHUNK = 8192

# Everything a request can raise because of the network, the peer or the URL.
_REQUEST_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


@dataclass(frozen=True)
class Probe:
    """What one request saw: ``elapsed`` covers the whole response, body included."""

    url: str
    method: str
    status: int | None
    elapsed: float
    body: str
    error: str | None

    @property
    def ok_transport(self) -> bool:
        """True when a complete HTTP response arrived, whatever its status."""
        return self.error is None


class _BodyTimeout(Exception):
    """The body did not arrive before the probe's deadline."""


# Read by name, never by walking os.environ: another thread (pytest's main thread sets and
# unsets PYTEST_CURRENT_TEST) may change the environment while a probe runs.
_PROXY_SCHEMES = ("http", "https", "all")
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class ProxyEnvironment:
    """The proxy settings of the environment, read once when a session is made."""

    proxies: dict[str, str]
    no_proxy: tuple[str, ...]
    ca_bundle: str | None

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> ProxyEnvironment:
        env = os.environ if environ is None else environ

        def variable(name: str) -> str | None:
            # Lower case first, as curl and urllib do; a value set to "" counts as unset. Under
            # CGI, HTTP_PROXY may come from a request's "Proxy:" header (httpoxy): not trusted.
            upper = None if name == "http_proxy" and env.get("REQUEST_METHOD") else env.get(name.upper())
            return env.get(name.lower()) or upper or None

        proxies = {scheme: value for scheme in _PROXY_SCHEMES if (value := variable(f"{scheme}_proxy"))}
        no_proxy = tuple(entry.strip() for entry in (variable("no_proxy") or "").split(",") if entry.strip())
        ca_bundle = next((env.get(name) for name in _CA_BUNDLE_VARIABLES if env.get(name)), None)
        return cls(proxies, no_proxy, ca_bundle)

    def proxies_for(self, url: str) -> dict[str, str]:
        """The ``proxies`` argument for a request to ``url`` (the session itself has none)."""
        host = (urlsplit(url).hostname or "").lower()
        if any(_bypasses(entry, host) for entry in self.no_proxy):
            return {}
        return dict(self.proxies)


def _bypasses(entry: str, host: str) -> bool:
    """True when the no_proxy ``entry`` covers ``host`` (a name, a domain suffix, an IP or CIDR)."""
    if entry == "*":
        return True
    entry = entry.lower().lstrip(".").split(":")[0] if not entry.startswith("[") else entry.strip("[]").lower()
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return host == entry or host.endswith("." + entry)


class ProbeSession(requests.Session):
    """A session that never reads the environment per request (``trust_env`` is off)."""

    def __init__(self, environment: ProxyEnvironment) -> None:
        super().__init__()
        self.trust_env = False
        self.environment = environment


def make_session(*, verify_tls: bool = True, environment: ProxyEnvironment | None = None) -> ProbeSession:
    """A session for probes: our User-Agent, TLS verification as asked, no retries.

    Proxies and the CA bundle come from the environment, read here once (or from
    ``environment``); requests then never walks ``os.environ`` during a probe.
    """
    environment = environment if environment is not None else ProxyEnvironment.read()
    session = ProbeSession(environment)
    session.verify = (environment.ca_bundle or True) if verify_tls else False
    session.headers["User-Agent"] = USER_AGENT
    adapter = WatchedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def clone_session(session: requests.Session) -> requests.Session:
    """A new session with the settings of ``session``, for another thread (sessions are not shared)."""
    clone: requests.Session
    if isinstance(session, ProbeSession):
        clone = make_session(environment=session.environment)
    else:
        clone = requests.Session()
    clone.verify = session.verify
    clone.headers.update(session.headers)
    return clone


def join_url(base_url: str, path: str) -> str:
    """``base_url`` with ``path`` appended; a full http(s) URL in ``path`` is returned as is.

    Unlike ``urljoin``, a path below the base is kept: "http://h/app" + "/x" is "http://h/app/x".
    """
    if path.lower().startswith(("http://", "https://")):
        return path
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def url_path(url: str) -> str:
    """The path and query of ``url``, for names and summaries ("/api/orders?x=1")."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def probe(
    session: requests.Session,
    url: str,
    *,
    method: str = "GET",
    timeout: float,
    deadline: float | None = None,
    new_connection: bool = False,
) -> Probe:
    """Send one request and read the response; never raises for network problems.

    ``new_connection`` sends ``Connection: close``: this request gets a connection of its own,
    so a balancer picks a backend for it afresh instead of the one a kept-alive connection is
    pinned to.

    ``timeout`` bounds the whole request: connect, status line, headers and body together,
    however slowly the server sends them. ``deadline`` (a ``time.monotonic()`` instant) caps it
    further, for a caller that has an overall deadline of its own. Redirects are not followed:
    a health or version endpoint that redirects is worth seeing.
    """
    method = method.upper()
    start = time.monotonic()
    budget = timeout if deadline is None else min(timeout, deadline - start)
    if budget <= 0:
        return Probe(url, method, None, 0.0, "", "not sent: the overall deadline had already passed")
    watch = request_deadline.start(start + budget)
    headers_arrived = False
    try:
        with session.request(
            method,
            url,
            timeout=(budget, budget),
            stream=True,
            allow_redirects=False,
            headers={"Connection": "close"} if new_connection else None,
            # Explicit, or requests lets REQUESTS_CA_BUNDLE override session.verify = False.
            verify=session.verify,
            proxies=session.environment.proxies_for(url) if isinstance(session, ProbeSession) else None,
        ) as response:
            headers_arrived = True
            body = _read_body(response, start + budget)
            status = response.status_code
        if watch.expired:
            raise _BodyTimeout
    except (_BodyTimeout, *_REQUEST_ERRORS) as exc:
        elapsed = time.monotonic() - start
        return Probe(url, method, None, elapsed, "", _failure(exc, watch, budget, headers_arrived))
    finally:
        request_deadline.stop(watch)
    elapsed = time.monotonic() - start
    if elapsed > budget:
        # Only where the watchdog cannot cut (a slow connect to several addresses, SOCKS).
        return Probe(url, method, None, elapsed, "", f"timed out after {_seconds(budget)}")
    return Probe(url, method, status, elapsed, body, None)


def _failure(exc: BaseException, watch: request_deadline.Watch, budget: float, headers_arrived: bool) -> str:
    described = describe_error(exc, budget)
    if described.startswith("connect timed out"):
        return described
    if isinstance(exc, _BodyTimeout) or watch.expired or described.startswith("timed out"):
        where = " reading the body" if headers_arrived else ""
        return f"timed out after {_seconds(budget)}{where}"
    return described


def _seconds(value: float) -> str:
    return f"{round(value, 2):g}s"


def _read_body(response: requests.Response, deadline: float) -> str:
    """Read the whole body before ``deadline``; keep and decode the first BODY_LIMIT bytes."""
    kept = bytearray()
    for chunk in _chunks(response):
        if len(kept) < BODY_LIMIT:
            kept += chunk[: BODY_LIMIT - len(kept)]
        if time.monotonic() > deadline:
            raise _BodyTimeout
    return _decode(bytes(kept), response.encoding)


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` returns whatever is there instead of a full chunk."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from response.iter_content(_CHUNK)
        return
    while chunk := read1(_CHUNK, decode_content=True):
        yield chunk


def _decode(data: bytes, encoding: str | None) -> str:
    try:
        return data.decode(encoding or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def describe_error(exc: BaseException, timeout: float) -> str:
    """A short human reason for a failed request ("connection refused")."""
    chain = list(_causes(exc))
    reasons = (
        _tls_reason,
        _connection_reason,
        _timeout_reason,
        _os_reason,
        _decoding_reason,
        _url_reason,
    )
    for describe in reasons:
        reason = describe(chain, timeout)
        if reason is not None:
            return reason
    return _last_words(chain)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3 reasons, exception args."""
    pending = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        nested = [current.__cause__, current.__context__, reason, *current.args]
        pending.extend(item for item in nested if isinstance(item, BaseException))


def _tls_reason(chain: list[BaseException], timeout: float) -> str | None:
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = exc.verify_message or exc.reason or "unknown reason"
            return f"TLS certificate verification failed: {detail}"
    for exc in chain:
        if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
            return f"TLS error: {_one_line(exc)}"
    return None


def _timeout_reason(chain: list[BaseException], timeout: float) -> str | None:
    connect_timeouts = (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)
    if any(isinstance(exc, connect_timeouts) for exc in chain):
        return f"connect timed out after {_seconds(timeout)}"
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)
    if any(isinstance(exc, timeouts) for exc in chain):
        return f"timed out after {_seconds(timeout)}"
    return None


def _connection_reason(chain: list[BaseException], timeout: float) -> str | None:
    reasons: list[tuple[type[BaseException], str]] = [
        (http.client.RemoteDisconnected, "server closed the connection without a response"),
        (ConnectionRefusedError, "connection refused"),
        (ConnectionResetError, "connection reset by peer"),
        (ConnectionAbortedError, "connection aborted"),
        (BrokenPipeError, "connection closed by peer (broken pipe)"),
        (http.client.IncompleteRead, "connection closed before the whole body arrived"),
        (socket.gaierror, "cannot resolve host"),
        (urllib3.exceptions.NameResolutionError, "cannot resolve host"),
    ]
    for exc in chain:
        if isinstance(exc, http.client.BadStatusLine) and not isinstance(exc, http.client.RemoteDisconnected):
            return f"not an HTTP response (status line {_one_line(exc)[:60]!r})"
        for kind, reason in reasons:
            if isinstance(exc, kind):
                return _with_host(reason, chain) if reason == "cannot resolve host" else reason
    return None


def _os_reason(chain: list[BaseException], timeout: float) -> str | None:
    for exc in chain:
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
    return None


def _decoding_reason(chain: list[BaseException], timeout: float) -> str | None:
    undecodable = (urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError)
    for exc in chain:
        if isinstance(exc, undecodable):
            first = exc.args[0] if exc.args else None
            detail = first if isinstance(first, str) else _one_line(exc)
            return f"cannot decode the body: {detail}"
    return None


def _url_reason(chain: list[BaseException], timeout: float) -> str | None:
    invalid = (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        urllib3.exceptions.LocationValueError,
    )
    for exc in chain:
        if isinstance(exc, invalid):
            return f"invalid URL: {_one_line(exc)}"
    for exc in chain:
        if type(exc) is ValueError and "URL" in str(exc):  # urlsplit: "Invalid IPv6 URL"
            return f"invalid URL: {_one_line(exc)}"
    return None


def _with_host(reason: str, chain: list[BaseException]) -> str:
    for exc in chain:
        host = getattr(getattr(exc, "conn", None), "host", None)
        if isinstance(host, str):
            return f"{reason} {host!r}"
    return reason


def _last_words(chain: list[BaseException]) -> str:
    """The innermost message, for failures without a friendlier name."""
    for exc in reversed(chain):
        text = _one_line(exc)
        if text:
            return text
    return type(chain[0]).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
